"""Cores a stage's build may use: its own, and those of the jobs waiting for it.

A sweep's jobs that need a stage another job is building wait on its lock (harness.stages) with their cores idle.
While one waits it lends them: a file `<stage>/<key>.waiting-<host>-<pid>` beside the lock holds how many. A build
that can use more cores without changing what it computes (work split into fixed parts whose results are added in a
fixed order, such as the testbed's pretraining micro-batches) asks `build_cores()` at its step boundaries and runs
that many parts at once. More torch threads would not do: they change the floating-point sums (1 and 2 threads
give different weights after a few steps) and speed the testbed's 0.8M-parameter model up by ~5%.

The cache records what a build held, `core_seconds` in its stage.json (the cores it asked for, over time; its own
for its whole build when it never asks), so `make bench` can tell idle cores from used ones.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

WAITING = ".waiting-"  # `<key>.waiting-<host>-<pid>`: a job blocked on the stage's build lock, and the cores it lends


def own_cores() -> int:
    """The cores this process computes on: its torch threads (a sweep's `cpu_threads`), 1 before torch is loaded."""
    torch = sys.modules.get("torch")
    return max(1, int(torch.get_num_threads())) if torch is not None else 1


def machine_cores() -> int:
    """The cores this process may run on (its affinity), the cap on what a build borrows."""
    with suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _host() -> str:
    return socket.gethostname().replace("-", "_")  # `-` separates the file name's parts


@contextmanager
def lending(stage_path: Path) -> Iterator[None]:
    """While the block runs (this job waits for the stage at `stage_path`), its cores are lent to the stage's build."""
    note = stage_path.with_name(f"{stage_path.name}{WAITING}{_host()}-{os.getpid()}")
    try:
        note.write_text(str(own_cores()))
    except OSError:  # a cache this process may only read: it waits without lending
        yield
        return
    try:
        yield
    finally:
        note.unlink(missing_ok=True)


def lent_to(stage_path: Path) -> int:
    """Cores lent to the stage's build now: by live processes on this host (a shared cache's other machines lend
    cores this one cannot use). A note whose process died (killed while waiting) is removed."""
    host, total = _host(), 0
    for note in stage_path.parent.glob(f"{stage_path.name}{WAITING}*"):
        note_host, _, pid = note.name[len(stage_path.name) + len(WAITING) :].rpartition("-")
        if note_host != host or not pid.isdigit():
            continue
        if not _alive(int(pid)):
            note.unlink(missing_ok=True)
            continue
        with suppress(OSError, ValueError):
            total += max(0, int(note.read_text() or 0))
    return total


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's process: alive
        return True
    return True


@dataclass
class Build:
    """A build in progress in this process: the cores it holds, and their seconds so far."""

    path: Path
    own: int
    cores: int
    since: float = field(default_factory=time.perf_counter)
    core_seconds: float = 0.0

    def hold(self, cores: int) -> None:
        now = time.perf_counter()
        self.core_seconds += (now - self.since) * self.cores
        self.cores, self.since = cores, now


_builds: list[Build] = []  # the builds this process is in, outermost first (a build may build its inputs)


@contextmanager
def building(stage_path: Path) -> Iterator[Build]:
    """The block builds the stage at `stage_path`: `build_cores()` within it counts the cores lent to it."""
    own = own_cores()
    build = Build(stage_path, own=own, cores=own)
    _builds.append(build)
    try:
        yield build
    finally:
        _builds.remove(build)
        build.hold(0)  # its core-seconds up to now
        for outer in _builds:  # a build it was part of holds its own again, until it asks
            outer.hold(outer.own)


def build_cores() -> int:
    """How many cores the build running in this process may use now: its own and those lent by the jobs waiting for
    it (or for a build it is part of), at most the machine's. Outside a build: this process's own. Cheap enough to
    ask every step (a directory listing)."""
    if not _builds:
        return own_cores()
    cores = min(machine_cores(), _builds[-1].own + sum(lent_to(build.path) for build in _builds))
    for build in _builds:
        build.hold(cores)
    return cores
