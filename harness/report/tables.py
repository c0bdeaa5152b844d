"""The comparison as rows: one per group, every metric as mean / interval, paired differences, and cost."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from harness.report.aggregate import Group, Job, Sweep, paired


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str | None = None  # "higher" | "lower" | None (no best value marked)
    digits: int = 3
    role: str | None = None  # quality | divergence | proxy (harness.declarations.ROLES)
    note: str | None = None  # a sentence for the table's caption


@dataclass(frozen=True)
class Curve:
    key: str  # a key of the training log
    label: str
    role: str | None = None


def declared_headline(results: list[dict[str, Any]]) -> list[Metric]:
    """The headline columns the jobs' suites declared (result.json `headline`): their union, first declaration
    of a key wins, ordered by `order` where given (the rest after, in the order first seen)."""
    entries: dict[str, dict[str, Any]] = {}
    for result in results:
        for entry in result.get("headline") or []:
            entries.setdefault(entry["key"], entry)
    ordered = sorted(entries.values(), key=lambda e: math.inf if e.get("order") is None else e["order"])
    fields = ("better", "digits", "role", "note")
    return [
        Metric(e["key"], e.get("label") or e["key"], **{f: e[f] for f in fields if e.get(f) is not None})
        for e in ordered
    ]


def declared_curves(results: list[dict[str, Any]]) -> list[Curve]:
    """The training curves the jobs' algorithms declared (result.json `curves`), their union in order."""
    curves: dict[str, Curve] = {}
    for result in results:
        for entry in result.get("curves") or []:
            curves.setdefault(entry["key"], Curve(entry["key"], entry.get("label") or entry["key"], entry.get("role")))
    return list(curves.values())


def undeclared_headline(groups: list[Group]) -> list[Metric]:
    """Without any declaration (results written before suites declared theirs): every eval/* metric, unmarked."""
    keys = {key for group in groups for job in group.complete for key in job.metrics if key.startswith("eval/")}
    return [Metric(key, key.removeprefix("eval/")) for key in sorted(keys)]


COST = [
    Metric("cost/train_s", "train s", None, 0),  # no best marked: zero for what does not train (base, best-of-n)
    Metric("cost/eval_s", "eval s", None, 1),
    Metric("cost/pipeline_s", "pipeline s", None, 0),
    Metric("cost/tokens_trained", "tokens trained", None, 0),
    Metric("cost/tokens_generated", "tokens generated", None, 0),
    Metric("cost/peak_memory_mb", "peak MB", None, 0),
]


def cost_metrics(job: Job) -> dict[str, float]:
    """Flat cost numbers of one job. `train_s` is the algorithm's own stage (0 when it trains nothing, as
    best-of-n); `pipeline_s` adds every stage it stands on (data, base model, starting point, reward model) as built."""
    cost = job.result.get("cost", {})
    wall = cost.get("wall_s", {})
    own = job.result.get("algorithm", "")
    stages = set(job.result.get("stages", {}))
    flat: dict[str, float] = {
        "cost/train_s": float(wall.get(own, 0.0)) if own in stages else 0.0,
        "cost/eval_s": float(wall.get("eval", math.nan)),
        "cost/pipeline_s": float(sum(seconds for name, seconds in wall.items() if name in stages)),
        # a stage whose trainer counts no tokens (TRL's ORPO, CPO) has none on record: unknown, not zero
        "cost/tokens_trained": float(cost.get("tokens_trained", {}).get(own, math.nan if own in stages else 0)),
        "cost/tokens_generated": float(cost.get("tokens_generated", math.nan)),
        "cost/peak_memory_mb": float(cost.get("peak_memory_mb", math.nan)),
    }
    for name, seconds in wall.items():
        flat[f"cost/wall_s/{name}"] = float(seconds)
    return flat


def _with_cost(group: Group) -> None:
    for job in group.complete:
        job.result.setdefault("metrics", {}).update(cost_metrics(job))


def metric_keys(groups: list[Group], headline: list[Metric]) -> list[str]:
    """Every numeric metric any complete job reports: the headline ones first, then eval/*, train/*, cost/*."""
    present: set[str] = set()
    for group in groups:
        for job in group.complete:
            present.update(key for key, value in job.metrics.items() if isinstance(value, int | float))
    first = [m.key for m in headline + COST if m.key in present]
    rest = sorted(present - set(first), key=lambda k: (not k.startswith("eval/"), not k.startswith("cost/"), k))
    return first + rest


@dataclass
class Comparison:
    sweep: Sweep
    groups: list[Group]
    baseline: str | None  # label of the baseline group (None when it is not in the sweep)
    metrics: list[str]
    headline: list[Metric]  # the leading columns, as the suites declared them
    curves: list[Curve]  # the training curves the algorithms declared
    asked_baseline: str | None = None  # the baseline asked for (recorded with the sweep, or --baseline)

    def role(self, role: str) -> Metric | None:
        """The first headline metric with this role that some job reports (quality, divergence, proxy)."""
        return next((m for m in self.headline if m.role == role and m.key in self.metrics), None)

    @property
    def quality(self) -> Metric | None:
        return self.role("quality")

    def diff(self, group: Group, metric: str | None = None) -> Any:
        """`group` minus the baseline, paired by seed, on `metric` (default: the quality metric)."""
        base = self.baseline_group
        metric = metric or (self.quality.key if self.quality else None)
        if base is None or group is base or metric is None:
            return None
        return paired(group.values(metric), base.values(metric))

    @property
    def baseline_group(self) -> Group | None:
        return next((g for g in self.groups if g.label == self.baseline), None)

    def best(self, metric: Metric) -> str | None:
        """Label of the group with the best mean for a metric with a direction (None if there is none)."""
        if metric.better is None:
            return None
        means = {g.label: s.mean for g in self.groups if (s := g.summary(metric.key)) is not None}
        if len(means) < 2:
            return None
        pick = max if metric.better == "higher" else min
        return pick(means, key=means.__getitem__)


def compare(sweep: Sweep, baseline: str | None = None) -> Comparison:
    """The comparison of a sweep's groups against `baseline` (default: the baseline recorded with the sweep;
    none when neither names one, or it is not a group of the sweep: then no paired differences)."""
    groups = sweep.groups
    for group in groups:
        _with_cost(group)
    asked = sweep.baseline if baseline is None else baseline
    labels = {group.label for group in groups}
    results = [job.result for job in sweep.jobs if job.result]
    headline = declared_headline(results) or undeclared_headline(groups)
    present = metric_keys(groups, headline)
    return Comparison(
        sweep, groups, asked if asked in labels else None, present, headline, declared_curves(results), asked or None
    )


# -- CSV --------------------------------------------------------------------------------------------------
def to_csv(comparison: Comparison) -> str:
    """One row per group; per metric: mean, std, ci_low, ci_high, n; the paired difference to the baseline
    for the headline metrics. Numbers in full precision, so a rebuild from the same folders is identical."""
    param_keys = sorted({key for group in comparison.groups for key in group.params})
    diff_keys = [m.key for m in comparison.headline if m.key in comparison.metrics]
    header = ["group", "algorithm", *param_keys, "seeds", "complete", "failed", "missing"]
    for key in comparison.metrics:
        header += [f"{key}/{part}" for part in ("mean", "std", "ci_low", "ci_high", "n")]
    base = comparison.baseline or "baseline"
    for key in diff_keys:
        header += [f"{key}/diff_vs_{base}/{part}" for part in ("mean", "ci_low", "ci_high", "p_value", "n")]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for group in comparison.groups:
        row: list[Any] = [group.label, group.algorithm, *(group.params.get(key, "") for key in param_keys)]
        row += [" ".join(sorted({job.seed for job in group.complete}, key=_seed_order))]
        row += [sum(job.status == status for job in group.jobs) for status in ("complete", "failed", "missing")]
        for key in comparison.metrics:
            s = group.summary(key)
            row += [_number(v) for v in (s.mean, s.std, s.ci_low, s.ci_high)] + [s.n] if s else ["", "", "", "", 0]
        for key in diff_keys:
            d = comparison.diff(group, key)
            row += [_number(v) for v in (d.diff, d.ci_low, d.ci_high, d.p_value)] + [d.n] if d else [""] * 4 + [0]
        writer.writerow(row)
    return buffer.getvalue()


def _seed_order(seed: str) -> tuple[int, str]:
    return (int(seed), "") if seed.lstrip("-").isdigit() else (0, seed)


def _number(value: float) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(float(value))


# -- Markdown ---------------------------------------------------------------------------------------------
def _cell(summary: Any, digits: int, interval: bool = True) -> str:
    if summary is None:
        return "–"
    text = f"{summary.mean:.{digits}f}"
    if interval and summary.n > 1 and not math.isnan(summary.ci_low):
        text += f" [{summary.ci_low:.{digits}f}, {summary.ci_high:.{digits}f}]"
    return text


def _diff_cell(diff: Any) -> str:
    if diff is None:
        return "–"
    text = f"{diff.diff:+.3f}"
    if diff.n > 1 and not math.isnan(diff.ci_low):
        text += f" [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]"
    return text


@dataclass(frozen=True)
class Cell:
    text: str
    best: bool = False  # the best mean of its column (bold in Markdown, highlighted in HTML)


def table_rows(
    comparison: Comparison, metrics: list[Metric], intervals: bool = True, with_diff: bool = False
) -> tuple[list[str], list[list[Cell]]]:
    """Header and formatted rows (mean [95% CI], the best mean marked) for the given metrics; `with_diff`: the
    paired difference to the baseline on the quality metric after its column."""
    shown = [m for m in metrics if m.key in comparison.metrics]
    best = {m.key: comparison.best(m) for m in shown}
    header = ["algorithm", "seeds", *(m.label for m in shown)]
    quality = comparison.quality
    with_diff = with_diff and comparison.baseline is not None and quality in shown
    if with_diff:
        position = shown.index(quality) + 1
        header.insert(2 + position, f"Δ {quality.label} vs {comparison.baseline}")
    rows = []
    for group in comparison.groups:
        n_done = len(group.complete)
        seeds = f"{n_done}/{len(group.jobs)}" if n_done != len(group.jobs) else str(n_done)
        cells = [Cell(_cell(group.summary(m.key), m.digits, intervals), best[m.key] == group.label) for m in shown]
        if with_diff:
            cells.insert(position, Cell(_diff_cell(comparison.diff(group))))
        rows.append([Cell(group.label), Cell(seeds), *cells])
    return header, rows


def markdown_table(header: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(f"**{c.text}**" if c.best else c.text for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(comparison: Comparison) -> str:
    sweep = comparison.sweep
    header, rows = table_rows(comparison, comparison.headline, with_diff=True)
    cost_header, cost_rows = table_rows(comparison, COST, intervals=False)
    parts = [
        f"## {sweep.experiment}: side-by-side comparison",
        "",
        markdown_table(header, rows),
        "",
        _caption(comparison),
        "",
        "### Cost (mean per job)",
        "",
        markdown_table(cost_header, cost_rows),
    ]
    if problems := status_lines(sweep.jobs):
        parts += ["", "### Jobs without a result", "", *problems]
    return "\n".join(parts) + "\n"


def _caption(comparison: Comparison) -> str:
    return " ".join(["Mean over seeds [95% t-interval]; best mean in bold.", *caption_notes(comparison)])


def caption_notes(comparison: Comparison) -> list[str]:
    """What the table's caption says beyond mean and interval: the suites' notes, and the paired differences
    (or why there are none)."""
    shown = [m for m in comparison.headline if m.key in comparison.metrics]
    notes = [m.note for m in shown if m.note]
    quality = comparison.quality
    if comparison.baseline and quality is not None:
        notes.append(f"Δ: {quality.label} paired by seed against {comparison.baseline}, with its 95% t-interval.")
    elif comparison.asked_baseline and not comparison.baseline:
        notes.append(f"No paired differences: the baseline {comparison.asked_baseline} is not a group of this sweep.")
    elif not comparison.asked_baseline:
        notes.append("No paired differences: no baseline was recorded with the sweep (harness-report --baseline).")
    else:
        notes.append("No paired differences: no suite declares a quality metric (headline role: quality).")
    return notes


def status_lines(jobs: list[Job]) -> list[str]:
    lines = []
    for job in jobs:
        if job.status == "complete":
            continue
        what = " ".join(f"{key}={value}" for key, value in job.params.items())
        lines.append(f"- **{job.status}**: {what}: {job.reason or 'no reason recorded'}")
    return lines
