"""The report's `human` section (the human suite): what the arena's votes say about the sweep's methods, in
comparison.md, report.html and the W&B comparison run. The numbers come from harness.arena.ratings."""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.arena.ratings import (
    CONFIDENCE,
    PRIOR_SD,
    RESAMPLES,
    GoldAgreement,
    RaterAgreement,
    Rating,
    Record,
    SampleRows,
    bradley_terry,
    gold_agreement,
    item_of,
    rater_agreement,
    win_rates,
)
from harness.arena.rules import Identical, identical_outputs
from harness.arena.votes import Vote
from harness.report.sections import Section

KEY, TITLE = "human", "Human suite: blind side-by-side votes"
COLUMNS = ["method", "rating", "rating_low", "rating_high", "win_rate", "votes", "wins", "ties", "losses"]
SCORE_NAMES = {"gold_reward": "gold reward", "judge_score": "judge score"}


def sweep_votes(sweep_dir: Path) -> list[Vote]:
    """The votes cast on this sweep, from the arena's store (its default database, beside the jobs)."""
    from harness.arena.store import load_votes

    return load_votes(sweep_dir)


def sample_rows(comparison: Any) -> SampleRows:
    """method -> seed -> that job's samples.jsonl rows (the complete jobs that wrote them), read once per method."""
    from harness.report.samples import job_samples

    groups = {group.label: group for group in comparison.groups}
    cache: dict[str, dict[int, list[dict[str, Any]]]] = {}

    def rows(method: str) -> dict[int, list[dict[str, Any]]]:
        if method not in cache:
            jobs = job_samples([groups[method]])[0] if method in groups else []
            cache[method] = {int(job.seed): job.rows for job in jobs if job.seed.isdigit()}
        return cache[method]

    return rows


def human_section(comparison: Any) -> Section | None:
    """The human suite of a sweep's report; None when nobody has voted on it."""
    votes = sweep_votes(comparison.sweep.root)
    if not votes:
        return None
    return section_from_votes(votes, comparison)


def section_from_votes(votes: Sequence[Vote], comparison: Any) -> Section:
    ratings = bradley_terry(votes)
    records = win_rates(votes)
    raters = rater_agreement(votes)
    rows_of = sample_rows(comparison)
    gold = gold_agreement(votes, rows_of)
    identical = identical_by_pair([group.label for group in comparison.groups], rows_of)
    rows = [_row(rating, records[rating.method]) for rating in ratings]
    unvoted = [group.label for group in comparison.groups if group.label not in records]
    lines = _lines(votes, raters, gold, unvoted)
    if identical:
        lines.append(_identical_line(identical))
    header = ["method", f"rating [{CONFIDENCE:.0%} interval]", "win rate", "votes", "won / tied / lost"]
    cells = [
        [
            row["method"],
            f"{row['rating']:.0f} [{row['rating_low']:.0f}, {row['rating_high']:.0f}]",
            f"{row['win_rate']:.2f}",
            str(row["votes"]),
            f"{row['wins']} / {row['ties']} / {row['losses']}",
        ]
        for row in rows
    ]
    markdown = "\n".join(
        [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(_markdown_cell(text) for text in line) + " |" for line in cells),
            "",
            *(f"{line}\n" for line in lines),
        ]
    )
    head = "".join(f"<th>{html.escape(text)}</th>" for text in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(text)}</td>" for text in line) + "</tr>" for line in cells)
    page = f'<table class="human"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>' + "".join(
        f'<p class="meta">{html.escape(line)}</p>' for line in lines
    )
    summary: dict[str, float] = {"human/votes": float(len(votes)), "human/raters": float(len({v.rater for v in votes}))}
    for row in rows:
        summary[f"human/{row['method']}/rating"] = row["rating"]
        summary[f"human/{row['method']}/win_rate"] = row["win_rate"]
    summary["human/shared_items"] = float(raters.items)
    for (method_a, method_b), counted in identical.items():
        summary[f"human/identical_outputs/{method_a} vs {method_b}"] = counted.share
    for key, value in (
        ("human/rater_agreement", raters.observed),
        ("human/rater_alpha", raters.alpha),
        ("human/gold_agreement", gold.rate),
    ):
        if math.isfinite(value):
            summary[key] = value
    table = (COLUMNS, [[row[column] for column in COLUMNS] for row in rows])
    return Section(KEY, TITLE, markdown, page, {KEY: table}, summary)


def _row(rating: Rating, record: Record) -> dict[str, Any]:
    return {
        "method": rating.method,
        "rating": round(rating.rating, 1),
        "rating_low": round(rating.rating_low, 1),
        "rating_high": round(rating.rating_high, 1),
        "win_rate": record.win_rate,
        "votes": record.votes,
        "wins": record.wins,
        "ties": record.ties,
        "losses": record.losses,
    }


def identical_by_pair(methods: Sequence[str], rows: SampleRows) -> dict[tuple[str, str], Identical]:
    """Per method pair (canonical order), how many of the samples they can be compared on (same prompt and seed) are
    the same completion up to whitespace: from the sweep's samples, whatever the raters were shown (the arena never
    shows them). Pairs with nothing to compare are left out."""
    found = {}
    for method_a, method_b in itertools.combinations(sorted(set(methods)), 2):
        counted = identical_outputs(rows(method_a), rows(method_b))
        if counted.compared:
            found[(method_a, method_b)] = counted
    return found


def _identical_line(identical: dict[tuple[str, str], Identical]) -> str:
    counts = "; ".join(
        f"{method_a} vs {method_b} {counted.identical} of {counted.compared} ({counted.share:.0%})"
        for (method_a, method_b), counted in identical.items()
    )
    return (
        "Identical outputs (the same completion up to whitespace, same prompt and seed; never shown to raters, so not "
        f"in the votes): {counts}."
    )


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _lines(votes: Sequence[Vote], raters: RaterAgreement, gold: GoldAgreement, unvoted: list[str]) -> list[str]:
    """The sentences under the table: what was counted, how the ratings were made, the agreements."""
    ties = sum(v.outcome == "tie" for v in votes)
    rater_count = len({v.rater for v in votes})
    lines = [
        f"{len(votes)} votes ({ties} ties) from {rater_count} rater{'s' if rater_count != 1 else ''}, each on one "
        "prompt and two methods' completions shown blind in random order (harness-arena).",
        f"Rating: Bradley-Terry (ties half a win to each side; a N(0, {PRIOR_SD:g}²) prior on each log-strength "
        f"keeps a method that always wins finite), on an Elo-like scale: mean 1000, 400 points = 10:1 odds; "
        f"[{CONFIDENCE:.0%} percentile bootstrap interval over {RESAMPLES} resamples of the votes]. "
        "Win rate: wins plus half the ties, over the method's votes.",
    ]
    voted_items = len({item_of(vote) for vote in votes})
    if raters.items:
        alpha = f"{raters.alpha:.2f}" if math.isfinite(raters.alpha) else "undefined (every vote the same)"
        lines.append(
            f"Rater agreement: on {raters.items} items (one prompt and two methods' completions) voted on by two or "
            f"more raters, of {voted_items} items voted on, {raters.observed:.2f} of {raters.rater_pairs} rater pairs "
            f"voted alike; Krippendorff's alpha (nominal: A, B, tie) {alpha}."
        )
    else:
        lines.append(
            "Rater agreement: no item (one prompt and two methods' completions) has votes from two raters yet "
            f"(of {voted_items} items voted on)."
        )
    decisive = len(votes) - ties
    left_out = [
        *([f"{gold.equal} with equally scored samples"] if gold.equal else []),
        *([f"{gold.unmatched} whose samples were not found as shown or carry no score"] if gold.unmatched else []),
    ]
    note = f" ({'; '.join(left_out)} left out)" if left_out else ""
    if gold.scored:
        score = " or ".join(SCORE_NAMES.get(key, key) for key in gold.score.split(" or "))
        lines.append(
            f"Agreement with the {score}: the chosen completion scored higher in {gold.rate:.2f} "
            f"[{gold.low:.2f}, {gold.high:.2f}] (95% Wilson) of {gold.scored} non-tie votes{note}."
        )
    else:
        lines.append(
            f"Agreement with the gold reward or judge: none of the {decisive} non-tie votes could be scored{note}."
        )
    if unvoted:
        lines.append(f"Not voted on yet: {', '.join(unvoted)}.")
    return lines
