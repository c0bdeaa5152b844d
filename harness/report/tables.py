"""The comparison as rows: one per group, every metric as mean / interval, paired differences, and cost; every
pair of groups on each quality metric with Holm-adjusted p-values; and the seeds a difference of a given size needs.

Judged metrics (win rates) name their judge. A suite whose YAML label already says who judged ("win rate (judge:
held-out RM)") is shown as declared. A suite whose judge is decided per job says so in its metrics, and the report
reads that, whatever the suite is called:
- `eval/<suite>/judged_by_gold`: 1 when the task's gold reward judged, 0 when the training reward did (`reward=`);
  the suite's headline labels get "(judge: gold)" or "(judge: training reward)".
- `eval/<suite>/judged_by_optimised_reward`: 1 when that judge is the reward the policy was optimised against
  (best-of-n, PPO, GRPO on a learned reward); the group's cells of that suite are marked with a dagger, and the
  caption says "judged by the reward it optimised".
- `eval/<suite>/proxy_<metric>` beside a headline `eval/<suite>/<metric>`: the same win rate judged by the reward
  the policy optimised. Such a suite is a held-out judge, and the report checks it against the quality metric (the
  gold reward): the Spearman correlation of the methods' means, and the optimised reward's gap to it per method.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from scipy import stats

from harness.report.aggregate import (
    ALPHA,
    CONFIDENCE,
    MAX_SEEDS,
    POWER,
    Bounds,
    Difference,
    Group,
    Job,
    Sweep,
    difference,
    holm,
    paired,
    seeds_needed,
)
from harness.results import Result


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    better: str | None = None  # "higher" | "lower" | None (no best value marked)
    digits: int = 3
    role: str | None = None  # quality | divergence | proxy (harness.declarations.ROLES)
    note: str | None = None  # a sentence for the table's caption
    bounds: Bounds | None = None  # the values it can take, as declared; intervals stay inside them


@dataclass(frozen=True)
class Curve:
    key: str  # a key of the training log
    label: str
    role: str | None = None


def declared_headline(results: Iterable[Result]) -> list[Metric]:
    """The headline columns the jobs' suites declared (result.json `headline`): their union, first declaration
    of a key wins, ordered by `order` where given (the rest after, in the order first seen)."""
    entries: dict[str, dict[str, Any]] = {}
    for result in results:
        for entry in result.headline:
            entries.setdefault(entry["key"], entry)
    ordered = sorted(entries.values(), key=lambda e: math.inf if e.get("order") is None else e["order"])
    fields = ("better", "digits", "role", "note")
    return [
        Metric(
            e["key"],
            e.get("label") or e["key"],
            **{f: e[f] for f in fields if e.get(f) is not None},
            bounds=tuple(e["bounds"]) if e.get("bounds") is not None else None,
        )
        for e in ordered
    ]


def declared_curves(results: Iterable[Result]) -> list[Curve]:
    """The training curves the jobs' algorithms declared (result.json `curves`), their union in order; a suite's
    metric curves, which `curves` holds too (entries with an `x`), are harness.report.curves'."""
    curves: dict[str, Curve] = {}
    for result in results:
        for entry in result.curves:
            if "x" in entry:
                continue
            curves.setdefault(entry["key"], Curve(entry["key"], entry.get("label") or entry["key"], entry.get("role")))
    return list(curves.values())


JUDGED_BY_GOLD = "judged_by_gold"
JUDGED_BY_OPTIMISED = "judged_by_optimised_reward"
OPTIMISED_MARK = "†"
OPTIMISED_NOTE = f"{OPTIMISED_MARK} judged by the reward it optimised (not an independent judge)."


def suite_of(key: str) -> str:
    """`eval/<suite>/` of a metric key (empty for keys outside eval/)."""
    parts = key.split("/")
    return "/".join(parts[:2]) + "/" if len(parts) > 2 and parts[0] == "eval" else ""


def _flags(groups: list[Group], key: str) -> set[float]:
    return {float(job.metrics[key]) for group in groups for job in group.complete if key in job.metrics}


def name_judges(headline: list[Metric], groups: list[Group]) -> list[Metric]:
    """Headline metrics whose suite reports `judged_by_gold` get their judge in the label, unless it names one."""
    named = []
    for metric in headline:
        flags = _flags(groups, suite_of(metric.key) + JUDGED_BY_GOLD) if suite_of(metric.key) else set()
        if flags and "judge" not in metric.label:
            judge = {frozenset({1.0}): "gold", frozenset({0.0}): "training reward"}.get(
                frozenset(flags), "gold or training reward, per job"
            )
            metric = replace(metric, label=f"{metric.label} (judge: {judge})")
        named.append(metric)
    return named


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
    Metric("cost/trainable_parameters", "trainable params", None, 0),  # all of them, or a LoRA adapter's
    Metric("cost/peak_memory_mb", "peak MB", None, 0),
]


def cost_metrics(job: Job) -> dict[str, float]:
    """Flat cost numbers of one job. `train_s` is the algorithm's own stage (0 when it trains nothing, as
    best-of-n); `pipeline_s` adds every stage it stands on (data, base model, starting point, reward model) as built."""
    result = job.result or Result()
    cost = result.cost
    wall = cost.wall_s
    own = result.algorithm or ""
    stages = set(result.stages)
    flat: dict[str, float] = {
        "cost/train_s": float(wall.get(own, 0.0)) if own in stages else 0.0,
        "cost/eval_s": float(wall.get("eval", math.nan)),
        "cost/pipeline_s": float(sum(seconds for name, seconds in wall.items() if name in stages)),
        # a stage whose trainer counts no tokens (TRL's ORPO, CPO) has none on record: unknown, not zero
        "cost/tokens_trained": float(cost.tokens_trained.get(own, math.nan if own in stages else 0)),
        "cost/tokens_generated": _recorded(cost.tokens_generated),
        "cost/peak_memory_mb": _recorded(cost.peak_memory_mb),
    }
    trainable = cost.trainable_parameters
    if own in trainable:  # [trainable, total] of the algorithm's own stage (results before LoRA have none)
        flat["cost/trainable_parameters"] = float(trainable[own][0])
    elif own not in stages:
        flat["cost/trainable_parameters"] = 0.0  # trains nothing (base, best-of-n)
    for name, seconds in wall.items():
        flat[f"cost/wall_s/{name}"] = float(seconds)
    return flat


def _recorded(count: float | None) -> float:
    """A count of the job's cost as a number; NaN where the result has none on record."""
    return math.nan if count is None else float(count)


def _with_cost(group: Group) -> None:
    for job in group.complete:
        if job.result is not None:
            job.result.metrics.update(cost_metrics(job))


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
    kl_budgets: list[float] | None = None  # the KL budgets of "At equal KL" (None: harness.report.frontier's defaults)
    metric_curves: list[Any] = field(default_factory=list)  # the suites' metric families (harness.report.curves)

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
        return paired(group.values(metric), base.values(metric), bounds=group.bounds.get(metric))

    @functools.cached_property
    def at_equal_kl(self) -> Any:
        """Each method at the KL budgets and who leads where (harness.report.frontier.EqualKL; None without a
        reward and a KL metric), computed once."""
        from harness.report.frontier import equal_kl

        return equal_kl(self)

    @property
    def baseline_group(self) -> Group | None:
        return next((g for g in self.groups if g.label == self.baseline), None)

    def judged_by_optimised(self, group: Group, metric: Metric) -> bool:
        """Whether a job of `group` had `metric` judged by the reward it was optimised against."""
        prefix = suite_of(metric.key)
        return bool(prefix) and 1.0 in _flags([group], prefix + JUDGED_BY_OPTIMISED)

    def best(self, metric: Metric) -> str | None:
        """Label of the group with the best mean for a metric with a direction (None if there is none)."""
        if metric.better is None:
            return None
        means = {g.label: s.mean for g in self.groups if (s := g.summary(metric.key)) is not None}
        if len(means) < 2:
            return None
        pick = max if metric.better == "higher" else min
        return pick(means, key=means.__getitem__)


def compare(sweep: Sweep, baseline: str | None = None, kl_budgets: list[float] | None = None) -> Comparison:
    """The comparison of a sweep's groups against `baseline` (default: the baseline recorded with the sweep;
    none when neither names one, or it is not a group of the sweep: then no paired differences). `kl_budgets`: the
    KLs its methods are compared at (default: those recorded with the sweep, else harness.report.frontier's)."""
    from harness.report.curves import curve_bounds, declared_metric_curves

    groups = sweep.groups
    for group in groups:
        _with_cost(group)
    asked = sweep.baseline if baseline is None else baseline
    labels = {group.label for group in groups}
    results = [job.result for job in sweep.jobs if job.result is not None]
    headline = name_judges(declared_headline(results) or undeclared_headline(groups), groups)
    present = metric_keys(groups, headline)
    metric_curves = declared_metric_curves(results)
    # every summary of these groups (table, CSV, plots) keeps to the declared bounds: the headline's, and a curve's
    # points to the curve's (pass@k in [0, 1])
    bounds = {metric.key: metric.bounds for metric in headline if metric.bounds is not None}
    bounds = {**curve_bounds(metric_curves, present), **bounds}
    for group in groups:
        group.bounds = bounds
    return Comparison(
        sweep,
        groups,
        asked if asked in labels else None,
        present,
        headline,
        declared_curves(results),
        asked or None,
        kl_budgets if kl_budgets is not None else sweep.kl_budgets,
        metric_curves,
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
        cells = [
            Cell(
                _cell(group.summary(m.key), m.digits, intervals) + _mark(comparison, group, m),
                best[m.key] == group.label,
            )
            for m in shown
        ]
        if with_diff:
            cells.insert(position, Cell(_diff_cell(comparison.diff(group))))
        rows.append([Cell(group.label), Cell(seeds), *cells])
    return header, rows


def _mark(comparison: Comparison, group: Group, metric: Metric) -> str:
    return f" {OPTIMISED_MARK}" if comparison.judged_by_optimised(group, metric) else ""


def markdown_table(header: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(f"**{c.text}**" if c.best else c.text for c in row) + " |" for row in rows]
    return "\n".join(lines)


def headline_table(comparison: Comparison) -> str:
    """The comparison's main table, in Markdown: the declared headline metrics of each group, with the paired
    difference to the baseline (comparison.md's first table; what a sweep prints at its end)."""
    return markdown_table(*table_rows(comparison, comparison.headline, with_diff=True))


def to_markdown(comparison: Comparison) -> str:
    from harness.report import curves, finished, frontier

    sweep = comparison.sweep
    cost_header, cost_rows = table_rows(comparison, COST, intervals=False)
    parts = [
        f"## {sweep.experiment}: side-by-side comparison",
        "",
        headline_table(comparison),
        "",
        _caption(comparison),
    ]
    if needed := seeds_needed_line(comparison):
        parts += ["", needed]
    if checks := judge_checks(comparison):
        heading = f"### Judges against {comparison.quality.label}"  # a check needs the quality metric
        parts += ["", heading, "", *(f"- {line}" for line in checks)]
    if lines := finished.finished_lines(comparison):  # budget-bound methods (harness.report.finished)
        parts += ["", "### Training finished?", "", finished.INTRO, "", *(f"- {line}" for line in lines)]
    if tables := pairwise_tables(comparison):
        parts += ["", "### Pairwise differences", "", pairwise_caption(comparison)]
        for title, pair_header, pair_rows in tables:
            parts += ["", f"**{title}**", "", markdown_table(pair_header, pair_rows)]
    if lines := curves.to_markdown(comparison):  # a suite's metric family at the x it lists (pass@k at k = 1, 4, ...)
        parts += ["", *lines]
    if comparison.at_equal_kl is not None:
        parts += ["", *frontier.to_markdown(comparison.at_equal_kl)]
    parts += ["", "### Cost (mean per job)", "", markdown_table(cost_header, cost_rows)]
    if problems := status_lines(sweep.jobs):
        parts += ["", "### Jobs without a result", "", *problems]
    return "\n".join(parts) + "\n"


def _caption(comparison: Comparison) -> str:
    return " ".join(["Mean over seeds [95% t-interval]; best mean in bold.", *caption_notes(comparison)])


def _bounds_text(bounds: Bounds) -> str:
    low, high = bounds
    return f"{'(-∞' if low is None else f'[{low:g}'}, {'∞)' if high is None else f'{high:g}]'}"


def bounds_notes(comparison: Comparison) -> list[str]:
    """What the caption says of bounds: which metrics declare them (their intervals are the t-interval intersected
    with them), which intervals that changed, which keep the plain t-interval, and any job value outside the
    bounds its metric declares (an estimate can be; a wrong declaration shows here)."""
    shown = [m for m in comparison.headline if m.key in comparison.metrics]
    bounded = [m for m in shown if m.bounds is not None]
    if not bounded:
        return []
    by_bounds: dict[Bounds, list[str]] = {}
    for metric in bounded:
        by_bounds.setdefault(metric.bounds, []).append(metric.label)
    declared = "; ".join(f"{', '.join(labels)}: {_bounds_text(b)}" for b, labels in by_bounds.items())
    clipped = []
    for metric in bounded:
        groups = [g.label for g in comparison.groups if (x := g.summary(metric.key)) is not None and x.clipped]
        if groups:
            clipped.append(f"{metric.label} ({', '.join(groups)})")
    unbounded = [m.label for m in shown if m.bounds is None]
    notes = [
        f"Intervals stay within each metric's declared bounds ({declared}): the t-interval intersected with them"
        + (f", which moved an end for {'; '.join(clipped)}." if clipped else ", which moved no end here.")
    ]
    if unbounded:
        notes.append(f"No bounds declared, plain t-interval: {', '.join(unbounded)}.")
    for metric in bounded:
        values = [v for g in comparison.groups for v in g.values(metric.key).values()]
        low, high = metric.bounds
        outside = sum((low is not None and v < low) or (high is not None and v > high) for v in values)
        if outside:
            notes.append(
                f"{metric.label}: {outside} of {len(values)} job values {'lies' if outside == 1 else 'lie'} outside "
                f"its declared bounds {_bounds_text(metric.bounds)} (an estimate can: a mean outside them is shown "
                "as observed, its interval reaching to it)."
            )
    return notes


def caption_notes(comparison: Comparison) -> list[str]:
    """What the table's caption says beyond mean and interval: the suites' notes, and the paired differences
    (or why there are none)."""
    shown = [m for m in comparison.headline if m.key in comparison.metrics]
    notes = [m.note for m in shown if m.note]
    if any(comparison.judged_by_optimised(g, m) for g in comparison.groups for m in shown):
        notes.append(OPTIMISED_NOTE)
    notes += bounds_notes(comparison)
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


# -- every pair of groups, and the seeds a difference needs ----------------------------------------------
NOISE_MARK = "≈"


@dataclass(frozen=True)
class Pair:
    """`first` - `second` on one metric, `first` the better mean (the higher where no direction is declared)."""

    first: str
    second: str
    seeds: tuple[int, int]  # seeds (complete jobs reporting the metric) of first and second
    difference: Difference
    holm_p: float  # adjusted over every pair of this metric (NaN: no test possible)

    @property
    def within_noise(self) -> bool:
        return self.holm_p >= ALPHA


def pairwise_metrics(comparison: Comparison) -> list[Metric]:
    """The metrics every pair of groups is compared on: the quality metric and every headline metric with a
    direction (a KL or a proxy reward has none: a cost or a belief, not a quality)."""
    return [
        m for m in comparison.headline if m.key in comparison.metrics and (m.role == "quality" or m.better is not None)
    ]


def pairwise(comparison: Comparison, metric: Metric) -> list[Pair]:
    """Every pair of groups that report `metric`, in table order: the difference (paired by seed where the two
    share their seeds, else Welch), its p-value and the Holm-adjusted one over this metric's pairs (each metric is
    its own family)."""
    values = [(g, v) for g in comparison.groups if (v := g.values(metric.key))]
    bounds = metric.bounds
    lower_first = metric.better == "lower"
    found = []
    for (a, va), (b, vb) in _pairs(values):
        mean_a, mean_b = statistics.fmean(va.values()), statistics.fmean(vb.values())
        if (mean_b < mean_a) if lower_first else (mean_b > mean_a):
            (a, va), (b, vb) = (b, vb), (a, va)
        d = difference(va, vb, bounds)
        if d is not None:
            found.append((a.label, b.label, (len(va), len(vb)), d))
    adjusted = holm([d.p_value for *_, d in found])
    return [Pair(a, b, n, d, p) for (a, b, n, d), p in zip(found, adjusted, strict=True)]


def _pairs(items: list) -> list[tuple]:
    """Every pair (items[i], items[j]) with i < j."""
    return [(items[i], items[j]) for i in range(len(items)) for j in range(i + 1, len(items))]


def _p(value: float) -> str:
    if math.isnan(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


PAIRWISE_HEADER = ["A − B", f"difference [{CONFIDENCE:.0%} CI]", "test", "p", "Holm p", "noise"]


def pairwise_tables(comparison: Comparison) -> list[tuple[str, list[str], list[list[Cell]]]]:
    """(title, header, rows) per pairwise metric with two groups or more, for comparison.md and report.html."""
    tables = []
    for metric in pairwise_metrics(comparison):
        pairs = pairwise(comparison, metric)
        if not pairs:
            continue
        digits = metric.digits
        rows = []
        for pair in pairs:
            d = pair.difference
            text = f"{d.diff:+.{digits}f}"
            if not math.isnan(d.ci_low):
                text += f" [{d.ci_low:+.{digits}f}, {d.ci_high:+.{digits}f}]"
            test = f"paired, {d.n} seeds" if d.test == "paired" else f"Welch, {pair.seeds[0]} + {pair.seeds[1]} seeds"
            mark = NOISE_MARK if pair.within_noise else ("?" if math.isnan(pair.holm_p) else "")
            cells = [f"{pair.first} − {pair.second}", text, test, _p(d.p_value), _p(pair.holm_p), mark]
            rows.append([Cell(cell) for cell in cells])
        title = f"{metric.label} (Holm over {len(pairs)} pair{'s' if len(pairs) > 1 else ''})"
        tables.append((title, PAIRWISE_HEADER, rows))
    return tables


def pairwise_caption(comparison: Comparison) -> str:
    text = (
        f"Every pair of groups on each quality metric: A − B, A the better mean, with its {CONFIDENCE:.0%} t-interval "
        "(paired by seed where both groups have the same seeds, else Welch's unpaired test; kept within the "
        "bounds a difference of the metric can take), the two-sided p-value, and the Holm-Bonferroni adjusted "
        f"p-value over that metric's pairs. {NOISE_MARK}: within noise (Holm p ≥ {ALPHA:g})."
    )
    if any(math.isnan(p.holm_p) for m in pairwise_metrics(comparison) for p in pairwise(comparison, m)):
        text += " ?: no test (a group with one seed)."
    return text


@dataclass(frozen=True)
class SeedsNeeded:
    metric: Metric
    design: str  # "paired" (the groups share their seeds) or "two-sample"
    sd: float  # pooled s.d. of the seed-paired differences, or within groups
    pooled_over: int  # how many pairs (paired) or groups (two-sample) the s.d. pools
    deltas: list[tuple[float, int | None]]  # (difference to detect, seeds needed; None: more than MAX_SEEDS)


def seeds_estimate(comparison: Comparison) -> SeedsNeeded | None:
    """From the observed seed variance of the quality metric, the seeds that a difference of the median observed
    pairwise difference, and of half of it, needs (two-sided t-test at ALPHA, power POWER). Paired design where
    every group has the same seeds (two or more): the s.d. of the seed-paired differences pooled over all pairs
    (variances weighted by their degrees of freedom). Otherwise the s.d. within groups pooled the same way, and a
    two-sample test with that many seeds per group. None without a quality metric or two groups reporting it."""
    metric = comparison.quality
    if metric is None:
        return None
    values = [v for g in comparison.groups if (v := g.values(metric.key))]
    if len(values) < 2:
        return None
    median = statistics.median(
        abs(statistics.fmean(a.values()) - statistics.fmean(b.values())) for a, b in _pairs(values)
    )
    if len({frozenset(v) for v in values}) == 1 and len(values[0]) >= 2:
        design = "paired"
        samples = [[a[seed] - b[seed] for seed in a] for a, b in _pairs(values)]
    else:
        design, samples = "two-sample", [list(v.values()) for v in values]
    samples = [sample for sample in samples if len(sample) >= 2]
    degrees = sum(len(sample) - 1 for sample in samples)
    pooled = sum(statistics.variance(sample) * (len(sample) - 1) for sample in samples)
    sd = math.sqrt(pooled / degrees) if degrees else math.nan
    deltas = [(delta, seeds_needed(sd, delta, design=design)) for delta in (median, median / 2)]
    return SeedsNeeded(metric, design, sd, len(samples), deltas)


def seeds_needed_line(comparison: Comparison) -> str | None:
    """The seeds-needed estimate as the sentence printed under the table."""
    estimate = seeds_estimate(comparison)
    if estimate is None:
        return None
    metric = estimate.metric
    what = "seed-paired differences" if estimate.design == "paired" else "values within a group"
    over = f"{estimate.pooled_over} {'pairs' if estimate.design == 'paired' else 'groups'}"
    (median, at_median), (half, at_half) = estimate.deltas
    if math.isnan(estimate.sd) or estimate.sd == 0 or median == 0:
        why = "fewer than two seeds per group" if math.isnan(estimate.sd) else "no seed variance or no difference"
        return f"Seeds needed ({metric.label}): not estimable ({why})."
    unit = " per group" if estimate.design == "two-sample" else ""

    def needs(n: int | None) -> str:
        return f"more than {MAX_SEEDS} seeds{unit}" if n is None else f"{n} seeds{unit}"

    return (
        f"Seeds needed ({metric.label}): with the observed seed s.d. of {estimate.sd:.2g} ({what}, pooled "
        f"over {over}), detecting a {median:.2g} difference (the median between groups here) at alpha "
        f"{ALPHA:g} two-sided with power {POWER:g} needs {needs(at_median)}; a {half:.2g} difference (half "
        f"of it) needs {needs(at_half)}. {'Paired' if estimate.design == 'paired' else 'Two-sample'} t-test, "
        "from the noncentral t."
    )


# -- judges against the quality metric ------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeCheck:
    metric: Metric  # a win rate judged by a held-out judge
    spearman: float  # rank correlation of the groups' means with the quality metric's (NaN: undefined)
    groups: int  # how many groups have both means
    gaps: list[tuple[str, float, float]]  # (group, optimised reward's win rate, the held-out judge's) per group


def judge_check(comparison: Comparison) -> list[JudgeCheck]:
    """For every held-out judge's headline win rate (a suite that also reports `proxy_<metric>`): does it rank the
    groups as the quality metric does (Spearman over group means), and per group, how far the win rate judged by
    the reward the policy optimised (`proxy_<metric>`) sits above the held-out judge's (over-optimisation)."""
    quality = comparison.quality
    if quality is None:
        return []
    judged_suites = {
        suite_of(m.key)
        for m in comparison.headline
        if suite_of(m.key) and _proxy_key(m.key) in comparison.metrics and m.key != quality.key
    }
    checks = []
    for metric in comparison.headline:
        if suite_of(metric.key) not in judged_suites or metric.key not in comparison.metrics or metric.better is None:
            continue
        pairs = [
            (judged.mean, truth.mean)
            for group in comparison.groups
            if (judged := group.summary(metric.key)) is not None and (truth := group.summary(quality.key)) is not None
        ]
        rho = math.nan
        if len(pairs) >= 3 and len({j for j, _ in pairs}) > 1 and len({t for _, t in pairs}) > 1:
            rho = float(stats.spearmanr(*zip(*pairs, strict=True)).statistic)
        gaps = [
            (group.label, proxy.mean, judged.mean)
            for group in comparison.groups
            if (proxy := group.summary(_proxy_key(metric.key))) is not None
            and (judged := group.summary(metric.key)) is not None
        ]
        checks.append(JudgeCheck(metric, rho, len(pairs), gaps))
    return checks


def _proxy_key(key: str) -> str:
    head, _, name = key.rpartition("/")
    return f"{head}/proxy_{name}"


def judge_checks(comparison: Comparison) -> list[str]:
    """The judge check as sentences (comparison.md's "Judges against gold", report.html's too)."""
    quality = comparison.quality
    lines = []
    for check in judge_check(comparison):
        if math.isnan(check.spearman):
            why = "needs 3 groups" if check.groups < 3 else "a constant column"
            lines.append(f"{check.metric.label}: Spearman ρ with {quality.label} undefined ({why}).")
        else:
            lines.append(
                f"{check.metric.label}: Spearman ρ = {check.spearman:.2f} with {quality.label} "
                f"(group means, {check.groups} groups)."
            )
        for group, proxy, judged in check.gaps:
            lines.append(
                f"{group}: win rate judged by the reward it optimised {proxy:.3f} vs {check.metric.label} {judged:.3f} "
                f"(gap {proxy - judged:+.3f})."
            )
    return lines


def status_lines(jobs: list[Job]) -> list[str]:
    lines = []
    for job in jobs:
        if job.status == "complete":
            continue
        what = " ".join(f"{key}={value}" for key, value in job.params.items())
        lines.append(f"- **{job.status}**: {what}: {job.reason or 'no reason recorded'}")
    return lines
