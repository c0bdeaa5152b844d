"""One view of a sweep, from its jobs' progress files (harness.progress): live in a terminal, plain lines elsewhere.

A terminal gets a few lines redrawn in place (ANSI cursor movement, never wider than the terminal):

    sweep 2026-11-30_03-00-42: 27 jobs, 2 at a time   elapsed 3:42   left ~12:10
    9 done, 2 running, 1 failed, 15 waiting
      9_best_of_n_seed0  eval  sampling              0:31
      18_ppo_seed0       ppo   train 40/120 updates  1:02
    last: 8_sft_seed2 done in 0:41, gold reward 0.655
    failed: 5_sft_seed2: stage sft: the disk is full (...)

Without one (CI, nohup, a pipe): one plain line per event, no escape codes, no carriage returns; a failed job's
line goes to stderr as `error: <reason> (...)`, as a single run's error does:

    sweep: 27 jobs, 2 at a time, in results/sweeps/gao/2026-11-30_03-00-42; each job's output goes to ...
    [0:12] 18_ppo_seed0: started (algorithm=ppo reward.trainer.max_steps=10 seed=0)
    [0:13] 18_ppo_seed0: stage ppo
    [1:05] 18_ppo_seed0: stage eval
    [1:09] 18_ppo_seed0: done in 0:57, gold reward 0.812
    error: stage sft: the disk is full (...) (job 5_sft_seed2 failed after 0:03; its output: .../console.log)
    [9:41] sweep 2026-11-30_03-00-42: 27 jobs ended in 9:41: 26 done, 1 failed
"""

from __future__ import annotations

import heapq
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UP = "\x1b[{}A"  # cursor up N lines
CLEAR_LINE = "\x1b[2K"
CLEAR_BELOW = "\x1b[J"
LAST_FAILED = 3  # failed jobs the live view lists (all of them are in the summary and the report)


def clock(seconds: float) -> str:
    """`0:42`, `12:05`, `1:02:03`."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def fit(line: str, width: int) -> str:
    """`line` cut to fit a terminal `width` columns wide: one column short, so the terminal never wraps it."""
    room = max(1, width - 1)
    if len(line) <= room:
        return line
    return line[: room - 3] + "..." if room > 3 else line[:room]


def estimate_left(
    finished: Sequence[float], running: Sequence[tuple[float, float | None]], waiting: int, slots: int
) -> float | None:
    """Seconds until every job has ended, or None while there is nothing to go on.

    `finished`: durations of the jobs that ended; `running`: (seconds so far, seconds its counted activity still
    needs or None) per running job; `waiting`: jobs not started; `slots`: jobs run at once. A job takes as long as
    the finished ones did on average (`typical`); a running job needs the rest of that, and at least what its own
    progress says (its training alone can outlast the average). Before any job has ended, a running job's own
    progress is the estimate, and the waiting jobs take as long as the running ones will in all. The waiting jobs
    then go, each for `typical` seconds, to whichever slot frees first.
    """
    typical = sum(finished) / len(finished) if finished else None
    left = []
    for elapsed, needs in running:
        guesses = [g for g in (None if typical is None else max(typical - elapsed, 0.0), needs) if g is not None]
        if not guesses:
            return None
        left.append(max(guesses))
    if waiting and typical is None:
        if not running:
            return None
        typical = sum(elapsed + rest for (elapsed, _), rest in zip(running, left, strict=True)) / len(running)
    free = sorted(left + [0.0] * max(0, slots - len(left)))
    heapq.heapify(free)
    for _ in range(waiting):
        heapq.heappush(free, heapq.heappop(free) + (typical or 0.0))
    return max(free, default=0.0)


@dataclass
class Job:
    """One job as its progress file last said (waiting: no file yet)."""

    num: int
    name: str = ""
    status: str = "waiting"  # waiting, running, complete, failed
    started: float | None = None
    finished: float | None = None
    stage: str = ""
    activity: str = ""
    done: int | None = None
    total: int | None = None
    unit: str = ""
    since: float = 0.0
    start_done: int = 0
    stages: list[str] = field(default_factory=list)
    error: str | None = None
    headline: str | None = None
    console: str = ""
    swept: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or f"job {self.num}"

    def doing(self) -> str:
        """`train 40/120 steps`, `sampling`, `waiting for stage sft (another job builds it)`."""
        if self.done is None:
            return self.activity
        count = f"{self.done}/{self.total}" if self.total else f"{self.done}"
        return " ".join(part for part in (self.activity, count, self.unit) if part)

    def needs(self, now: float) -> float | None:
        """Seconds the counted activity still needs at its pace so far (None: not counted, or not started)."""
        if not self.total or self.done is None or self.done <= self.start_done:
            return None
        return (now - self.since) * (self.total - self.done) / (self.done - self.start_done)


@dataclass
class Event:
    kind: str  # started, stage, complete, failed
    job: Job
    detail: str = ""


class SweepView:
    """Every job the launcher has launched, read back from the progress folder, as a live frame or plain lines."""

    def __init__(self, sweep_dir: Path, slots: int, started: float | None = None) -> None:
        self.sweep_dir = sweep_dir
        self.slots = max(1, slots)
        self.started = time.time() if started is None else started
        self.jobs: dict[int, Job] = {}

    def add(self, nums: Sequence[int], swept: Sequence[Sequence[str]] = ()) -> None:
        """Jobs launched (`swept`: each one's overrides that tell it from the others, for its plain start line)."""
        for index, num in enumerate(nums):
            self.jobs.setdefault(num, Job(num, swept=list(swept[index]) if index < len(swept) else []))

    def counts(self) -> dict[str, int]:
        counts = {"complete": 0, "running": 0, "failed": 0, "waiting": 0}
        for job in self.jobs.values():
            counts[job.status] += 1
        return counts

    # -- reading ------------------------------------------------------------------------------------------------
    def read(self, folder: Path) -> list[Event]:
        """Read every job's progress file; the events since the last read, in order."""
        events: list[Event] = []
        for num, job in sorted(self.jobs.items()):
            if job.status in ("complete", "failed"):
                continue
            try:
                state = json.loads((folder / f"{num}.json").read_text())
            except (OSError, ValueError):  # not started yet (written atomically: never half a file)
                continue
            events += self.update(job, state)
        return events

    def update(self, job: Job, state: dict[str, Any]) -> list[Event]:
        events = []
        if job.status == "waiting":
            events.append(Event("started", job))
        seen = len(job.stages)
        for key in ("name", "started", "finished", "stage", "activity", "unit", "since", "start_done", "stages",
                    "error", "headline", "console"):  # fmt: skip
            if state.get(key) is not None:
                setattr(job, key, state[key])
        job.done, job.total = state.get("done"), state.get("total")  # None: not counted
        job.status = state.get("status") if state.get("status") in ("running", "complete", "failed") else "running"
        events += [Event("stage", job, name) for name in job.stages[seen:]]
        if job.status in ("complete", "failed"):
            events.append(Event(job.status, job))
        return events

    def settle(self) -> list[Event]:
        """After the launch returned: a job still running never reported its end (its process was killed)."""
        events = []
        for job in self.jobs.values():
            if job.status == "running":
                job.status, job.finished = "failed", time.time()
                job.error = job.error or "its process ended without reporting (killed?)"
                events.append(Event("failed", job))
        return events

    # -- the estimate -------------------------------------------------------------------------------------------
    def left(self, now: float) -> float | None:
        finished = [
            job.finished - job.started
            for job in self.jobs.values()
            if job.status == "complete" and job.started is not None and job.finished is not None
        ]
        running = [
            (now - (job.started or now), job.needs(now)) for job in self.jobs.values() if job.status == "running"
        ]
        return estimate_left(finished, running, self.counts()["waiting"], self.slots)

    # -- the live frame -----------------------------------------------------------------------------------------
    def header(self, now: float) -> str:
        total = len(self.jobs)
        head = f"sweep {self.sweep_dir.name}: {total} job{'s' * (total != 1)}, {self.slots} at a time"
        head += f"   elapsed {clock(now - self.started)}"
        counts = self.counts()
        if counts["running"] or counts["waiting"]:
            left = self.left(now)
            head += "   left estimating" if left is None else f"   left ~{clock(left)}"
        return head

    def count_line(self) -> str:
        counts = self.counts()
        return (
            f"{counts['complete']} done, {counts['running']} running, {counts['failed']} failed, "
            f"{counts['waiting']} waiting"
        )

    def frame(self, now: float, width: int, height: int) -> list[str]:
        """The live view: at most `height - 1` lines, each cut to the terminal's `width`."""
        running = [job for job in self.jobs.values() if job.status == "running"]
        failed = sorted((j for j in self.jobs.values() if j.status == "failed"), key=lambda j: j.finished or 0)
        done = [job for job in self.jobs.values() if job.status == "complete"]
        tail = []
        if done:
            last = max(done, key=lambda job: job.finished or 0)
            tail.append(f"last: {self.finished_text(last)}")
        tail += [f"failed: {job.label}: {job.error}" for job in failed[-LAST_FAILED:]]
        room = max(0, height - 1 - 2 - len(tail))  # header and counts first; the tail if it fits
        shown = running if len(running) <= room else running[: max(0, room - 1)]
        widths = [max((len(text) for text in column), default=0) for column in
                  zip(*((job.label, job.stage, job.doing()) for job in shown), strict=False)]  # fmt: skip
        lines = [self.header(now), self.count_line()]
        for job in shown:
            texts = (job.label, job.stage, job.doing())
            columns = [f"{text:<{width}}" for text, width in zip(texts, widths, strict=True) if width]
            lines.append("  " + "  ".join([*columns, clock(now - (job.started or now))]))
        if len(shown) < len(running):
            lines.append(f"  ... and {len(running) - len(shown)} more running")
        lines += tail
        return [fit(line, width) for line in lines[: max(1, height - 1)]]

    def finished_text(self, job: Job) -> str:
        took = clock((job.finished or time.time()) - (job.started or self.started))
        if job.status == "failed":
            return f"{job.label} failed after {took}: {job.error}"
        return f"{job.label} done in {took}" + (f", {job.headline}" if job.headline else "")

    def summary(self, now: float) -> list[str]:
        """What stays on screen when the launch is over (the report's table follows it)."""
        counts = self.counts()
        total = len(self.jobs)
        failed = sorted((j for j in self.jobs.values() if j.status == "failed"), key=lambda j: j.finished or 0)
        return [
            f"sweep {self.sweep_dir.name}: {total} job{'s' * (total != 1)} ended in {clock(now - self.started)}: "
            f"{counts['complete']} done, {counts['failed']} failed",
            *(f"  failed: {self.finished_text(job)}" for job in failed),
            f"  each job's console: {self.sweep_dir}/<job>/console.log",
        ]

    # -- plain lines --------------------------------------------------------------------------------------------
    def opening(self, added: int, now: float) -> str:
        """The first launch's opening line, or a later launch's (an Optuna batch)."""
        total = len(self.jobs)
        if added == total:
            return (
                f"sweep: {total} job{'s' * (total != 1)}, {self.slots} at a time, in {self.sweep_dir}; "
                f"each job's output goes to console.log in its folder"
            )
        return f"[{clock(now - self.started)}] sweep: {added} more job{'s' * (added != 1)}, {total} in all"

    def plain(self, event: Event, now: float) -> tuple[str, str]:
        """(stream, line) of one event: `out` for progress, `err` for a failed job."""
        job, stamp = event.job, f"[{clock(now - self.started)}]"
        if event.kind == "started":
            return "out", f"{stamp} {job.label}: started" + (f" ({' '.join(job.swept)})" if job.swept else "")
        if event.kind == "stage":
            return "out", f"{stamp} {job.label}: stage {event.detail}"
        took = clock((job.finished or now) - (job.started or now))
        if event.kind == "complete":
            return "out", f"{stamp} {job.label}: done in {took}" + (f", {job.headline}" if job.headline else "")
        where = f"; its output: {job.console}" if job.console else ""
        return "err", f"error: {job.error} (job {job.label} failed after {took}{where})"

    def closing(self, now: float) -> str:
        return f"[{clock(now - self.started)}] {self.summary(now)[0]}"  # the failed jobs had their own lines


class Monitor:
    """Polls the progress folder in a thread of the launching process and writes the view to the terminal's own
    file descriptors (duplicated before the launcher pointed 1 and 2 elsewhere)."""

    POLL = 0.2  # seconds between reads of the progress folder
    REDRAW = 1.0  # the live view is redrawn at least this often (its clocks move)

    def __init__(self, view: SweepView, folder: Path, live: bool, out_fd: int, err_fd: int, added: int) -> None:
        self.view = view
        self.added = added  # jobs of this launch
        self.folder = folder
        self.live = live
        self.out_fd, self.err_fd = out_fd, err_fd
        self.drawn = 0  # lines of the frame on screen
        self.last_draw = 0.0
        self.broken = False  # the terminal went away: stop writing to it
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, name="sweep-view", daemon=True)

    def start(self) -> None:
        if not self.live:
            self.write(self.out_fd, self.view.opening(self.added, time.time()) + "\n")
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        now = time.time()
        events = self.view.read(self.folder) + self.view.settle()
        if self.live:
            width, _ = self.size()
            # drawn once, never redrawn: a failed job's reason may wrap rather than lose its end
            self.draw([line if line.startswith("  failed: ") else fit(line, width) for line in self.view.summary(now)])
        else:
            self.emit(events, now)
            self.write(self.out_fd, self.view.closing(now) + "\n")

    def run(self) -> None:
        while not self.stopping.wait(self.POLL):
            try:
                self.tick()
            except Exception as error:  # the view must never take the sweep down
                self.write(self.err_fd, f"warning: the sweep's view stopped: {type(error).__name__}: {error}\n")
                return

    def tick(self) -> None:
        now = time.time()
        events = self.view.read(self.folder)
        if not self.live:
            self.emit(events, now)
        elif events or now - self.last_draw >= self.REDRAW:
            width, height = self.size()
            self.draw(self.view.frame(now, width, height))

    def emit(self, events: list[Event], now: float) -> None:
        for event in events:
            stream, line = self.view.plain(event, now)
            self.write(self.err_fd if stream == "err" else self.out_fd, line + "\n")

    def size(self) -> tuple[int, int]:
        try:
            size = os.get_terminal_size(self.out_fd)
            return size.columns or 80, size.lines or 24
        except OSError:
            return 80, 24

    def draw(self, lines: list[str]) -> None:
        """Replace the frame on screen with `lines`: up to its first line, each line cleared and rewritten, and
        whatever the old frame had below the new one cleared."""
        text = ("\r" + UP.format(self.drawn) if self.drawn else "") + "".join(f"{CLEAR_LINE}{line}\n" for line in lines)
        self.write(self.out_fd, text + CLEAR_BELOW)
        self.drawn = len(lines)
        self.last_draw = time.time()

    def write(self, fd: int, text: str) -> None:
        if self.broken:
            return
        data = text.encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            self.broken = True
