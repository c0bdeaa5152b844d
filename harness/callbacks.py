"""Hydra callbacks: when a multirun ends, build the comparison from the jobs' folders; when a job starts, take
credentials out of the config records Hydra has just written.

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
    """Writes comparison.csv / comparison.md / report.html into the sweep directory, prints the headline table and
    where those are, and logs the comparison as one more W&B run in the sweep's group when the logger is W&B."""

    def __init__(
        self,
        baseline: str | None = None,
        enabled: bool = True,
        kl_budgets: Any = None,
        fits: Any = None,
        verbose: bool = False,
    ) -> None:
        """Settings (conf/config.yaml `hydra.callbacks.report`): `baseline`, the group others are paired with;
        `kl_budgets`, the KLs of the "At equal KL" table (null: the report's defaults); `fits`, algorithm ->
        over-optimisation form for Gao et al.'s fits (experiment=gao). The report reads them back from the sweep's
        record, so `harness-report DIR` rebuilds the same files. `verbose` (or HARNESS_VERBOSE=1): print all of
        comparison.md at the end, not only the headline table, who leads at equal KL and where the files are."""
        self.baseline = baseline
        self.enabled = enabled
        self.kl_budgets = kl_budgets
        self.fits = fits
        self.verbose = verbose

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled:
            return
        if config.get("tune") is not None and config.tune.phase == "tune":  # a worker that only tunes
            return
        from harness.errors import HarnessError
        from harness.report import build_report, terminal_text, wants_verbose
        from harness.report.publish import log_comparison

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            report = build_report(sweep_dir, baseline=self.baseline, kl_budgets=self.kl_budgets)
            log_comparison(report, config.get("logger"))
        except HarnessError as error:
            print(f"error: report: {error}", file=sys.stderr)
            LAST_SWEEP["problems"] = 1
            return
        LAST_SWEEP["problems"] = problems = report.failed_or_missing
        print("\n" + terminal_text(report, wants_verbose(self.verbose), VERBOSE_HINT))
        if problems:
            print(f"warning: {problems} job(s) failed or are missing; see the report", file=sys.stderr)


# what prints all of comparison.md once the sweep has ended (before the next: the `verbose` setting, HARNESS_VERBOSE=1)
VERBOSE_HINT = "`harness-report --verbose` on this folder prints it all"
LAST_SWEEP: dict[str, int] = {}  # failed or missing jobs of the last sweep: `harness` exits 1 when any


class RedactCallback(Callback):
    """Takes credentials back out of the config records Hydra writes before a job starts (`.hydra/config.yaml`,
    `hydra.yaml`, `overrides.yaml`, and the sweep's `multirun.yaml`): a token given on the command line
    (`+model.token=...`, `hydra.job.env_set.WANDB_API_KEY=...`) must not stay on disk in the results folder."""

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.types import RunMode

        from harness.results import redact_saved_config

        hydra_cfg = config.hydra
        overrides = [*hydra_cfg.overrides.hydra, *hydra_cfg.overrides.task]  # `+hydra.job.env_set.X=...` too
        paths = []
        if hydra_cfg.output_subdir is not None:
            folder = Path(hydra_cfg.runtime.output_dir) / hydra_cfg.output_subdir
            paths += [folder / name for name in ("config.yaml", "hydra.yaml", "overrides.yaml")]
        if hydra_cfg.mode == RunMode.MULTIRUN:
            paths.append(Path(hydra_cfg.sweep.dir) / "multirun.yaml")  # the sweeper wrote it before any job
        for path in paths:
            redact_saved_config(path, overrides)
