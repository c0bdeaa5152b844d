"""Where a job of a sweep is, for the sweep's live view (the launchers in hydra_plugins/harness_launcher).

The harness's launchers run a sweep's jobs with `HARNESS_SWEEP_VIEW=<sweep_dir>/.live` in their environment. A job
that sees it (harness.app) sends its whole console, C-level and subprocess output included, to `console.log` in its
own folder, and reports here what it is doing in `<sweep_dir>/.live/<job_num>.json`; the launching process reads
those files and draws one view of the sweep. Outside such a sweep (a single run, another launcher) every call here
is a no-op, so the core calls them freely and a plugin never needs to:

    with progress.stage("dpo"):             # a stage being built (harness.stages), or the job's evaluation
        progress.steps("train", total=120)  # a counted activity within it (the trainer callback, our PPO loop)
        progress.step(40)                   # written at most a few times a second

Only the standard library (and harness.io, which needs no more) at import: the launcher imports this module in
every `harness` process (Hydra scans its plugins).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any

from harness.io import atomic_write_text

VIEW_ENV = "HARNESS_SWEEP_VIEW"  # set by the launcher, for its jobs: the folder of their progress files
LIVE_FOLDER = ".live"  # <sweep_dir>/.live/<job_num>.json
CONSOLE_FILE = "console.log"  # a job's console output in a sweep with a view, beside Hydra's app.log
MIN_INTERVAL = 0.25  # seconds between two step updates written to a progress file


class Report:
    """The progress file of one job: what it is doing (a stack of stages), the stages it built, how it ended."""

    def __init__(self, path: Path, num: int, name: str, console: Path) -> None:
        self.path = path
        now = time.time()
        self.state: dict[str, Any] = {
            "num": num,
            "name": name,
            "pid": os.getpid(),
            "console": str(console),
            "started": now,
            "status": "running",
            "stages": [],  # every stage the job started, in order (the plain view prints each once)
            "error": None,
            "headline": None,
            "finished": None,
        }
        self.frames: list[dict[str, Any]] = [_frame("", "starting")]
        self.written = 0.0

    def write(self, force: bool = True) -> None:
        now = time.time()
        if not force and now - self.written < MIN_INTERVAL:  # the next step or stage writes the latest count
            return
        state = {**self.state, **self.frames[-1], "updated": now}
        try:  # atomic: the launcher reads either the old report or the new one
            atomic_write_text(self.path, json.dumps(state), durable=False)
        except OSError:  # the view is a convenience: a job never fails because of it
            return
        self.written = now


def _frame(stage: str, activity: str = "") -> dict[str, Any]:
    return {"stage": stage, "activity": activity, "done": None, "total": None, "unit": "", "since": time.time(),
            "start_done": 0}  # fmt: skip


_report: Report | None = None  # this process's job, while it runs in a sweep with a view


@contextmanager
def stage(name: str) -> Iterator[None]:
    """A stage of the job (built now, not loaded from the cache), or its evaluation."""
    if _report is None:
        yield
        return
    report = _report
    report.frames[0]["activity"] = ""  # no longer starting: between stages the job loads cached ones
    report.frames.append(_frame(name))
    report.state["stages"].append(name)
    report.write()
    try:
        yield
    finally:
        if len(report.frames) > 1:
            report.frames.pop()
        report.write()


def activity(text: str) -> None:
    """What the current stage is doing now, uncounted ("sampling", an eval suite's name)."""
    if _report is not None:
        _report.frames[-1].update(activity=text, done=None, total=None, unit="", since=time.time(), start_done=0)
        _report.write()


def steps(label: str, total: int | None, done: int = 0, unit: str = "steps") -> None:
    """A counted activity of the current stage: `label done/total unit` (total None: not known)."""
    if _report is not None:
        total = total if total and total > 0 else None
        _report.frames[-1].update(activity=label, done=done, total=total, unit=unit, since=time.time(),
                                  start_done=done)  # fmt: skip
        _report.write()


def step(done: int, total: int | None = None) -> None:
    """The count of the current activity (absolute: trainers know their global step)."""
    if _report is None:
        return
    frame = _report.frames[-1]
    if frame["done"] is None:  # counted without a `steps()` first (a loop that only logs its steps)
        frame.update(activity=frame["activity"] or "train", unit="steps", since=time.time(), start_done=done)
    frame["done"] = done
    if total:
        frame["total"] = total
    _report.write(force=False)


def failed(reason: str) -> None:
    """The job failed: its one-line reason, as the view shows it."""
    if _report is not None:
        _report.state.update(status="failed", error=reason.strip().splitlines()[0] if reason.strip() else "failed")


@contextmanager
def waiting_for(name: str, lock: Any, while_waiting: AbstractContextManager[Any] | None = None) -> Iterator[None]:
    """Hold `lock` (a filelock.FileLock) for a stage; while another job holds it, the view says so and
    `while_waiting` is entered (harness.cores lends the job's cores to that build)."""
    from filelock import Timeout

    try:
        lock.acquire(timeout=0)
    except Timeout:
        report = _report
        with while_waiting or nullcontext():
            if report is None:
                lock.acquire()
            else:
                frame = report.frames[-1]
                before = dict(frame)
                frame.update(
                    activity=f"waiting for stage {name} (another job builds it)", done=None, total=None, unit=""
                )
                report.write()
                try:
                    lock.acquire()
                finally:
                    frame.update(before)
                    report.write()
    try:
        yield
    finally:
        lock.release()


# -- the job's side of a sweep with a view -----------------------------------------------------------------------
def view_folder(sweep_dir: Path | str) -> Path | None:
    """The sweep's progress folder when this process is a job of a sweep with a view (else None)."""
    wanted = os.environ.get(VIEW_ENV)
    if not wanted:
        return None
    folder = Path(sweep_dir).absolute() / LIVE_FOLDER
    # the variable is inherited: it counts only for the sweep it was set for, and only where the launcher made it
    if Path(wanted).absolute() != folder or not folder.is_dir():
        return None
    return folder


@contextmanager
def sweep_job(output_dir: Path, sweep_dir: Path | str, num: int) -> Iterator[None]:
    """Run one job of a sweep: in a sweep with a view, its console goes to `output_dir/console.log` and its progress
    to the sweep's progress folder; how it ended (result.json, or the reason given to `failed`) is reported last.
    Anywhere else it changes nothing."""
    global _report
    folder = view_folder(sweep_dir)
    if folder is None:
        yield
        return
    console = output_dir / CONSOLE_FILE
    report = Report(folder / f"{num}.json", num, output_dir.name, console)
    main_process = os.environ.get("RANK", "0") == "0"  # several processes, one job: the main one reports
    if main_process:
        _report = report
        report.write()
    try:
        with redirect_console(console):
            yield
    except BaseException as error:
        if report.state["status"] != "failed":
            report.state.update(status="failed", error=f"{type(error).__name__}: {error}".strip().splitlines()[0])
        raise
    finally:
        if main_process:
            _report = None
            finish(report, output_dir)


def finish(report: Report, output_dir: Path) -> None:
    """The job's last report: complete with its headline metric, or failed with its one-line reason."""
    from harness.results import Result

    result: Result | None = None
    with suppress(OSError, ValueError):
        result = Result.read(output_dir)
    if report.state["status"] != "failed":
        if result is not None and result.status == "complete":
            report.state.update(status="complete", headline=headline(result))
        else:
            reason = (result.error if result is not None else None) or (
                f"no complete result.json (see {report.state['console']})"
            )
            report.state.update(status="failed", error=str(reason).splitlines()[0])
    report.state["finished"] = time.time()
    report.frames = report.frames[:1]
    report.frames[0].update(stage="", activity=report.state["status"])
    report.write()


def headline(result: Any) -> str | None:
    """`gold reward 0.812`: the quality metric the job's suites declared (else their first headline metric)."""
    metrics = result.metrics or {}
    entries = [entry for entry in result.headline or [] if entry.get("key") in metrics]
    if not entries:
        return None
    entries.sort(key=lambda entry: (entry.get("role") != "quality", entry.get("order") or 0))
    chosen = entries[0]
    value = metrics[chosen["key"]]
    if not isinstance(value, int | float):
        return None
    return f"{chosen.get('label') or chosen['key']} {value:.{int(chosen.get('digits') or 3)}f}"


# -- console redirection --------------------------------------------------------------------------------------------
def flush_console() -> None:
    """Python's and C's buffered output, out before the file descriptors under them change."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    with suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


@contextmanager
def redirect_console(path: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at `path` (appended to) and back: Python's prints, logging handlers, C
    libraries and child processes all write there. Restored afterwards, for a launcher that runs jobs in its own
    process."""
    flush_console()
    path.parent.mkdir(parents=True, exist_ok=True)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = (os.dup(1), os.dup(2))
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        flush_console()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)
