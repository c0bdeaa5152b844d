"""Metric curves: a family of a suite's metrics over the number in their names (pass@k over k), as the suite
declares it in its YAML (`curves:`, harness.declarations; in result.json `curves`, entries with an `x`). The report
draws each as one line per method (plots.metric_curves) and tabulates it at the x values the suite lists (`table`).

Intervals. A method with several seeds: the 95% t-interval over seeds, within the curve's declared bounds, as every
table of the report. A method with one seed: the job's own interval where the suite reports one (`low`/`high`: for
pass@k, a percentile bootstrap over problems), shown in parentheses, since it is a different interval.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.report.aggregate import Bounds, Group, Summary, finite
from harness.results import Result

Comparison = Any  # harness.report.tables.Comparison, which imports this module (the comparison reads the curves)


@dataclass(frozen=True)
class MetricCurve:
    key: str  # a metric key with `{x}` where the number goes: eval/pass_at_k/pass_at_{k}
    x: str  # the placeholder's name: k
    label: str  # pass@k
    x_label: str = ""
    log_x: bool = False
    better: str | None = None
    digits: int = 3
    bounds: Bounds | None = None
    low: str | None = None  # a job's own interval, keyed as `key` is (eval/pass_at_k/pass_at_{k}_low)
    high: str | None = None
    table: tuple[float, ...] = ()  # the x values comparison.md tabulates
    note: str | None = None

    def at(self, x: float, pattern: str | None = None) -> str:
        """The metric key at `x` (of `pattern`: the curve's own key, or its low/high)."""
        return (pattern or self.key).replace(f"{{{self.x}}}", number(x))

    def matcher(self) -> re.Pattern[str]:
        before, after = self.key.split(f"{{{self.x}}}")
        return re.compile(f"{re.escape(before)}([0-9]+(?:\\.[0-9]+)?){re.escape(after)}")

    def xs(self, keys: Iterable[str]) -> list[float]:
        """The x values some key of `keys` has this curve's metric at, in order."""
        pattern = self.matcher()
        return sorted({float(found.group(1)) for key in keys if (found := pattern.fullmatch(key))})

    def label_at(self, x: float) -> str:
        """Its label with the number for x, as a table's column: pass@k -> pass@4."""
        placeholder = re.compile(rf"\b{re.escape(self.x)}\b")
        if placeholder.search(self.label):
            return placeholder.sub(number(x), self.label, count=1)
        return f"{self.label} {self.x}={number(x)}"


def number(x: float) -> str:
    """An x value as the metric names write it: 4, not 4.0."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def declared_metric_curves(results: Iterable[Result]) -> list[MetricCurve]:
    """The metric curves the jobs' suites declared (the entries of result.json `curves` with an `x`; the others are
    an algorithm's training curves): their union, the first declaration of a key winning, in the order first seen."""
    curves: dict[str, MetricCurve] = {}
    for result in results:
        for entry in result.curves:
            if "key" not in entry or "x" not in entry or entry["key"] in curves:
                continue
            bounds = entry.get("bounds")
            curves[entry["key"]] = MetricCurve(
                key=entry["key"],
                x=entry["x"],
                label=entry.get("label") or entry["key"],
                x_label=entry.get("x_label") or entry["x"],
                log_x=bool(entry.get("log_x")),
                better=entry.get("better"),
                digits=int(entry.get("digits", 3)),
                bounds=tuple(bounds) if bounds is not None else None,
                low=entry.get("low"),
                high=entry.get("high"),
                table=tuple(entry.get("table") or ()),
                note=entry.get("note"),
            )
    return list(curves.values())


def curve_bounds(curves: Sequence[MetricCurve], keys: Iterable[str]) -> dict[str, Bounds]:
    """Metric key -> the bounds its curve declares, for every key of `keys` on a curve with bounds."""
    keys = list(keys)
    return {curve.at(x): curve.bounds for curve in curves if curve.bounds for x in curve.xs(keys)}


@dataclass(frozen=True)
class Point:
    x: float
    mean: float
    low: float  # NaN: no interval
    high: float
    seeds: int


def points(curve: MetricCurve, group: Group, xs: Sequence[float]) -> list[Point]:
    """The group's curve at each x it reports: mean over seeds and the interval (module docstring)."""
    found = []
    for x in xs:
        summary = group.summary(curve.at(x))
        if summary is None:
            continue
        low, high = interval(curve, group, x, summary)
        found.append(Point(x, summary.mean, low, high, summary.n))
    return found


def interval(curve: MetricCurve, group: Group, x: float, summary: Summary) -> tuple[float, float]:
    """Over seeds where there are several; else the one job's own (low, high) where its suite reports them."""
    if summary.n > 1:
        return summary.ci_low, summary.ci_high
    if curve.low is None or curve.high is None:
        return math.nan, math.nan
    (job,) = [job for job in group.complete if curve.at(x) in job.metrics]
    low, high = job.metrics.get(curve.at(x, curve.low)), job.metrics.get(curve.at(x, curve.high))
    return (float(low), float(high)) if finite(low) and finite(high) else (math.nan, math.nan)


def drawn(comparison: Comparison) -> list[tuple[MetricCurve, list[float]]]:
    """Each declared curve that some job reports at two x values or more, with those x values."""
    shown = []
    for curve in comparison.metric_curves:
        xs = curve.xs(comparison.metrics)
        if len(xs) >= 2:
            shown.append((curve, xs))
    return shown


# -- the tables at the declared x values --------------------------------------------------------------------------
def tables(comparison: Comparison) -> list[tuple[str, list[str], list[list[tuple[str, bool]]]]]:
    """Per curve with a `table:`, the title, header and rows of its table: one row per group, one column per listed
    x some job reports, each cell (text, whether it is the best mean of its column)."""
    found = []
    for curve in comparison.metric_curves:
        xs = [x for x in curve.table if curve.at(x) in comparison.metrics]
        if not xs:
            continue
        best = {x: _best(curve, comparison.groups, x) for x in xs}
        header = ["algorithm", "seeds", *(curve.label_at(x) for x in xs)]
        rows = [
            [(group.label, False), (str(len(group.complete)), False)]
            + [(_cell(curve, group, x), best[x] == group.label) for x in xs]
            for group in comparison.groups
        ]
        found.append((f"{curve.label} at {curve.x} = {', '.join(number(x) for x in xs)}", header, rows))
    return found


def _best(curve: MetricCurve, groups: Sequence[Group], x: float) -> str | None:
    """The group with the best mean at x, where the curve says which way is better and two groups report it."""
    means = {group.label: s.mean for group in groups if (s := group.summary(curve.at(x))) is not None}
    if curve.better is None or len(means) < 2:
        return None
    return (max if curve.better == "higher" else min)(means, key=means.__getitem__)


def _cell(curve: MetricCurve, group: Group, x: float) -> str:
    summary = group.summary(curve.at(x))
    if summary is None:
        return "–"
    digits = curve.digits
    text = f"{summary.mean:.{digits}f}"
    low, high = interval(curve, group, x, summary)
    if not math.isnan(low):
        opening, closing = ("[", "]") if summary.n > 1 else ("(", ")")
        text += f" {opening}{low:.{digits}f}, {high:.{digits}f}{closing}"
    return text


def caption(comparison: Comparison) -> str:
    """What the tables' intervals are, and the curves' own notes."""
    notes = [
        "Mean over seeds [95% t-interval over seeds]; for a method with one seed, (the job's own 95% interval, where "
        "its suite reports one: for pass@k and maj@k, a percentile bootstrap over problems); best mean in bold."
    ]
    notes += [curve.note for curve in comparison.metric_curves if curve.note]
    return " ".join(notes)


def to_markdown(comparison: Comparison) -> list[str]:
    """comparison.md's lines for the curves' tables (none without a table to show)."""
    found = tables(comparison)
    if not found:
        return []
    parts: list[str] = []
    for title, header, rows in found:
        cells = ["| " + " | ".join(f"**{text}**" if best else text for text, best in row) + " |" for row in rows]
        parts += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header), *cells, ""]
    parts.append(caption(comparison))
    return parts
