"""Build a W&B Report comparing the algorithms of one sweep, and publish it.

Each job of a sweep is a W&B run whose `group` is the sweep's group and whose `job_type` is the algorithm, so the
report filters the project's runs to that group and groups them by job type: bars show the mean over seeds with a
standard-deviation error bar, and training curves show the mean with a standard-deviation band.

`wandb-workspaces` is an optional dependency, so it is imported only when a report is asked for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError

if TYPE_CHECKING:
    from wandb_workspaces.reports.v2 import Report

    from harness.report.tables import Comparison

MISSING_PACKAGE = "harness-report --wandb-report needs the wandb-workspaces package: pip install wandb-workspaces"

STEP_KEY = "train/step"  # training history is logged against this key, not W&B's own `_step`
TRAIN_PREFIX = "train/"  # a training-log key `k` is the W&B history key `train/k`

# W&B's name for the run attribute that holds `job_type` (the algorithm); as a run attribute it needs no config prefix.
GROUP_BY = "JobType"
AGGREGATE = "mean"  # the centre of a group: the mean over seeds
SPREAD = "stddev"  # the error bar / band: one standard deviation over seeds

GRID_COLUMNS = 24  # a W&B panel grid is 24 units wide
PANEL_WIDTH, PANEL_HEIGHT = 8, 6  # three panels per row
MAX_TITLE = 128  # Report.title's limit in wandb-workspaces


def _reports() -> ModuleType:
    """`wandb_workspaces.reports.v2`, or a HarnessError saying how to install it."""
    try:
        import wandb_workspaces.reports.v2 as wr
    except ModuleNotFoundError as exc:
        # Only a missing wandb_workspaces is the user's to fix; any other missing module is a real bug.
        if exc.name is None or not exc.name.startswith("wandb_workspaces"):
            raise
        raise HarnessError(MISSING_PACKAGE) from exc
    return wr


def _group_filter(group: str) -> Any:
    """The runset filter `Group == group`, as the library's filter expression."""
    try:
        from wandb_workspaces import expr
    except ModuleNotFoundError as exc:
        raise HarnessError(MISSING_PACKAGE) from exc
    if not group:
        raise HarnessError("W&B report: the group name is empty; pass the sweep's W&B group")
    # The library renders the filter as a string with the value in single quotes and parses it back, unescaped.
    if "'" in group or "\\" in group:
        raise HarnessError(f"W&B report: group {group!r} contains a quote or backslash, which W&B filters cannot hold")
    # And(...) rather than a one-item list: the library deprecates plain lists of filter expressions.
    return expr.And(expr.Metric("Group") == group)


def _place(rows: list[list[Any]], wr: ModuleType) -> list[Any]:
    """Lay panels out three to a row; each inner list starts on a new row so sections do not interleave."""
    placed: list[Any] = []
    y = 0
    per_row = GRID_COLUMNS // PANEL_WIDTH
    for section in rows:
        for index, panel in enumerate(section):
            row, column = divmod(index, per_row)
            panel.layout = wr.Layout(x=column * PANEL_WIDTH, y=y + row * PANEL_HEIGHT, w=PANEL_WIDTH, h=PANEL_HEIGHT)
            placed.append(panel)
        y += -(-len(section) // per_row) * PANEL_HEIGHT  # ceil: rows this section used
    return placed


def comparison_panels(comparison: Comparison) -> dict[str, Any]:
    """What the W&B report plots, from what the sweep's suites and algorithms declared (as report.html does):
    the quality metric against the divergence, a bar per headline metric but a proxy's, the declared training
    curves and the loss."""
    from harness.report.plots import FALLBACK_CURVE

    quality, divergence = comparison.role("quality"), comparison.role("divergence")
    curves = [*(curve.key for curve in comparison.curves), FALLBACK_CURVE.key]
    return {
        "reward_key": quality.key if quality else None,
        "kl_key": divergence.key if divergence else None,
        "bar_metrics": [m.key for m in comparison.headline if m.key in comparison.metrics and m.role != "proxy"],
        "curve_metrics": [TRAIN_PREFIX + key for key in dict.fromkeys(curves)],
    }


def metric_titles(comparison: Comparison) -> dict[str, str]:
    """The headline metrics' labels by key, as the comparison table shows them (judges named)."""
    return {metric.key: metric.label for metric in comparison.headline}


def build_report(
    *,
    entity: str,
    project: str,
    group: str,
    title: str,
    algorithms: list[str],
    reward_key: str | None = None,
    kl_key: str | None = None,
    bar_metrics: Sequence[str] = (),
    curve_metrics: Sequence[str] = (),
    titles: Mapping[str, str] | None = None,
) -> Report:
    """A Report (not saved) comparing the algorithms of W&B group `group` in `entity/project`.

    It holds a heading, a short intro, and one panel grid over the group's runs grouped by job type (algorithm):
    a scatter of `reward_key` against `kl_key` (when both are given), one bar plot per bar metric (mean ± std
    over seeds), and one line plot per curve metric against `train/step` (mean with a std band).
    `comparison_panels` gives these from a sweep's comparison; `titles` names a bar by its metric's label (which
    says who judged a win rate, `metric_titles`) instead of its key.
    """
    wr = _reports()
    if len(title) > MAX_TITLE:
        raise HarnessError(f"W&B report: title is {len(title)} characters; W&B allows at most {MAX_TITLE}")

    runset = wr.Runset(
        entity=entity,
        project=project,
        name=f"group {group}",
        filters=_group_filter(group),
        groupby=[GROUP_BY],
    )
    # Summary values are per run: the scatter shows each run (seed) so the spread within an algorithm stays visible.
    with_scatter = reward_key is not None and kl_key is not None
    scatters = [wr.ScatterPlot(title=f"{reward_key} vs {kl_key}", x=kl_key, y=reward_key)] if with_scatter else []
    # The panel-level grouping is what makes W&B aggregate within the chart and draw the error bars.
    bars = [
        wr.BarPlot(
            title=(titles or {}).get(metric, metric),
            metrics=[metric],
            orientation="v",
            groupby=GROUP_BY,
            groupby_aggfunc=AGGREGATE,
            groupby_rangefunc=SPREAD,
        )
        for metric in bar_metrics
    ]
    curves = [
        wr.LinePlot(
            title=metric,
            x=STEP_KEY,
            y=[metric],
            title_x=STEP_KEY,
            groupby=GROUP_BY,
            groupby_aggfunc=AGGREGATE,
            groupby_rangefunc=SPREAD,
        )
        for metric in curve_metrics
    ]

    names = ", ".join(f"`{name}`" for name in algorithms) or "(none listed)"
    scatter_text = f"The scatter shows each run's `{reward_key}` against `{kl_key}`. " if with_scatter else ""
    intro = (
        f"Runs of W&B group `{group}` in `{entity}/{project}`, grouped by job type (the algorithm): {names}.\n\n"
        f"{scatter_text}Bars show the mean over seeds with "
        f"a ±1 standard deviation error bar; training curves show the mean over seeds against `{STEP_KEY}` "
        "with a ±1 standard deviation band."
    )
    return wr.Report(
        entity=entity,
        project=project,
        title=title,
        description=f"Alignment algorithms compared on W&B group {group}",
        blocks=[
            wr.H1(text=f"Sweep {group}"),
            wr.MarkdownBlock(text=intro),
            wr.PanelGrid(runsets=[runset], panels=_place([[*scatters, *bars], curves], wr)),
        ],
    )


def _one_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def publish_report(report: Report) -> str:
    """Save `report` to W&B (needs to be online and logged in) and return its URL."""
    _reports()
    try:
        report.save()
        return report.url
    except Exception as exc:
        # Saving fails in many shapes (requests/GraphQL errors, wandb CommError, a bare Exception when not
        # logged in, ValueError for an unknown project); all are environment problems the user states in one line.
        where = f"{report.entity}/{report.project}"
        raise HarnessError(f"W&B report: could not save to {where}: {_one_line(exc)}") from exc
