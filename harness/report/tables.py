"""The comparison as rows: one per group, every metric as mean / interval, paired differences, and cost.

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
import io
import math
from dataclasses import dataclass, replace
from typing import Any

from scipy import stats

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
    trainable = cost.get("trainable_parameters", {})
    if own in trainable:  # [trainable, total] of the algorithm's own stage (results before LoRA have none)
        flat["cost/trainable_parameters"] = float(trainable[own][0])
    elif own not in stages:
        flat["cost/trainable_parameters"] = 0.0  # trains nothing (base, best-of-n)
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


def compare(sweep: Sweep, baseline: str | None = None) -> Comparison:
    """The comparison of a sweep's groups against `baseline` (default: the baseline recorded with the sweep;
    none when neither names one, or it is not a group of the sweep: then no paired differences)."""
    groups = sweep.groups
    for group in groups:
        _with_cost(group)
    asked = sweep.baseline if baseline is None else baseline
    labels = {group.label for group in groups}
    results = [job.result for job in sweep.jobs if job.result]
    headline = name_judges(declared_headline(results) or undeclared_headline(groups), groups)
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
    if checks := judge_checks(comparison):
        heading = f"### Judges against {comparison.quality.label}"  # a check needs the quality metric
        parts[5:5] = ["", heading, "", *(f"- {line}" for line in checks)]
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
    if any(comparison.judged_by_optimised(g, m) for g in comparison.groups for m in shown):
        notes.append(OPTIMISED_NOTE)
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
