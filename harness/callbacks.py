"""Hydra callback: when a multirun ends, build the comparison from the jobs' folders.

Hydra hands `on_multirun_end` no job results (and with joblib or SLURM launchers the jobs ran elsewhere), so the
report reads what the jobs wrote: `result.json` in each folder of the sweep directory.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("harness")


class ReportCallback(Callback):
    """Writes comparison.csv / comparison.md / report.html into the sweep directory, prints the table, and
    logs the comparison as one more W&B run in the sweep's group when the logger is W&B."""

    def __init__(self, baseline: str = "sft", enabled: bool = True) -> None:
        self.baseline = baseline
        self.enabled = enabled

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        from harness.errors import HarnessError
        from harness.report import build_report
        from harness.report.publish import log_comparison

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build_report(sweep_dir, baseline=self.baseline)
            log_comparison(report, config.get("logger"))
        except HarnessError as error:
            print(f"error: report: {error}", file=sys.stderr)
            LAST_SWEEP["problems"] = 1
            return
        LAST_SWEEP["problems"] = problems = report.failed_or_missing
        print("\n" + report.markdown)
        print(f"report: {report.html.resolve()}")
        if problems:
            print(f"warning: {problems} job(s) failed or are missing; see the report", file=sys.stderr)


LAST_SWEEP: dict[str, int] = {}  # failed or missing jobs of the last sweep: `harness` exits 1 when any
