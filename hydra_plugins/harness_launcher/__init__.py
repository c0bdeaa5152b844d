"""The harness's launchers: Hydra's basic (one job at a time, in this process) and joblib (several at once)
launchers, each showing one view of the sweep instead of its jobs' interleaved consoles.

    hydra/launcher=live_basic     what `harness -m` uses (conf/config.yaml)
    hydra/launcher=parallel       live_joblib, two jobs at a time (conf/hydra/launcher/parallel.yaml)
    hydra.launcher.view=plain     plain lines even in a terminal; `off`: the jobs' own consoles, as Hydra prints them

While a launch runs, each job's console goes to `console.log` in its folder (harness.progress), what the launching
process itself prints (Hydra's list of the jobs and their overrides) to `launcher.log` in the sweep folder, and a
thread here reads the jobs' progress files and writes the view (view.py) to the terminal: redrawn in place in a
terminal, one plain line per event elsewhere. The launcher sees every job of every launch (Optuna launches several
batches), so the counts and the estimate cover the whole sweep so far.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_launcher import BasicLauncher
from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from omegaconf import DictConfig

from harness.progress import LIVE_FOLDER, VIEW_ENV, flush_console, redirect_console
from hydra_plugins.harness_launcher.view import Monitor, SweepView

VIEWS = ("auto", "plain", "off")
LAUNCHER_LOG = "launcher.log"  # what the launching process printed while its jobs ran


def view_mode(setting: str, fd: int = 1) -> str:
    """`live` (a terminal on `fd`), `plain` or `off`, for `hydra.launcher.view`."""
    if setting not in VIEWS:
        raise ValueError(f"hydra.launcher.view={setting!r}: expected one of {', '.join(VIEWS)}")
    if setting != "auto":
        return setting
    terminal = os.isatty(fd) and os.environ.get("TERM", "") not in ("", "dumb")
    return "live" if terminal else "plain"


class SweepViewer:
    """The view of one launcher's sweep, across its launches."""

    def __init__(self, setting: str) -> None:
        view_mode(setting)  # a wrong value fails when the launcher is built, before any job
        self.setting = setting
        self.view: SweepView | None = None

    @contextmanager
    def launching(
        self, config: DictConfig | None, job_overrides: Sequence[Sequence[str]], first: int, slots: int
    ) -> Iterator[None]:
        mode = view_mode(self.setting)
        nums = range(first, first + len(job_overrides))
        if mode != "off" and config is not None:
            flush_console()
            try:
                out_fd, err_fd = os.dup(1), os.dup(2)  # the terminal, whatever 1 and 2 point at meanwhile
            except OSError:  # no stdout or stderr to show anything on (closed)
                mode = "off"
        if mode == "off" or config is None:
            yield
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        folder = sweep_dir / LIVE_FOLDER
        folder.mkdir(parents=True, exist_ok=True)
        for num in nums:  # an earlier run into this folder left its reports
            (folder / f"{num}.json").unlink(missing_ok=True)
        if self.view is None:
            self.view = SweepView(sweep_dir, slots)
        self.view.add(nums, varying(job_overrides))
        monitor = Monitor(self.view, folder, mode == "live", out_fd, err_fd, added=len(nums))
        before = os.environ.get(VIEW_ENV)
        os.environ[VIEW_ENV] = str(folder)  # the jobs' cue (joblib's workers start now and inherit it)
        try:
            with redirect_console(sweep_dir / LAUNCHER_LOG):
                monitor.start()
                try:
                    yield
                finally:
                    monitor.stop()
        finally:
            if before is None:
                os.environ.pop(VIEW_ENV, None)
            else:
                os.environ[VIEW_ENV] = before
            os.close(out_fd)
            os.close(err_fd)
            shutil.rmtree(folder, ignore_errors=True)
            redact_log(sweep_dir / LAUNCHER_LOG, [o for overrides in job_overrides for o in overrides])


def redact_log(path: Path, overrides: Sequence[str]) -> None:
    """Hydra's list of the jobs quotes their overrides: a credential given on the command line (`+model.token=...`)
    must not stay in launcher.log, as it does not in the .hydra records (harness.callbacks.RedactCallback)."""
    from harness.io import atomic_write_text
    from harness.results import redact_overrides

    replacements = {o: r for o, r in zip(overrides, redact_overrides(overrides), strict=True) if o != r}
    if not replacements or not path.is_file():
        return
    text = original = path.read_text(errors="replace")
    for secret, redacted in replacements.items():
        text = text.replace(secret, redacted)
    if text != original:
        atomic_write_text(path, text)


def varying(job_overrides: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each job's overrides that differ between the jobs of a launch (what tells them apart), in its own order."""
    values: dict[str, set[str | None]] = {}
    parsed = [dict(override.split("=", 1) for override in overrides if "=" in override) for overrides in job_overrides]
    for key in {key for job in parsed for key in job}:
        values[key] = {job.get(key) for job in parsed}
    from harness.results import redact_overrides

    kept = [[f"{key}={value}" for key, value in job.items() if len(values[key]) > 1] for job in parsed]
    return [redact_overrides(overrides) for overrides in kept]  # they are printed: no credential in them


class LiveBasicLauncher(BasicLauncher):
    """Hydra's basic launcher (the jobs one after another, in this process), with the sweep's view."""

    def __init__(self, view: str = "auto") -> None:
        super().__init__()
        self.viewer = SweepViewer(view)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        with self.viewer.launching(self.config, job_overrides, initial_job_idx, slots=1):
            return super().launch(job_overrides, initial_job_idx)


class LiveJoblibLauncher(JoblibLauncher):
    """Hydra's joblib launcher (`n_jobs` jobs at once, each in a worker process), with the sweep's view."""

    def __init__(self, view: str = "auto", **joblib: Any) -> None:
        super().__init__(**joblib)
        self.viewer = SweepViewer(view)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import effective_n_jobs

        slots = effective_n_jobs(self.joblib.get("n_jobs", -1))
        with self.viewer.launching(self.config, job_overrides, initial_job_idx, slots=slots):
            return super().launch(job_overrides, initial_job_idx)


@dataclass
class LiveBasicLauncherConf:
    _target_: str = "hydra_plugins.harness_launcher.LiveBasicLauncher"
    view: str = "auto"  # auto: live in a terminal, plain lines elsewhere; plain; off: the jobs' own consoles


@dataclass
class LiveJoblibLauncherConf(JobLibLauncherConf):
    _target_: str = "hydra_plugins.harness_launcher.LiveJoblibLauncher"
    view: str = "auto"  # auto: live in a terminal, plain lines elsewhere; plain; off: the jobs' own consoles


ConfigStore.instance().store(
    group="hydra/launcher", name="live_basic", node=LiveBasicLauncherConf, provider="alignment-harness"
)
ConfigStore.instance().store(
    group="hydra/launcher", name="live_joblib", node=LiveJoblibLauncherConf, provider="alignment-harness"
)
