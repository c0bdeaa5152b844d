"""The comparison's figures (matplotlib, no display needed): each returned as PNG bytes by name."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.report.aggregate import Group, training_history
from harness.report.frontier import (
    MethodFrontier,
    final_point,
    mean_frontier,
    method_name,
    pareto,  # noqa: F401  (its home before harness.report.frontier)
    trajectory_points,
)
from harness.report.tables import OPTIMISED_MARK, Comparison, Curve, declared_curves

# The curve of an algorithm that declares none (`curves:` in its YAML): the loss, which every trainer logs.
FALLBACK_CURVE = Curve("loss", "loss")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    _pyplot().close(figure)
    return buffer.getvalue()


def _colours(groups: list[Group]) -> dict[str, tuple]:
    """One colour per algorithm: tab10 up to ten, else tab20 (a zoo of 15 methods must not share colours)."""
    algorithms = list(dict.fromkeys(group.algorithm for group in groups))
    size = 10 if len(algorithms) <= 10 else 20
    palette = _pyplot().get_cmap(f"tab{size}")
    return {name: palette(index % size) for index, name in enumerate(algorithms)}


def _error(summary) -> list[list[float]]:
    """The interval as matplotlib's error bar: below and above the mean apart, since an interval cut at a metric's
    bound (harness.report.aggregate) is no longer symmetric."""
    if summary is None or summary.n < 2 or math.isnan(summary.ci_high) or math.isnan(summary.ci_low):
        return [[0.0], [0.0]]
    return [[max(summary.mean - summary.ci_low, 0.0)], [max(summary.ci_high - summary.mean, 0.0)]]


def frontier(comparison: Comparison) -> bytes | None:
    """The reward against the KL (harness.report.frontier's metrics: the quality metric, else a judge's win rate).
    Per method, its mean frontier over seeds (solid where every seed reaches the KL, dotted where only some do)
    with its 95% interval as a band; each group's mean with light 95% intervals on both axes; every job's final point
    faint, and its checkpoints along training fainter still, joined in training order. Dotted verticals: the KL
    budgets of the "At equal KL" table. Nothing without a reward and a KL metric."""
    from matplotlib.lines import Line2D

    result = comparison.at_equal_kl
    if result is None:
        return None
    y_key, x_key = result.reward.key, result.kl.key
    plt = _pyplot()
    names = list(dict.fromkeys(method_name(group) for group in comparison.groups))
    palette = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    colours = {name: palette(index % palette.N) for index, name in enumerate(names)}  # one per frontier
    figure, axes = plt.subplots(figsize=(7.5, 5))
    labelled: set[str] = set()
    traced = False
    for group in comparison.groups:
        name = method_name(group)
        colour = colours[name]
        traced = _plot_jobs(axes, group, colour, y_key, x_key) or traced
        reward, kl = group.summary(y_key), group.summary(x_key)
        if reward is None or kl is None:
            continue
        # light: the bands carry the frontier's interval; a group's KL interval over three seeds is often wide
        bars = axes.errorbar(
            kl.mean, reward.mean, xerr=_error(kl), yerr=_error(reward), fmt="o", color=colour, capsize=2,
            elinewidth=0.8, label=None if name in labelled else name,
        )
        for line in (*bars[1], *bars[2]):
            line.set_alpha(0.35)
        labelled.add(name)
        if group.params:
            text = ",".join(group.params.values())
            axes.annotate(text, (kl.mean, reward.mean), textcoords="offset points", xytext=(4, 4), fontsize=7)
    for method in result.methods:
        colour = colours[method.method]
        _plot_mean_frontier(axes, method, colour)
        if method.method not in labelled:  # a method without a group mean on both axes still gets its name
            axes.plot([], [], color=colour, label=method.method)
            labelled.add(method.method)
    for budget in result.budgets:
        axes.axvline(budget, color="grey", linestyle=":", linewidth=0.8, alpha=0.6)
    handles, labels = axes.get_legend_handles_labels()
    handles += [Line2D([], [], color="grey", linewidth=1.8), Line2D([], [], color="grey", linewidth=1.2, linestyle=":")]
    labels += ["mean frontier, 95% band", "(some seeds only)"]
    if traced:
        handles.append(Line2D([], [], color="grey", alpha=0.5, marker="x", linestyle="none"))
        labels.append("checkpoints along training")
    axes.legend(handles, labels, fontsize=7, loc="lower right")
    axes.set_xlabel(result.kl.label)
    axes.set_ylabel(result.reward.label)
    axes.set_title(f"{result.reward.label} vs {result.kl.label}: frontiers over seeds, 95% intervals", fontsize=10)
    axes.grid(alpha=0.3)
    return _png(figure)


def _plot_jobs(axes: Any, group: Group, colour: Any, y_key: str, x_key: str) -> bool:
    """Each job of `group` faint at its final point, its checkpoints fainter, joined in training order; whether any
    job had checkpoints."""
    traced = False
    for job in group.complete:
        final = final_point(job, y_key, x_key)
        if path := trajectory_points(job, y_key, x_key):
            traced = True
            xs, ys = zip(*(path + ([final] if final else [])), strict=True)
            axes.plot(xs, ys, color=colour, alpha=0.15, linewidth=0.7)
            axes.scatter(*zip(*path, strict=True), color=colour, alpha=0.25, s=10, marker="x", linewidths=0.7)
        if final:
            axes.scatter(*final, color=colour, alpha=0.3, s=14, linewidths=0)
    return traced


def _plot_mean_frontier(axes: Any, method: MethodFrontier, colour: Any) -> None:
    """A method's mean frontier over seeds: solid where every seed reaches the KL, dotted where only some do, and its
    95% band where every seed reaches."""
    curve = mean_frontier(method)
    every = np.where(curve["seeds"] == len(method.seeds), curve["mean"], np.nan)
    axes.plot(curve["kl"], curve["mean"], color=colour, linewidth=1.2, linestyle=":")
    axes.plot(curve["kl"], every, color=colour, linewidth=1.8)
    # the band where every seed reaches: a t-interval over the two that reach further would be mostly noise
    band = np.isfinite(curve["low"]) & np.isfinite(curve["high"]) & (curve["seeds"] == len(method.seeds))
    if band.any():
        axes.fill_between(curve["kl"], curve["low"], curve["high"], where=band, color=colour, alpha=0.15, lw=0)


def metric_bars(comparison: Comparison) -> bytes | None:
    """Bars of the headline metrics (but a proxy's) per group with 95% intervals as error bars."""
    shown = [m for m in comparison.headline if m.key in comparison.metrics and m.role != "proxy"]
    if not shown:
        return None
    plt = _pyplot()
    colours = _colours(comparison.groups)
    figure, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.6), squeeze=False)
    for axis, metric in zip(axes[0], shown, strict=True):
        labels, means, below, above, colors = [], [], [], [], []
        for group in comparison.groups:
            if (s := group.summary(metric.key)) is not None:
                # a dagger: judged by the reward this group was optimised against (harness.report.tables)
                mark = f" {OPTIMISED_MARK}" if comparison.judged_by_optimised(group, metric) else ""
                labels.append(group.label + mark)
                means.append(s.mean)
                (low,), (high,) = _error(s)
                below.append(low)
                above.append(high)
                colors.append(colours[group.algorithm])
        axis.bar(range(len(means)), means, yerr=[below, above], color=colors, capsize=3)
        axis.set_xticks(range(len(means)), labels, rotation=45, ha="right", fontsize=8)
        axis.set_title(metric.label, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def _curves(group: Group, key: str) -> list[tuple[np.ndarray, np.ndarray]]:
    curves = []
    for job in group.complete:
        rows = [row for row in training_history(job) if key in row]
        if rows:
            curves.append((np.array([row["step"] for row in rows]), np.array([row[key] for row in rows])))
    return curves


def _mean_curve(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean and min/max band over seeds on the steps every seed logged."""
    steps = curves[0][0]
    for x, _ in curves[1:]:
        steps = np.intersect1d(steps, x)
    stacked = np.stack([np.interp(steps, x, y) for x, y in curves])
    return steps, stacked.mean(0), stacked.min(0), stacked.max(0)


def group_curves(group: Group) -> list[Curve]:
    """The curves the group's algorithm declared (in its jobs' result.json), then the fallback."""
    return [*declared_curves([job.result for job in group.complete]), FALLBACK_CURVE]


def training_curves(comparison: Comparison) -> bytes | None:
    """One panel per group that trained: its main training signal over steps (the first declared curve its log
    has), mean and range over seeds."""
    panels = []
    for group in comparison.groups:
        for curve in group_curves(group):
            if curves := _curves(group, curve.key):
                panels.append((group, curve.label, curves))
                break
    if not panels:
        return None
    colours = _colours(comparison.groups)
    figure, axes = _panel_grid(len(panels), columns=3, size=(4, 3))
    for axis, (group, key, curves) in zip(axes, panels, strict=True):
        steps, mean, low, high = _mean_curve(curves)
        colour = colours[group.algorithm]
        axis.plot(steps, mean, color=colour)
        axis.fill_between(steps, low, high, color=colour, alpha=0.2)
        axis.set_title(f"{group.label}: {key}", fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def _panel_grid(panels: int, columns: int, size: tuple[float, float]) -> tuple[Any, list[Any]]:
    """A figure of `panels` axes, up to `columns` a row, each `size` inches; the grid's spare axes hidden."""
    columns = min(columns, panels)
    rows = math.ceil(panels / columns)
    figure, axes = _pyplot().subplots(rows, columns, figsize=(size[0] * columns, size[1] * rows), squeeze=False)
    for axis in list(axes.flat)[panels:]:
        axis.axis("off")
    return figure, list(axes.flat)[:panels]


def shared_training_curves(comparison: Comparison) -> bytes | None:
    """One panel per training curve that several methods declare (the GRPO family's reward and entropy), a line per
    method (mean over seeds): how they differ along training, on one axis (Cui et al. 2025: reward rises as entropy is
    spent)."""
    shared: dict[str, list[tuple[Group, str, list]]] = {}
    for group in comparison.groups:
        for curve in group_curves(group)[:-1]:  # declared ones only, not the fallback
            if curves := _curves(group, curve.key):
                shared.setdefault(curve.key, []).append((group, curve.label, curves))
    panels = [(key, lines) for key, lines in shared.items() if len(lines) >= 2]
    if not panels:
        return None
    colours = _colours(comparison.groups)
    figure, axes = _panel_grid(len(panels), columns=2, size=(6, 3.5))
    for axis, (_, lines) in zip(axes, panels, strict=True):
        for group, _, curves in lines:
            steps, mean, _, _ = _mean_curve(curves)
            axis.plot(steps, mean, color=colours[group.algorithm], label=group.label, linewidth=1.2)
        axis.set_title(lines[0][1], fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, ncols=2)
    figure.tight_layout()
    return _png(figure)


def _role_curve(group: Group, role: str) -> list[tuple[np.ndarray, np.ndarray]]:
    curve = next((c for c in group_curves(group) if c.role == role), None)
    return _curves(group, curve.key) if curve is not None else []


def proxy_vs_quality(comparison: Comparison) -> bytes | None:
    """For RL on a learned reward: what the reward model believed (the `proxy` headline metric) against the
    quality metric. Left, over training (where the algorithm declared curves of both roles); right, the final
    evaluation, one point per job."""
    proxy, quality = comparison.role("proxy"), comparison.role("quality")
    if proxy is None or quality is None:
        return None
    proxy_key, quality_key = proxy.key, quality.key
    groups = [g for g in comparison.groups if g.summary(proxy_key) is not None]
    if not groups:
        return None
    plt = _pyplot()
    colours = _colours(comparison.groups)
    traced = [(g, _role_curve(g, "proxy"), _role_curve(g, "quality")) for g in groups]
    traced = [(g, p, q) for g, p, q in traced if p and q]
    figure, axes = plt.subplots(1, 2 if traced else 1, figsize=(11 if traced else 5.5, 4), squeeze=False)
    if traced:
        axis = axes[0][0]
        for group, proxy_curve, quality_curve in traced:
            colour = colours[group.algorithm]
            steps, mean, _, _ = _mean_curve(proxy_curve)
            axis.plot(steps, mean, color=colour, linestyle="--", label=f"{group.label} {proxy.label}")
            steps, mean, _, _ = _mean_curve(quality_curve)
            axis.plot(steps, mean, color=colour, label=f"{group.label} {quality.label}")
        axis.set_xlabel("update")
        axis.set_title(f"Training: {proxy.label} (dashed) and {quality.label}", fontsize=10)
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    axis = axes[0][-1]
    for group in groups:
        both = [job.metrics for job in group.complete if proxy_key in job.metrics and quality_key in job.metrics]
        xs, ys = [m[proxy_key] for m in both], [m[quality_key] for m in both]
        axis.scatter(xs, ys, color=colours[group.algorithm], label=group.label)
    axis.set_xlabel(proxy.label)
    axis.set_ylabel(quality.label)
    axis.set_title(f"Evaluation: {proxy.label} vs {quality.label}, one point per job", fontsize=10)
    axis.legend(fontsize=7)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure)


def metric_curves(comparison: Comparison) -> bytes | None:
    """One panel per metric curve a suite declared (harness.report.curves: pass@k over k), one line per group: its
    mean at each x, and its band, the 95% interval over seeds or, for one seed, the job's own interval."""
    from harness.report.curves import drawn, number, points

    shown = drawn(comparison)
    if not shown:
        return None
    plt = _pyplot()
    palette = plt.get_cmap("tab10" if len(comparison.groups) <= 10 else "tab20")
    figure, axes = plt.subplots(1, len(shown), figsize=(4.6 * len(shown), 3.8), squeeze=False)
    for axis, (curve, xs) in zip(axes[0], shown, strict=True):
        for index, group in enumerate(comparison.groups):
            found = points(curve, group, xs)
            if not found:
                continue
            colour = palette(index % palette.N)
            x = np.array([p.x for p in found])
            axis.plot(x, [p.mean for p in found], color=colour, marker="o", markersize=3, label=group.label)
            low, high = np.array([p.low for p in found]), np.array([p.high for p in found])
            band = np.isfinite(low) & np.isfinite(high)
            if band.any():
                axis.fill_between(x, low, high, where=band, color=colour, alpha=0.15, lw=0)
        if curve.log_x:
            axis.set_xscale("log", base=2)
        axis.set_xticks(xs, [number(x) for x in xs], fontsize=8)
        axis.minorticks_off()
        if curve.bounds is not None and None not in curve.bounds:
            low_bound, high_bound = curve.bounds
            margin = 0.03 * (high_bound - low_bound)
            axis.set_ylim(low_bound - margin, high_bound + margin)
        axis.set_xlabel(curve.x_label + (" (log scale)" if curve.log_x else ""), fontsize=9)
        axis.set_title(curve.label, fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    return _png(figure)


def cost_bars(comparison: Comparison) -> bytes | None:
    """Mean wall seconds per group, split by stage (as built; shared stages count for every job)."""
    stage_names: list[str] = []
    for group in comparison.groups:
        for job in group.complete:
            for name in job.result.stages:
                if name not in stage_names:
                    stage_names.append(name)
    stage_names.append("eval")
    groups = [g for g in comparison.groups if g.complete]
    if not groups:
        return None
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(8, 0.45 * len(groups) + 1.5))
    left = np.zeros(len(groups))
    palette = plt.get_cmap("tab20")
    for index, name in enumerate(stage_names):
        seconds = np.array([_mean_wall(g, name) for g in groups])
        if not seconds.any():
            continue
        axis.barh(range(len(groups)), seconds, left=left, color=palette(index % 20), label=name)
        left += seconds
    axis.set_yticks(range(len(groups)), [g.label for g in groups], fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel("wall seconds (mean per job)")
    axis.set_title("Cost by stage", fontsize=10)
    axis.legend(fontsize=7, ncols=min(6, len(stage_names)), loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return _png(figure)


def _mean_wall(group: Group, stage: str) -> float:
    values = [
        float(job.result.cost.wall_s.get(stage, 0.0)) if stage == "eval" or stage in job.result.stages else 0.0
        for job in group.complete
    ]
    return float(np.mean(values)) if values else 0.0


FIGURES: dict[str, Callable[[Comparison], bytes | None]] = {
    "frontier": frontier,
    "metrics": metric_bars,
    "proxy_vs_quality": proxy_vs_quality,
    "training_curves": training_curves,
    "shared_training_curves": shared_training_curves,
    "metric_curves": metric_curves,
    "cost": cost_bars,
}
TITLES = {
    "frontier": "Reward vs KL frontier (quality vs divergence)",
    "metrics": "Quality metrics with 95% intervals",
    "proxy_vs_quality": "Proxy reward vs the quality metric (RL on a learned reward)",
    "training_curves": "Training curves",
    "shared_training_curves": "Training curves several methods share: a line per method, mean over seeds",
    "metric_curves": "Metric curves the suites declare (pass@k over k): mean over seeds, band 95% over seeds, or over "
    "problems for one seed",
    "cost": "Cost by stage",
    "overoptimisation": "Over-optimisation fits (Gao et al. 2022): gold gained against sqrt(KL)",
}


def render_all(comparison: Comparison) -> dict[str, bytes]:
    return {name: png for name, make in FIGURES.items() if (png := make(comparison)) is not None}
