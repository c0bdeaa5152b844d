"""The human suite's numbers, from arena votes: Bradley-Terry ratings with bootstrap intervals, win rates, agreement
between raters, and agreement of the raters with the gold reward (or the judge).

Bradley-Terry (Bradley & Terry 1952; fitted over votes as Chatbot Arena does, Chiang et al. 2024): method i beats
method j with probability σ(θ_i − θ_j), θ its log-strength. A tie counts as half a win to each side. The fit is the
maximum a posteriori under a N(0, PRIOR_SD²) prior on every θ (an L2 penalty θ²/(2·PRIOR_SD²)): without it a
method that won every vote it was in has θ = +∞; with it the optimum is unique and finite, for any votes, and the
mean θ of the rated methods is exactly 0 (the prior's gradient is the only term that does not cancel over the
methods). PRIOR_SD = 4 nats is weak: against the curvature of 20 even votes (20 · ¼) its precision 1/16 moves a
rating by about 1%; a method that won all 20 of its votes against one other ends about 5 nats above it.

Scale: Elo-like, rating = 1000 + 400 · θ / ln 10, so the mean of the rated methods is 1000 and 400 points mean 10:1
odds of winning a vote. Intervals: percentile bootstrap over votes (resample the votes with replacement, seeded,
refit, take the 2.5th and 97.5th percentiles of each method's rating). Resampling n votes with replacement draws
multinomial(n, 1/n) copies of each; votes of the same pair with the same outcome are interchangeable, so the copies
are drawn per distinct (pair, outcome) with its share of the votes as probability: the same distribution.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.arena.votes import Vote

PRIOR_SD = 4.0  # nats: the sd of the symmetric Gaussian prior on each log-strength (module docstring)
ELO_MEAN, ELO_PER_NAT = 1000.0, 400.0 / math.log(10)
RESAMPLES = 1000
CONFIDENCE = 0.95
MAX_ITERATIONS, TOLERANCE = 100, 1e-9


def to_elo(log_strength: float) -> float:
    """A log-strength (mean 0 over the rated methods) on the Elo-like scale (mean 1000, 400 points = 10:1 odds)."""
    return ELO_MEAN + ELO_PER_NAT * log_strength


# -- Bradley-Terry ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rating:
    method: str
    log_strength: float  # θ in nats, mean 0 over the rated methods
    low: float  # the bootstrap percentile interval of θ
    high: float
    votes: int  # votes this method was in

    @property
    def rating(self) -> float:
        return to_elo(self.log_strength)

    @property
    def rating_low(self) -> float:
        return to_elo(self.low)

    @property
    def rating_high(self) -> float:
        return to_elo(self.high)


def methods_of(votes: Sequence[Vote]) -> list[str]:
    return sorted({v.method_a for v in votes} | {v.method_b for v in votes})


def _cells(votes: Sequence[Vote], methods: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct (pair, outcome) of the votes as win matrices (K, m, m): entry [i, j] is i's share of a win
    over j (1, or ½ each way for a tie), and how many votes each one has (K,)."""
    index = {method: i for i, method in enumerate(methods)}
    counts: dict[tuple[int, int, str], int] = defaultdict(int)
    for vote in votes:
        counts[(index[vote.method_a], index[vote.method_b], vote.outcome)] += 1
    wins = np.zeros((len(counts), len(methods), len(methods)))
    for k, (i, j, outcome) in enumerate(counts):
        if outcome == "a":
            wins[k, i, j] = 1.0
        elif outcome == "b":
            wins[k, j, i] = 1.0
        elif outcome == "tie":
            wins[k, i, j] = wins[k, j, i] = 0.5
        else:
            raise ValueError(f"vote outcome {outcome!r}: expected 'a', 'b' or 'tie'")
    return wins, np.array(list(counts.values()), dtype=float)


def _log_posterior(wins: np.ndarray, theta: np.ndarray, precision: float) -> np.ndarray:
    diff = theta[:, :, None] - theta[:, None, :]
    return -(wins * np.logaddexp(0.0, -diff)).sum(axis=(1, 2)) - 0.5 * precision * (theta**2).sum(axis=1)


def fit_log_strengths(wins: np.ndarray, prior_sd: float = PRIOR_SD) -> np.ndarray:
    """MAP log-strengths (B, m), mean 0, for a batch of win matrices (B, m, m) (wins[b, i, j]: i's wins over j,
    ties counted half). Newton's method with step halving: the log-posterior is strictly concave, so each step
    that does not lower it converges to the one optimum."""
    batch, m, _ = wins.shape
    precision = 1.0 / prior_sd**2
    games = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    theta = np.zeros((batch, m))
    current = _log_posterior(wins, theta, precision)
    for _ in range(MAX_ITERATIONS):
        p = 1.0 / (1.0 + np.exp(-(theta[:, :, None] - theta[:, None, :])))  # P(i beats j)
        gradient = won - (games * p).sum(axis=2) - precision * theta
        if np.abs(gradient).max() < TOLERANCE:
            break
        curvature = games * p * (1.0 - p)
        hessian = curvature - np.eye(m) * (curvature.sum(axis=2) + precision)[:, :, None]
        step = -np.linalg.solve(hessian, gradient[:, :, None])[:, :, 0]
        size = np.ones(batch)
        for _ in range(50):
            candidate = theta + size[:, None] * step
            value = _log_posterior(wins, candidate, precision)
            worse = value < current - 1e-12 * (1.0 + np.abs(current))
            if not worse.any():
                break
            size = np.where(worse, size / 2, size)
        theta, current = candidate, value
    return theta - theta.mean(axis=1, keepdims=True)


def bradley_terry(
    votes: Sequence[Vote],
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
    prior_sd: float = PRIOR_SD,
) -> list[Rating]:
    """Each voted method's Bradley-Terry log-strength with its percentile bootstrap interval over the votes (module
    docstring), best first. No votes: no ratings."""
    methods = methods_of(votes)
    if not votes:
        return []
    cells, counts = _cells(votes, methods)
    estimate = fit_log_strengths(np.tensordot(counts, cells, axes=1)[None], prior_sd)[0]
    rng = np.random.default_rng(seed)
    copies = rng.multinomial(len(votes), counts / counts.sum(), size=resamples).astype(float)
    boot = np.concatenate(
        [fit_log_strengths(np.tensordot(chunk, cells, axes=1), prior_sd) for chunk in np.array_split(copies, 10)]
    )
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(boot, [tail, 100 - tail], axis=0)
    shown = defaultdict(int)
    for vote in votes:
        shown[vote.method_a] += 1
        shown[vote.method_b] += 1
    ratings = [
        Rating(method, float(estimate[i]), float(low[i]), float(high[i]), shown[method])
        for i, method in enumerate(methods)
    ]
    return sorted(ratings, key=lambda r: (-r.log_strength, r.method))


# -- win rates --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Record:
    """One method's votes: won, tied, lost."""

    method: str
    wins: int
    ties: int
    losses: int

    @property
    def votes(self) -> int:
        return self.wins + self.ties + self.losses

    @property
    def win_rate(self) -> float:
        """Wins plus half the ties, over the votes the method was in."""
        return (self.wins + 0.5 * self.ties) / self.votes if self.votes else math.nan


def win_rates(votes: Sequence[Vote]) -> dict[str, Record]:
    """Method -> its record over every vote it was in (whoever the other side was)."""
    tally: dict[str, list[int]] = {method: [0, 0, 0] for method in methods_of(votes)}
    for vote in votes:
        if vote.outcome == "tie":
            tally[vote.method_a][1] += 1
            tally[vote.method_b][1] += 1
        else:
            tally[vote.winner][0] += 1
            tally[vote.loser][2] += 1
    return {method: Record(method, *counts) for method, counts in tally.items()}


# -- agreement between raters -----------------------------------------------------------------------------------
def item_of(vote: Vote) -> tuple[int, str, str, str, str]:
    """What raters can agree on: one prompt and the same two methods' completions (the same seed's samples)."""
    return (vote.prompt_index, vote.method_a, vote.method_b, vote.completion_a, vote.completion_b)


@dataclass(frozen=True)
class RaterAgreement:
    """Agreement on the items (item_of) that two or more raters voted on, the outcomes a, b, tie as three
    categories. `observed`: of all pairs of raters on one item, the fraction that voted the same. `alpha`:
    Krippendorff's alpha for nominal data (Krippendorff 2011, "Computing Krippendorff's alpha-reliability"),
    1 − D_o/D_e: 1 is perfect agreement, 0 what chance gives; it allows any number of raters per item, unlike
    Fleiss' kappa. NaN where undefined (no shared items, or every value the same)."""

    items: int
    rater_pairs: int
    agreeing_pairs: int
    alpha: float

    @property
    def observed(self) -> float:
        return self.agreeing_pairs / self.rater_pairs if self.rater_pairs else math.nan


def rater_agreement(votes: Sequence[Vote]) -> RaterAgreement:
    """Agreement between raters (RaterAgreement); a rater's latest vote on an item is the one that counts."""
    latest: dict[tuple, dict[str, Vote]] = defaultdict(dict)
    for vote in sorted(votes, key=lambda v: v.created_at):
        latest[item_of(vote)][vote.rater] = vote
    shared = [[v.outcome for v in by_rater.values()] for by_rater in latest.values() if len(by_rater) >= 2]
    rater_pairs = agreeing = 0
    # Krippendorff's coincidences: each ordered pair of different raters on an item with m values adds 1/(m − 1)
    coincidences: dict[tuple[str, str], float] = defaultdict(float)
    for outcomes in shared:
        m = len(outcomes)
        for x in range(m):
            for y in range(m):
                if x != y:
                    coincidences[(outcomes[x], outcomes[y])] += 1.0 / (m - 1)
                if x < y:
                    rater_pairs += 1
                    agreeing += outcomes[x] == outcomes[y]
    totals: dict[str, float] = defaultdict(float)
    for (c, _), value in coincidences.items():
        totals[c] += value
    n = sum(totals.values())
    disagreeing = sum(value for (c, k), value in coincidences.items() if c != k)
    expected = n * n - sum(t * t for t in totals.values())  # Σ_{c≠k} n_c n_k
    alpha = 1.0 - (n - 1) * disagreeing / expected if expected > 0 else math.nan
    return RaterAgreement(len(shared), rater_pairs, agreeing, alpha)


# -- agreement with the gold reward or the judge ----------------------------------------------------------------
SCORES = ("gold_reward", "judge_score")  # per-sample scores in samples.jsonl, in order of preference

SampleRows = Callable[[str], Mapping[int, Sequence[Mapping[str, Any]]]]  # method -> seed -> its samples.jsonl rows


@dataclass(frozen=True)
class GoldAgreement:
    """Of the non-tie votes whose two samples score differently, how many chose the higher-scoring one, with
    Wilson's 95% interval (Wilson 1927; it stays inside [0, 1]). `score`: which sample score decided."""

    agreeing: int
    scored: int
    equal: int  # non-tie votes whose two samples scored the same: no preference to agree with, left out
    unmatched: int  # non-tie votes whose samples were not found as shown (no job, row or completion) or have no score
    score: str  # "gold_reward", "judge_score", both joined by " or ", or "" when none was scored
    low: float
    high: float

    @property
    def rate(self) -> float:
        return self.agreeing / self.scored if self.scored else math.nan


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def _score(row: Mapping[str, Any], key: str) -> float | None:
    from harness.report.samples import number

    return number(row.get(key))


def _shown_row(rows: SampleRows, method: str, vote: Vote, completion: str) -> Mapping[str, Any] | None:
    """The sample the rater saw: row `prompt_index` of the method's samples of the vote's seed, else of another
    seed (a pair of methods without a common seed shows each its own), whose completion is the one the vote
    recorded (samples rewritten since the vote are not what the rater judged)."""
    by_seed = rows(method)
    seeds = sorted(by_seed, key=lambda seed: seed != vote.seed)
    for seed in seeds:
        found = by_seed[seed]
        if 0 <= vote.prompt_index < len(found):
            row = found[vote.prompt_index]
            if str(row.get("completion", "")).strip() == completion.strip():
                return row
    return None


def gold_agreement(votes: Sequence[Vote], rows: SampleRows) -> GoldAgreement:
    """Does the side the rater chose have the higher gold reward (else judge score) in the shown seed's samples?"""
    agreeing = scored = equal = unmatched = 0
    used: set[str] = set()
    for vote in votes:
        if vote.outcome == "tie":
            continue
        row_a = _shown_row(rows, vote.method_a, vote, vote.completion_a)
        row_b = _shown_row(rows, vote.method_b, vote, vote.completion_b)
        pair = None
        if row_a is not None and row_b is not None:
            for key in SCORES:
                score_a, score_b = _score(row_a, key), _score(row_b, key)
                if score_a is not None and score_b is not None:
                    pair = key, score_a, score_b
                    break
        if pair is None:
            unmatched += 1
            continue
        key, score_a, score_b = pair
        if score_a == score_b:
            equal += 1
            continue
        used.add(key)
        scored += 1
        agreeing += (score_a > score_b) == (vote.outcome == "a")
    low, high = wilson_interval(agreeing, scored)
    score = " or ".join(key for key in SCORES if key in used)
    return GoldAgreement(agreeing, scored, equal, unmatched, score, low, high)
