"""The comparison in W&B: one more run in the sweep's group (table + figures), and optionally a W&B Report."""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Callable
from typing import Any

from harness.declarations import build_plugin
from harness.report import Report
from harness.report.tables import judge_check

log = logging.getLogger("harness")


def sweep_identity(report: Report) -> dict[str, Any]:
    """The W&B group and logger config (`_target_` included) the sweep's jobs used, read from their result.json."""
    with_result = [job.result for job in report.sweep.jobs if job.result is not None]
    group = next((result.group for result in with_result if result.group), report.sweep.experiment)
    logger = next((result.config.get("logger") for result in with_result), None) or {}
    return {"group": group, "logger": logger}


def comparison_table(report: Report) -> tuple[list[str], list[list[Any]]]:
    """The CSV as columns and typed rows (numbers as floats), ready for a `wandb.Table`."""
    rows = list(csv.reader(io.StringIO(report.csv)))
    header, body = rows[0], rows[1:]
    return header, [[_typed(cell) for cell in row] for row in body]


def _typed(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell if cell else None


def log_comparison(report: Report, logger_config: Any, build_logger: Callable[[Any], Any] = build_plugin) -> None:
    """Log the comparison with the configured logger when it can (W&B: a `comparison` run in the group).
    `build_logger`: how the caller builds a plugin from its config (default: as a job builds its plugins)."""
    if logger_config is None:
        return
    logger = build_logger(logger_config)
    if not hasattr(logger, "log_comparison"):
        return
    header, rows = comparison_table(report)
    images = {name: path for name, path in report.files.items() if path.suffix == ".png"}
    summary = {
        f"{group.label}/{key}": s.mean
        for group in report.comparison.groups
        for key in (metric.key for metric in report.comparison.headline)
        if (s := group.summary(key)) is not None
    }
    for check in judge_check(report.comparison):  # does a held-out judge rank the methods as the quality metric does
        if math.isfinite(check.spearman):
            summary[f"judge_check/{check.metric.key}/spearman"] = check.spearman
    if (at_equal_kl := report.comparison.at_equal_kl) is not None:  # each method's reward at each KL budget
        for (method, budget), at in at_equal_kl.at.items():
            if at.summary is not None:
                summary[f"equal_kl/{method}/at_kl_{budget:g}"] = at.summary.mean
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {}
    for section in report.sections or ():  # the samples, one column per method; the human votes' ratings
        tables.update(section.tables)
        summary.update(section.summary)
    logger.log_comparison(
        group=sweep_identity(report)["group"],
        experiment=report.sweep.experiment,
        columns=header,
        rows=rows,
        images=images,
        summary=summary,
        markdown=report.markdown,
        tables=tables,
    )
