"""`harness-cache`: what the stage cache holds, whether it is sound, and clearing out what nothing uses.

    harness-cache list                  every stage: kind, key, size, last use, how many sweeps use it and the latest,
                                        what it was built from
    harness-cache list --users          the same, and every sweep or run that uses each stage, one a line
    harness-cache verify                every complete stage's files against their recorded SHA-256; exit 1 if any fails
    harness-cache prune                 what prune would remove (a dry run): stages no result uses, and their total
    harness-cache prune --yes           remove them
    harness-cache prune --older-than 2026-01-01 [--yes]   stages last used before that day, used by a result or not
    harness-cache --results DIR list    another results folder (its cache is DIR/cache unless --cache says otherwise)

`list` and `verify` only read. A stage is used by a result when some `result.json` under the results folder names it
(its `stages.*.path`); a stage that one prune keeps also keeps the stages it was built from (`stage.json` `inputs`,
all the way down), since a result need not name every stage its job touched. Set-aside stages (`.corrupt-`) and
killed builds go whatever the results say. Prune is safe while jobs run and never waits: a stage a live process was
handed (harness.stages.hold) or is building is kept, and said so.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from harness.errors import HarnessError
from harness.results import Result
from harness.stages import MARKER, META, USE, check_files, human

PRUNING = ".pruning-"  # `<key>.pruning-<pid>`: a stage a prune took out of the cache and is deleting


@dataclass
class CachedStage:
    kind: str
    key: str
    path: Path
    status: str  # complete | incomplete (a killed or running build) | set aside (failed its check) | pruning
    size: int
    inputs: dict[str, str]
    users: dict[str, float] = field(default_factory=dict)  # sweep (or run) folder -> when its newest result
    # naming this stage was written
    last_used: float = 0.0  # the newest of its build, its last load (`<key>.use`) and those results


def stages(cache: Path) -> Iterator[CachedStage]:
    """Every stage folder under `cache` (`<kind>/<key>`), complete or not; the lock files beside them are not."""
    for kind in sorted(p for p in cache.iterdir() if p.is_dir()):
        for folder in sorted(p for p in kind.iterdir() if p.is_dir()):
            try:
                yield stage_at(kind.name, folder)
            except FileNotFoundError:  # set aside or pruned while we looked
                continue


def stage_at(kind: str, folder: Path) -> CachedStage:
    meta: dict[str, Any] = {}
    if (folder / META).is_file():
        try:
            meta = json.loads((folder / META).read_text())
        except ValueError:
            meta = {}
    complete = (folder / MARKER).exists()
    if PRUNING in folder.name:
        status = "pruning"
    else:
        status = "set aside" if ".corrupt-" in folder.name else "complete" if complete else "incomplete"
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    last_used = (folder / MARKER).stat().st_mtime if complete else folder.stat().st_mtime
    use = folder.with_name(folder.name + USE)
    if use.exists():
        last_used = max(last_used, use.stat().st_mtime)
    inputs = dict(meta.get("inputs") or {})
    return CachedStage(kind, folder.name, folder, status, size, inputs, last_used=last_used)


def users(results: Path) -> dict[tuple[str, str], dict[str, float]]:
    """(kind, key) -> the sweep or run folders whose result.json names that stage, each with when its newest such
    result was written.

    By kind and key, not path: a result records the path as its job saw it (relative to the job's working
    folder with the default `cache_dir`), and a prune run from elsewhere must still see the stage as used."""
    used: dict[tuple[str, str], dict[str, float]] = {}
    for result_file in results.glob("**/result.json"):
        try:
            result = Result.read(result_file)
        except (OSError, ValueError):  # unreadable, or no JSON object: names no stage
            continue
        job = result_file.parent
        owner = str((job if job.parent.name == "runs" else job.parent).relative_to(results))  # a sweep, or one run
        finished = result_file.stat().st_mtime
        for stage in result.stages.values():
            path = stage.path
            if not path:
                continue
            owners = used.setdefault((Path(path).parent.name, Path(path).name), {})
            owners[owner] = max(owners.get(owner, 0.0), finished)
    return used


def list_stages(cache: Path, results: Path) -> list[CachedStage]:
    used = users(results)
    found = list(stages(cache))
    for stage in found:
        stage.users = used.get((stage.kind, stage.key), {})
        stage.last_used = max([stage.last_used, *stage.users.values()])
    return found


WIDTH = 120  # columns a line of `list` fits in: one line per stage, however many sweeps use it


def print_list(found: list[CachedStage], every_user: bool = False) -> None:
    """One line per stage (what it is, its size, its last use, how many sweeps or runs use it and the latest), then
    what it was built from; `every_user`: every sweep or run that uses it too, one a line, newest first."""
    print(fit(f"{'stage':<12} {'key':<16} {'status':<10} {'size':>9}  {'last used':<16}  used by (sweeps or runs)"))
    for s in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.last_used))
        line = f"{s.kind:<12} {s.key:<16} {s.status:<10} {human(s.size):>9}  {when:<16}  "
        newest_first = sorted(s.users, key=lambda owner: (-s.users[owner], owner))
        if not newest_first:
            line += "(no result)"
        else:
            count = f"{len(newest_first)}, latest " if len(newest_first) > 1 else ""
            line += count + elide(newest_first[0], WIDTH - len(line) - len(count))
        print(fit(line))
        if s.inputs:
            inputs = " ".join(f"{role}={key}" for role, key in sorted(s.inputs.items()))
            print(
                *textwrap.wrap(f"built from {inputs}", WIDTH, initial_indent="    ", subsequent_indent="      "),
                sep="\n",
            )
        if every_user:
            print(*(fit(f"    used by {owner}") for owner in newest_first), sep="\n")
    total = sum(s.size for s in found)
    hint = "" if every_user else " (--users: every sweep or run that uses each)"
    print(f"{len(found)} stages, {human(total)}{hint}")


def elide(text: str, room: int) -> str:
    """`text` in `room` columns: its middle replaced by `…` where it is longer (a sweep's time, at its end, stays)."""
    if len(text) <= room:
        return text
    tail = (room - 1) // 2 + (room - 1) % 2
    return text[: room - 1 - tail] + "…" + text[len(text) - tail :]


def fit(line: str) -> str:
    """`line` cut to WIDTH columns, its end replaced by `…` where it was longer (a plugin's long stage name)."""
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "…"


def verify(found: list[CachedStage]) -> int:
    """Full hash check of every complete stage; prints each failure; returns how many failed."""
    failed = unchecked = 0
    for stage in found:
        if stage.status != "complete":
            continue
        meta = json.loads((stage.path / META).read_text())
        recorded = meta.get("files")
        problem = "no record of its files (built before stages recorded them)" if recorded is None else None
        if recorded is not None:
            problem = check_files(stage.path, recorded, hashes=True)
        if problem is not None and recorded is not None:
            failed += 1
            print(f"FAILED {stage.kind}/{stage.key}: {problem}")
        elif problem is not None:
            unchecked += 1
            print(f"unchecked {stage.kind}/{stage.key}: {problem}")
    complete = sum(s.status == "complete" for s in found)
    sound = complete - failed - unchecked
    print(f"{sound} of {complete} complete stages sound, {failed} failed, {unchecked} unchecked")
    return failed


def prunable(found: list[CachedStage], older_than: float | None) -> list[tuple[CachedStage, str]]:
    """The stages a prune removes, each with why: complete ones no result uses (or, with `older_than`, last used
    before it), unless a stage that stays was built from them; set-aside stages, killed builds, killed prunes."""
    by_key: dict[str, list[CachedStage]] = {}
    for stage in found:
        if stage.status in ("complete", "incomplete"):
            by_key.setdefault(stage.key, []).append(stage)  # `inputs` record keys only: any kind may match
    staying = [
        s
        for s in found
        if s.status == "complete" and (bool(s.users) if older_than is None else s.last_used >= older_than)
    ]
    kept: set[Path] = set()
    while staying:  # a stage that stays keeps what it was built from, all the way down
        stage = staying.pop()
        if stage.path not in kept:
            kept.add(stage.path)
            staying.extend(source for key in stage.inputs.values() for source in by_key.get(key, []))
    reasons = {"set aside": "set aside (failed its check)", "incomplete": "a killed build", "pruning": "a killed prune"}
    removable = []
    for stage in found:
        if stage.path in kept or (stage.status == "pruning" and pruning_now(stage.path)):
            continue
        if stage.status in reasons:
            why = reasons[stage.status]
        elif older_than is None:
            why = "no result uses it"
        else:
            why = f"last used {time.strftime('%Y-%m-%d', time.localtime(stage.last_used))}"
        removable.append((stage, why))
    return removable


@contextmanager
def alone(stage: CachedStage, create: bool) -> Iterator[str | None]:
    """Hold a stage's build lock and its use lock without waiting: yields None when both are this process's,
    else why not. `create=False` (a dry run) probes only the lock files that exist: none, nobody holds it."""
    lock_file = stage.path.with_name(stage.path.name + ".lock")
    use_file = stage.path.with_name(stage.path.name + USE)
    with ExitStack() as held:
        if create or lock_file.exists():
            lock = FileLock(str(lock_file))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                yield "being built"
                return
            held.callback(lock.release)
        if create or use_file.exists():
            fd = os.open(use_file, os.O_RDONLY | (os.O_CREAT if create else 0), 0o666)
            held.callback(os.close, fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield "in use"
                return
        yield None


def prune(found: list[CachedStage], older_than: float | None, remove: bool) -> None:
    """One line per stage a prune removes (or, without `remove`, would), or keeps because it is in use; a total."""
    removed = kept = size = 0
    for stage, why in prunable(found, older_than):
        name = f"{stage.kind}/{stage.key}"
        doomed = stage.path.with_name(f"{stage.path.name}{PRUNING}{os.getpid()}")
        if stage.status == "pruning":
            doomed = stage.path  # out of the cache's way already: only its deletion was cut short
        elif stage.status == "set aside":  # nothing builds into or loads from a set-aside folder: no locks
            if remove and not moved(stage.path, doomed):
                continue
        else:
            with alone(stage, create=remove) as busy:
                if busy is not None:
                    kept += 1
                    print(f"{name:<40} {human(stage.size):>9}  {busy}, kept")
                    continue
                # Renamed while both locks are held: a job waiting on the use lock then finds no stage and builds
                # it again, and a half-deleted folder never looks like a killed build. The `.lock` and `.use`
                # files stay: a job may have opened one and be waiting on it, and were it unlinked, the next job
                # would lock a fresh file and both would think the stage theirs. They are empty.
                if remove and not moved(stage.path, doomed):
                    continue
        if remove:  # with the locks let go: a job waits on them only for the rename, never for the deletion
            shutil.rmtree(doomed, ignore_errors=True)  # another host's prune may be finishing a killed prune's too
            if doomed.exists():
                raise HarnessError(f"{doomed}: could not be removed completely; expected files this account can delete")
        removed += 1
        size += stage.size
        print(f"{name:<40} {human(stage.size):>9}  {'removed' if remove else 'would remove'} ({why})")
    total = f"{'removed' if remove else 'would remove'} {removed} stage{'' if removed == 1 else 's'}, {human(size)}"
    if kept:
        total += f"; kept {kept} in use or being built"
    print(total if remove else f"{total} (a dry run: --yes removes them)")


def pruning_now(folder: Path) -> bool:
    """Whether the prune that renamed `folder` (`<key>.pruning-<pid>`) is still running here, deleting it."""
    pid = folder.name.rpartition(PRUNING)[2]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another account's live process
        return True
    return True


def moved(folder: Path, to: Path) -> bool:
    """Rename `folder` (False: gone already, another prune took it)."""
    try:
        folder.rename(to)
    except FileNotFoundError:
        return False
    return True


def cutoff(day: str | None) -> float | None:
    """`--older-than` as a time: the start of that day, local time."""
    if day is None:
        return None
    try:
        return datetime.strptime(day, "%Y-%m-%d").timestamp()
    except ValueError:
        raise HarnessError(f"--older-than={day!r}: expected a date, YYYY-MM-DD") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness-cache", description="List, verify and prune the stage cache.")
    parser.add_argument("--results", type=Path, default=Path("results"), help="the results folder (default: results)")
    parser.add_argument("--cache", type=Path, default=None, help="the stage cache (default: RESULTS/cache)")
    parser.add_argument(
        "--older-than",
        metavar="YYYY-MM-DD",
        default=None,
        help="prune: remove stages last used before this day, whether a result uses them or not",
    )
    parser.add_argument("--yes", action="store_true", help="prune: remove the stages (without it, a dry run)")
    parser.add_argument(
        "--users",
        "--verbose",
        dest="users",
        action="store_true",
        help="list: every sweep or run that uses each stage, one a line (default: how many, and the latest)",
    )
    parser.add_argument(
        "command",
        choices=["list", "verify", "prune"],
        help="list: every stage; verify: hash every complete stage; prune: remove stages nothing uses",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cache = args.cache or args.results / "cache"
    try:
        if not cache.is_dir():
            raise HarnessError(f"--cache={str(cache)!r}: no such folder; expected a stage cache (results/cache)")
        if args.command != "prune" and (args.yes or args.older_than is not None):
            raise HarnessError(f"--yes and --older-than are for prune, not {args.command}")
        if args.command != "list" and args.users:
            raise HarnessError(f"--users is for list, not {args.command}")
        older_than = cutoff(args.older_than)
        found = list_stages(cache, args.results)
        if args.command == "list":
            print_list(found, every_user=args.users)
        elif args.command == "prune":
            prune(found, older_than, remove=args.yes)
        elif verify(found):
            sys.exit(1)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
