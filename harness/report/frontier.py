"""Reward at equal KL: each method's reward-vs-KL frontier, its reward at fixed KL budgets with an interval over
seeds, and which method leads over which range of KL.

Metrics. The reward is the quality metric (headline role `quality`, e.g. the gold reward); where no suite declares
one, a judge's win rate (a headline whose label says "win rate", one judged independently of what the methods
optimised first). The KL is the headline metric with role `divergence`.

Points. A method is an algorithm with its other swept settings (`ppo reward=gold` is a method apart from
`ppo reward=learned`, PPO-GT beside PPO); its groups over the strength of its KL knob (`kl_beta`, a trainer's
`beta` or `kl_coef`, best-of-n's `n`: KL_KNOBS) are pooled, since a frontier asks for the best reward the method
reaches at a KL, whatever strength reached it. Each complete job gives
a (KL, reward) point for its final policy (`metrics`) and one per checkpoint along training where result.json has
a `trajectory` (`[{"step", "fraction", "metrics"}]`, each evaluated exactly as the final policy). Points are kept
apart by seed: seeds share their data and starting policy, so one seed's runs form one frontier.

A seed's frontier. Its Pareto front: the points that no other point of the seed beats with more reward for no more
KL, ordered by KL, so reward rises with KL along it (`pareto`). Its value at a budget B (`interpolate`) is linear
between the two front points around B, and flat at the front's best reward from its last point up to the seed's
largest KL: a budget is a limit, and the best reward within it is the best point at or under it (a point past the
front's end spent more KL for less reward). Linear interpolation is what a mixture achieves: sampling policy a with
probability w and b otherwise gets reward w r_a + (1 - w) r_b at a KL no larger than w KL_a + (1 - w) KL_b (KL is
convex in the policy), so the line between two front points is attainable, if anything conservative.

Reaching a budget. A seed reaches B when its smallest KL <= B <= its largest KL. Past its largest KL it never spent
that much KL and nothing is extrapolated ("never reaches"). Below its smallest KL nothing is assumed either ("never
this low"): the starting policy is not added as a point at KL 0, because which policy that is (and whether its KL
is to the same reference) differs between methods (the KL suite's note); the early checkpoints of a trajectory, or
a run of the starting policy in the sweep, cover small budgets instead.

A method at a budget (`MethodFrontier.at`). The mean of the reaching seeds' values with the Student-t interval over
them (aggregate.summarise), kept within the metric's declared bounds; the number of seeds reaching it is stated
("2 of 3 seeds"), since a mean over the seeds that spent the most KL is a selection and says so. One seed: no
interval.

Budgets (`choose_budgets`). Those asked for (`harness-report --kl-budgets 0.5,1,2`, or the report callback's
`kl_budgets` recorded with the sweep), else DEFAULT_KL_BUDGETS (with the jobs' own `kl_budget`, where set) that at
least one seed of one method reaches; where none of those is reached, the powers of two inside the observed range
(at most five, spread over it).

Who leads (`dominance`). On GRID_POINTS evenly spaced KLs over the observed range (plus every seed's smallest and
largest KL), the method with the highest mean at each KL against the runner-up, among the methods most of whose
seeds reach that KL (a mean over a minority of seeds, those that spent the most or the least KL, is a selection:
the table shows it, labelled, but no range is claimed from it). "dominates": the leader's 95% interval lies wholly
above the runner-up's (non-overlapping 95% intervals are a conservative test of a difference; a description along
the KL axis, not a test corrected for the many KLs looked at); "within noise": they overlap; "no interval": either
has one seed; "alone": no other method reaches that KL. Neighbouring KLs with the same leader and state form one
range, and neighbouring within-noise ranges one range that names where the higher mean changed hands (within
noise, which mean is higher is no finding). A range that ends because a seed starts or stops reaching ends at that
seed's KL; one that ends because the leaders' means (or the leader's and runner-up's intervals) cross ends where
that difference, linear between neighbouring grid KLs, crosses zero (exact between the seeds' front points).
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.report.aggregate import CONFIDENCE, Bounds, Group, Job, Summary, finite, summarise

DEFAULT_KL_BUDGETS = (0.25, 0.5, 1.0, 2.0, 4.0)  # nats; the ones the data reaches are shown
MAX_FALLBACK_BUDGETS = 5
GRID_POINTS = 401  # KLs the dominance ranges and the plotted mean frontiers are evaluated at
EQUAL_KL_FILE = "equal_kl.csv"

Point = tuple[float, float]  # (KL, reward)

# what a seed does at a budget
REACHES, BELOW, BEYOND = "reaches", "below", "beyond"


def pareto(points: Iterable[Point]) -> list[Point]:
    """The (KL, reward) points that no other point beats with less or equal KL and more reward, by KL: along them
    both KL and reward strictly rise."""
    front: list[Point] = []
    best = -math.inf
    for kl, reward in sorted(points, key=lambda p: (p[0], -p[1])):
        if reward > best:
            front.append((kl, reward))
            best = reward
    return front


def interpolate(front: Sequence[Point], budget: float, highest: float | None = None) -> float | None:
    """The reward of a Pareto `front` (from `pareto`) at KL `budget`: linear between the front points around it,
    flat at the front's last reward from its last KL up to `highest` (the seed's largest KL, default the front's
    last). None where the budget is below the front's first KL or above `highest`."""
    if not front:
        return None
    highest = front[-1][0] if highest is None else max(highest, front[-1][0])
    if budget < front[0][0] or budget > highest:
        return None
    if budget >= front[-1][0]:
        return front[-1][1]
    kls = [kl for kl, _ in front]
    index = int(np.searchsorted(kls, budget, side="right"))  # front[index - 1].kl <= budget < front[index].kl
    (kl_low, reward_low), (kl_high, reward_high) = front[index - 1], front[index]
    return reward_low + (reward_high - reward_low) * (budget - kl_low) / (kl_high - kl_low)


@dataclass(frozen=True)
class SeedFrontier:
    """One seed of one method: all its (KL, reward) points and their Pareto front."""

    seed: str
    points: tuple[Point, ...]
    front: tuple[Point, ...]

    @classmethod
    def of(cls, seed: str, points: Iterable[Point]) -> SeedFrontier:
        points = tuple(points)
        return cls(seed, points, tuple(pareto(points)))

    @functools.cached_property
    def lowest(self) -> float:
        return min(kl for kl, _ in self.points)

    @functools.cached_property
    def highest(self) -> float:
        return max(kl for kl, _ in self.points)

    def reach(self, budget: float) -> str:
        if budget < self.lowest:
            return BELOW
        return BEYOND if budget > self.highest else REACHES

    def at(self, budget: float) -> float | None:
        return interpolate(self.front, budget, self.highest)


@dataclass(frozen=True)
class AtBudget:
    """A method at one KL budget: the reaching seeds' values, how many seeds fall short on either side, and the
    summary (mean, t-interval within bounds) of the values; None when no seed reaches it."""

    method: str
    budget: float
    values: dict[str, float]  # seed -> interpolated reward, for the seeds that reach the budget
    seeds: int  # seeds of the method with a point
    below: int  # seeds whose smallest KL is above the budget
    beyond: int  # seeds whose largest KL is below the budget
    summary: Summary | None

    @property
    def reached(self) -> int:
        return len(self.values)

    @property
    def status(self) -> str:
        """reaches (every seed) | partial | never reaches | never this low | outside its range (seeds on both sides)."""
        if self.reached:
            return "reaches" if self.reached == self.seeds else "partial"
        if self.beyond == self.seeds:
            return "never reaches"
        return "never this low" if self.below == self.seeds else "outside its range"


@dataclass
class MethodFrontier:
    """One method's frontier: a SeedFrontier per seed, and the bounds its reward's intervals keep to."""

    method: str
    seeds: dict[str, SeedFrontier]
    bounds: Bounds | None = None

    @property
    def lowest(self) -> float:
        return min(seed.lowest for seed in self.seeds.values())

    @property
    def highest(self) -> float:
        return max(seed.highest for seed in self.seeds.values())

    def at(self, budget: float) -> AtBudget:
        values: dict[str, float] = {}
        below = beyond = 0
        for name, seed in self.seeds.items():
            reach = seed.reach(budget)
            if reach == REACHES:
                values[name] = seed.at(budget)
            below += reach == BELOW
            beyond += reach == BEYOND
        summary = summarise(list(values.values()), bounds=self.bounds) if values else None
        return AtBudget(self.method, budget, values, len(self.seeds), below, beyond, summary)


def _point(metrics: dict[str, Any], reward_key: str, kl_key: str) -> Point | None:
    reward, kl = metrics.get(reward_key), metrics.get(kl_key)
    return (float(kl), float(reward)) if finite(reward) and finite(kl) else None


def final_point(job: Job, reward_key: str, kl_key: str) -> Point | None:
    return _point(job.metrics, reward_key, kl_key)


def trajectory_points(job: Job, reward_key: str, kl_key: str) -> list[Point]:
    """The job's checkpoints along training (result.json `trajectory`) as (KL, reward), in training order."""
    entries = job.result.trajectory if job.result is not None else []
    ordered = sorted(entries, key=lambda entry: entry.step if finite(entry.step) else math.inf)
    return [point for entry in ordered if (point := _point(entry.metrics, reward_key, kl_key))]


# Swept settings that move a method along its frontier rather than make it another method: the shared knob, and
# settings named like a KL strength or best-of-n's n (a key ending in one of these after its last dot)
KL_KNOBS = ("kl_beta", "beta", "kl_coef", "n", "snapshots")


def method_name(group: Group) -> str:
    """The algorithm and its swept settings but the KL knobs: what one frontier is drawn for."""
    kept = [f"{key}={value}" for key, value in group.params.items() if key.rsplit(".", 1)[-1] not in KL_KNOBS]
    return " ".join([group.algorithm, *kept])


def method_frontiers(
    groups: Sequence[Group], reward_key: str, kl_key: str, bounds: Bounds | None = None
) -> list[MethodFrontier]:
    """Per method (`method_name`, in the groups' order), per seed, every (KL, reward) point of its complete jobs:
    final policy and trajectory. Methods and seeds without a point are left out."""
    points: dict[str, dict[str, list[Point]]] = {}
    for group in groups:
        for job in group.complete:
            found = trajectory_points(job, reward_key, kl_key)
            if (final := final_point(job, reward_key, kl_key)) is not None:
                found.append(final)
            if found:
                points.setdefault(method_name(group), {}).setdefault(job.seed, []).extend(found)
    return [
        MethodFrontier(method, {seed: SeedFrontier.of(seed, p) for seed, p in by_seed.items()}, bounds)
        for method, by_seed in points.items()
    ]


def choose_budgets(
    methods: Sequence[MethodFrontier], asked: Sequence[float] | None = None, extra: Iterable[float] = ()
) -> tuple[list[float], str]:
    """The budgets to report and where they come from ("asked", "default", "powers of two"; module docstring)."""
    if asked:
        return sorted(set(asked)), "asked"

    def reached(budget: float) -> bool:
        return any(seed.reach(budget) == REACHES for method in methods for seed in method.seeds.values())

    defaults = sorted({*DEFAULT_KL_BUDGETS, *(b for b in extra if finite(b) and b > 0)})
    if chosen := [budget for budget in defaults if reached(budget)]:
        return chosen, "default"
    powers = [2.0**k for k in range(-12, 13) if reached(2.0**k)]
    if len(powers) > MAX_FALLBACK_BUDGETS:
        last = len(powers) - 1
        powers = [powers[round(i * last / (MAX_FALLBACK_BUDGETS - 1))] for i in range(MAX_FALLBACK_BUDGETS)]
    return powers, "powers of two"


@dataclass(frozen=True)
class Lead:
    """A range of KL over which one method has the highest mean frontier reward; for "within noise", a range over
    which the higher mean may change hands (`leaders`, changing at `crossings`) without any of them clear of the
    runner-up's interval."""

    method: str  # the leader (the first, where several lead in turn)
    start: float
    end: float
    state: str  # dominates | within noise | no interval | alone
    runners_up: tuple[str, ...] = ()  # the second-highest method(s) over the range
    leaders: tuple[str, ...] = ()  # every method with the highest mean somewhere in the range, in order
    crossings: tuple[float, ...] = ()  # where the highest mean changes hands inside the range

    @property
    def methods(self) -> tuple[str, ...]:
        """Leaders and runners-up: every method the range is about."""
        return tuple(dict.fromkeys((*self.leaders, *self.runners_up)))


@dataclass(frozen=True)
class _Standing:
    """The methods at one KL of the grid: who leads, in what state, over whom."""

    kl: float
    at: dict[str, AtBudget]  # every method at this KL
    leader: str | None  # None: no method has most of its seeds here
    state: str = ""
    runner_up: str | None = None

    @property
    def key(self) -> tuple[str | None, str]:
        return self.leader, self.state

    @property
    def reached(self) -> tuple[int, ...]:
        return tuple(a.reached for a in self.at.values())


def _standing(kl: float, methods: Sequence[MethodFrontier]) -> _Standing:
    """Leader, state and runner-up among the methods most of whose seeds reach `kl`."""
    at = {method.method: method.at(kl) for method in methods}
    present = sorted((a for a in at.values() if 2 * a.reached > a.seeds), key=lambda a: -a.summary.mean)
    if not present:
        return _Standing(kl, at, None)
    first = present[0]
    if len(present) == 1:
        return _Standing(kl, at, first.method, "alone")
    second = present[1]
    one, two = first.summary, second.summary
    if one.n < 2 or two.n < 2 or math.isnan(one.ci_low) or math.isnan(two.ci_high):
        state = "no interval"
    else:
        state = "dominates" if one.ci_low > two.ci_high else "within noise"
    return _Standing(kl, at, first.method, state, second.method)


def _boundary(before: _Standing, after: _Standing) -> float:
    """Where between two neighbouring grid KLs the standing changes. Where a seed starts or stops reaching, at that
    seed's own KL (a grid point). Else where the quantity that decided crosses zero, linear between the two: the
    leaders' difference of means, or the gap between the leader's interval and the runner-up's; both are linear
    between the seeds' front points, so this is exact there. The midpoint where neither applies."""
    low, high = before.kl, after.kl
    if before.reached != after.reached:
        return high if any(b > a for a, b in zip(before.reached, after.reached, strict=True)) else low

    def crossing(quantity: Callable[[_Standing], float]) -> float:
        first, second = quantity(before), quantity(after)
        if math.isfinite(first) and math.isfinite(second) and first != second and (first > 0) != (second > 0):
            return low + (high - low) * first / (first - second)
        return (low + high) / 2

    if before.leader != after.leader and before.leader is not None and after.leader is not None:
        old, new = before.leader, after.leader
        return crossing(lambda s: s.at[old].summary.mean - s.at[new].summary.mean)
    if before.runner_up is not None and before.runner_up == after.runner_up:
        leader, runner = before.leader, before.runner_up
        return crossing(lambda s: s.at[leader].summary.ci_low - s.at[runner].summary.ci_high)
    return (low + high) / 2


def dominance(methods: Sequence[MethodFrontier], points: int = GRID_POINTS) -> list[Lead]:
    """Which method leads over which range of KL (module docstring), in order of KL. The grid: `points` evenly
    spaced KLs over the observed range, and every seed's smallest and largest KL (where a seed starts and stops
    reaching). Empty with fewer than two methods or no spread of KL."""
    if len(methods) < 2:
        return []
    low, high = min(m.lowest for m in methods), max(m.highest for m in methods)
    if not high > low:
        return []
    edges = [kl for m in methods for seed in m.seeds.values() for kl in (seed.lowest, seed.highest)]
    grid = np.unique(np.concatenate([np.linspace(low, high, points), edges]))
    standings = [_standing(float(kl), methods) for kl in grid]
    leads: list[Lead] = []
    start = 0
    for index in range(1, len(standings) + 1):
        if index < len(standings) and standings[index].key == standings[start].key:
            continue
        first, last = standings[start], standings[index - 1]
        if first.leader is not None:
            runners = tuple(dict.fromkeys(s.runner_up for s in standings[start:index] if s.runner_up is not None))
            joined_before = start > 0 and standings[start - 1].leader is not None  # ranges meet at one boundary
            joined_after = index < len(standings) and standings[index].leader is not None
            begin = _boundary(standings[start - 1], first) if joined_before else first.kl
            end = _boundary(last, standings[index]) if joined_after else last.kl
            leads.append(Lead(first.leader, float(begin), float(end), first.state, runners, (first.leader,)))
        start = index
    return _merge_noise(leads)


def _merge_noise(leads: list[Lead]) -> list[Lead]:
    """Neighbouring within-noise ranges as one: within noise, which mean is higher is not a finding, so a range
    where it changes hands is one range naming every method involved and where the means crossed."""
    merged: list[Lead] = []
    for lead in leads:
        last = merged[-1] if merged else None
        if last and last.state == lead.state == "within noise" and last.end == lead.start:
            leaders = tuple(dict.fromkeys((*last.leaders, *lead.leaders)))
            runners = tuple(m for m in dict.fromkeys((*last.runners_up, *lead.runners_up)) if m not in leaders)
            crossings = (*last.crossings, lead.start)
            merged[-1] = Lead(last.method, last.start, lead.end, lead.state, runners, leaders, crossings)
        else:
            merged.append(lead)
    return merged


@dataclass
class EqualKL:
    """Everything the "At equal KL" section shows: the two metrics, each method's frontier, the budgets (and where
    they come from), each method at each budget, and who leads where."""

    reward: Any  # tables.Metric: the quality metric, or a judge's win rate
    kl: Any  # tables.Metric: the divergence metric
    methods: list[MethodFrontier]
    budgets: list[float]
    budgets_from: str
    at: dict[tuple[str, float], AtBudget] = field(default_factory=dict)
    leads: list[Lead] = field(default_factory=list)


def frontier_metrics(comparison: Any) -> tuple[Any, Any] | None:
    """(reward, KL) headline metrics of a comparison: the quality metric, else a judge's win rate (module
    docstring), and the divergence metric. None without either."""
    kl = comparison.role("divergence")
    reward = comparison.role("quality") or win_rate_fallback(comparison)
    return (reward, kl) if reward is not None and kl is not None else None


def win_rate_fallback(comparison: Any) -> Any:
    """Without a quality metric: the first reported headline win rate with a direction (its label says "win rate"),
    preferring one no group had judged by the reward it optimised (an independent judge)."""
    rates = [
        m
        for m in comparison.headline
        if m.key in comparison.metrics and m.better == "higher" and m.role is None and "win rate" in m.label.lower()
    ]
    independent = [m for m in rates if not any(comparison.judged_by_optimised(g, m) for g in comparison.groups)]
    return next(iter(independent or rates), None)


def equal_kl(comparison: Any, budgets: Sequence[float] | None = None) -> EqualKL | None:
    """The comparison at equal KL (None without a reward and a KL metric, or without a job reporting both)."""
    metrics = frontier_metrics(comparison)
    if metrics is None:
        return None
    reward, kl = metrics
    methods = method_frontiers(comparison.groups, reward.key, kl.key, reward.bounds)
    if not methods:
        return None
    asked = budgets if budgets is not None else getattr(comparison, "kl_budgets", None)
    job_budgets = [
        float(b)
        for job in comparison.sweep.jobs
        if job.result is not None and finite(b := job.result.config.get("kl_budget"))
    ]
    chosen, source = choose_budgets(methods, asked, job_budgets)
    at = {(m.method, b): m.at(b) for m in methods for b in chosen}
    return EqualKL(reward, kl, methods, chosen, source, at, dominance(methods))


# -- rendering ------------------------------------------------------------------------------------------
def nats(value: float) -> str:
    return f"{value:.3g}"


def budget_cell(at: AtBudget, digits: int) -> str:
    """`0.812 [0.790, 0.830] (3 seeds)`, `(2 of 3 seeds)` where some fall short, or why there is no value."""
    s = at.summary
    if s is None:
        return at.status
    text = f"{s.mean:.{digits}f}"
    if s.n > 1 and not math.isnan(s.ci_low):
        text += f" [{s.ci_low:.{digits}f}, {s.ci_high:.{digits}f}]"
    unit = "seed" if at.seeds == 1 else "seeds"
    count = f"{at.reached} {unit}" if at.reached == at.seeds else f"{at.reached} of {at.seeds} seeds"
    return f"{text} ({count})"


def equal_kl_rows(result: EqualKL) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows of (text, best) cells: one row per method, one column per budget; the highest mean of a
    column marked where two methods or more have one and it is not tied."""
    header = ["method", *(f"at KL {nats(b)}" for b in result.budgets)]
    best: dict[float, str | None] = {}
    for budget in result.budgets:
        means = {m.method: a.summary.mean for m in result.methods if (a := result.at[(m.method, budget)]).summary}
        top = max(means.values(), default=None)
        leaders = [method for method, mean in means.items() if mean == top]
        best[budget] = leaders[0] if len(means) > 1 and len(leaders) == 1 else None  # a tie marks none
    rows = [
        [(m.method, False)]
        + [(budget_cell(result.at[(m.method, b)], result.reward.digits), best[b] == m.method) for b in result.budgets]
        for m in result.methods
    ]
    return header, rows


def equal_kl_caption(result: EqualKL) -> str:
    reward, kl = result.reward.label, result.kl.label
    budgets = ", ".join(nats(b) for b in result.budgets)
    source = {
        "asked": f"budgets {budgets}, as asked for (--kl-budgets, or the report callback's kl_budgets)",
        "default": f"budgets {budgets}: of the defaults {', '.join(map(nats, DEFAULT_KL_BUDGETS))} (and the jobs' "
        "kl_budget), those some seed reaches (set them with --kl-budgets)",
        "powers of two": f"budgets {budgets}: no default budget is within the observed KLs, so powers of two within "
        "them (set them with --kl-budgets)",
    }[result.budgets_from]
    text = (
        f"{reward} at equal {kl}, {source}. Per method and seed, the Pareto front of its (KL, reward) points (every "
        "group of the method, and its checkpoints along training where recorded), interpolated linearly at the "
        f"budget; the mean over the seeds that reach it, with the {CONFIDENCE:.0%} t-interval over those seeds"
        + (" (within the metric's bounds)" if result.reward.bounds is not None else "")
        + ". A seed reaches a budget between its smallest and largest KL: never reaches, it never spent that much "
        "KL; never this low, it never stayed that close (KL 0 is not assumed to be the starting policy's reward)."
    )
    if result.kl.note:
        text += f" {result.kl.note}"
    return text


def no_budget_line(result: EqualKL) -> str:
    low, high = min(m.lowest for m in result.methods), max(m.highest for m in result.methods)
    return (
        f"No KL budget: no seed reaches a default budget or a power of two ({result.kl.label} from {nats(low)} to "
        f"{nats(high)}); set them with --kl-budgets."
    )


def dominance_lines(result: EqualKL) -> list[str]:
    """Who leads where, one sentence per range."""
    lines = []
    for lead in result.leads:
        span = f"from {nats(lead.start)} to {nats(lead.end)} nats"
        others = ", ".join(lead.runners_up)
        if lead.state == "dominates":
            lines.append(f"{lead.method} dominates {span} (its 95% interval above {others}'s).")
        elif lead.state == "within noise" and len(lead.leaders) > 1:
            where = ", ".join(nats(x) for x in lead.crossings)
            lines.append(
                f"{_and(lead.methods)} within noise {span} (95% intervals overlap; the higher mean changes hands at "
                f"{where} nats)."
            )
        elif lead.state == "within noise":
            lines.append(f"{lead.method} leads {span}, within noise of {others} (95% intervals overlap).")
        elif lead.state == "no interval":
            lines.append(f"{lead.method} leads {span} over {others} (one seed: no interval, noise unknown).")
        else:
            lines.append(f"{lead.method} alone {span} (no other method reaches this KL with most of its seeds).")
    return lines


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def dominance_intro(result: EqualKL) -> str:
    return (
        f"Highest mean {result.reward.label} along the mean frontiers, over {GRID_POINTS} evenly spaced KLs, among "
        "the methods most of whose seeds reach each KL (dominates: its 95% interval above the runner-up's; within "
        "noise: they overlap):"
    )


def to_markdown(result: EqualKL) -> list[str]:
    """The "At equal KL" section of comparison.md, as lines."""
    header, rows = equal_kl_rows(result)
    table = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    table += ["| " + " | ".join(f"**{text}**" if best else text for text, best in row) + " |" for row in rows]
    parts = ["### At equal KL", ""]
    if result.budgets:
        parts += [*table, "", equal_kl_caption(result)]
    else:
        parts.append(no_budget_line(result))
    if lines := dominance_lines(result):
        parts += ["", dominance_intro(result), "", *(f"- {line}" for line in lines)]
    return parts


CSV_COLUMNS = [
    "method",
    "kl_budget",
    "metric",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "seeds_reaching",
    "seeds",
    "seeds_below",
    "seeds_beyond",
    "status",
]


def to_csv(result: EqualKL | None) -> str:
    """equal_kl.csv: one row per method and budget, numbers in full precision (a rebuild is identical)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for method in result.methods if result else []:
        for budget in result.budgets:
            at = result.at[(method.method, budget)]
            s = at.summary
            numbers = [_number(v) for v in (s.mean, s.std, s.ci_low, s.ci_high)] if s else ["", "", "", ""]
            counts = [at.reached, at.seeds, at.below, at.beyond, at.status]
            writer.writerow([method.method, repr(budget), result.reward.key, *numbers, *counts])
    return buffer.getvalue()


def _number(value: float) -> str:
    return "" if math.isnan(value) else repr(float(value))


def mean_frontier(method: MethodFrontier, points: int = GRID_POINTS // 2) -> dict[str, np.ndarray]:
    """The method's mean frontier on a grid over its own KL range, for the figure: `kl`, `mean`, `low`, `high`
    (NaN where no interval) and `seeds` (how many reach each KL; NaN mean where none)."""
    grid = (
        np.linspace(method.lowest, method.highest, points)
        if method.highest > method.lowest
        else np.array([method.lowest])
    )
    values = [method.at(float(x)) for x in grid]
    nan = math.nan
    return {
        "kl": grid,
        "mean": np.array([a.summary.mean if a.summary else nan for a in values]),
        "low": np.array([a.summary.ci_low if a.summary else nan for a in values]),
        "high": np.array([a.summary.ci_high if a.summary else nan for a in values]),
        "seeds": np.array([a.reached for a in values]),
    }
