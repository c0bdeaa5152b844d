"""Is training finished? Which methods were still improving when their training stopped (budget-bound), from each
job's result.json `convergence` (harness.convergence: the slope of its loss and quality over the last fifth of
training, with a 95% t-interval). A method is budget-bound when most of its complete runs were still improving on
some series; its line shows that series' slope in its median run, so the reader sees how fast it was moving."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.report.aggregate import Group

SERIES_ORDER = ("loss", "quality", "train_quality")  # the series a line shows first, among those as often improving
INTRO = (
    "Whether each method was still improving when its training stopped: the least-squares slope of its training "
    "loss, its quality along its snapshots and the training curve its algorithm declares, over the last fifth of "
    "training (the last 3 points when it holds fewer), per unit of training, with a 95% t-interval; a run is still "
    "improving when an interval excludes 0 on the better side (loss falling, quality rising). Budget-bound: most "
    "of the method's complete runs were. A training loss or reward margin keeps improving on the training data "
    "after held-out quality has stopped: the line names the series that moved."
)


@dataclass
class Finished:
    """One group's verdict: how many of its complete runs were still improving, and the series to show."""

    group: Group
    runs: int  # complete runs
    improving: int  # of them, those still improving on some series
    series: str | None  # the series the line shows (None: no run measured)
    label: str  # its name for the reader
    example: dict[str, Any] | None  # that series' record in the median run

    @property
    def budget_bound(self) -> bool:
        return self.improving > self.runs / 2

    @property
    def measured(self) -> bool:
        return self.example is not None


def verdicts(comparison: Any) -> list[Finished]:
    """Every group of the comparison (harness.report.tables.Comparison) with a complete run, in table order."""
    return [verdict(group, comparison) for group in comparison.groups if group.complete]


def verdict(group: Group, comparison: Any) -> Finished:
    records = [job.result.convergence for job in group.complete if job.result is not None]
    improving = sum(record.get("still_improving") is True for record in records)
    series_records = {
        name: [s[name] for r in records if (s := r.get("series", {})).get(name, {}).get("slope") is not None]
        for name in SERIES_ORDER
    }
    known = [name for name in SERIES_ORDER if series_records[name]]
    if not known:
        return Finished(group, len(group.complete), improving, None, "", None)
    # the series most runs were improving on (loss first on a tie); without any, the quality the table compares
    most = max(known, key=lambda name: sum(s.get("improving") is True for s in series_records[name]))
    if not any(s.get("improving") for s in series_records[most]):
        most = next(name for name in ("quality", "train_quality", "loss") if name in known)
    chosen = sorted(series_records[most], key=lambda s: s["slope"])
    example = chosen[(len(chosen) - 1) // 2]  # the median run (the lower one of an even count)
    return Finished(group, len(group.complete), improving, most, _label(example, comparison), example)


def _label(record: dict[str, Any], comparison: Any) -> str:
    labels = {metric.key: metric.label for metric in comparison.headline}
    labels.update({curve.key: curve.label for curve in comparison.curves})
    return labels.get(record.get("key", ""), record.get("key", ""))


def _number(value: float) -> str:
    return f"{value:.3g}"


def line(finished: Finished) -> str:
    """`dpo: budget-bound, 3/3 runs still improving (loss slope -0.21 [-0.3, -0.12] per training, over 0.8-1 of
    training; median run)`."""
    name = finished.group.label
    if not finished.measured:
        return f"{name}: not measured (no training log, or fewer than 3 points on every series)"
    verdict = "budget-bound" if finished.budget_bound else "not budget-bound"
    example = finished.example
    start, end = example["window"]
    slope = f"{_number(example['slope'])} [{_number(example['low'])}, {_number(example['high'])}]"
    median = "; median run" if finished.runs > 1 else ""
    return (
        f"{name}: {verdict}, {finished.improving}/{finished.runs} runs still improving ({finished.label} slope "
        f"{slope} per training, over {start:g}-{end:g} of training{median})"
    )


def finished_lines(comparison: Any) -> list[str]:
    """One line per method (none when no job recorded its convergence: results from before it was measured)."""
    found = verdicts(comparison)
    if not any(finished.measured for finished in found):
        return []
    return [line(finished) for finished in found]
