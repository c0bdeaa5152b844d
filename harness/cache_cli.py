"""`harness-cache`: what the stage cache holds, and whether it is sound.

    harness-cache list                  every stage: kind, key, size, inputs, the sweeps whose results use it, last use
    harness-cache verify                every complete stage's files against their recorded SHA-256; exit 1 if any fails
    harness-cache --results DIR list    another results folder (its cache is DIR/cache unless --cache says otherwise)

Both only read. A stage in use is one some `result.json` under the results folder names (its `stages.*.path`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.stages import MARKER, META, check_files


@dataclass
class CachedStage:
    kind: str
    key: str
    path: Path
    status: str  # complete | incomplete (a killed or running build) | set aside (failed its check)
    size: int
    inputs: dict[str, str]
    users: set[str] = field(default_factory=set)  # sweep (or run) folders whose results name this stage
    last_used: float = 0.0  # the newest of its build and those results


def stages(cache: Path) -> Iterator[CachedStage]:
    """Every stage folder under `cache` (`<kind>/<key>`), complete or not."""
    for kind in sorted(p for p in cache.iterdir() if p.is_dir()):
        for folder in sorted(p for p in kind.iterdir() if p.is_dir()):
            meta: dict[str, Any] = {}
            if (folder / META).is_file():
                try:
                    meta = json.loads((folder / META).read_text())
                except ValueError:
                    meta = {}
            complete = (folder / MARKER).exists()
            status = "set aside" if ".corrupt-" in folder.name else "complete" if complete else "incomplete"
            size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
            built = (folder / MARKER).stat().st_mtime if complete else folder.stat().st_mtime
            inputs = dict(meta.get("inputs") or {})
            yield CachedStage(kind.name, folder.name, folder, status, size, inputs, last_used=built)


def users(results: Path) -> dict[str, tuple[set[str], float]]:
    """Stage folder (resolved) -> the sweep or run folders whose result.json names it, and when the newest finished."""
    used: dict[str, tuple[set[str], float]] = {}
    for result_file in results.glob("**/result.json"):
        try:
            result = json.loads(result_file.read_text())
        except (OSError, ValueError):
            continue
        job = result_file.parent
        owner = str((job if job.parent.name == "runs" else job.parent).relative_to(results))  # a sweep, or one run
        finished = result_file.stat().st_mtime
        for stage in (result.get("stages") or {}).values():
            path = stage.get("path") if isinstance(stage, dict) else None
            if not path:
                continue
            key = str(Path(path).resolve())
            owners, newest = used.get(key, (set(), 0.0))
            owners.add(owner)
            used[key] = (owners, max(newest, finished))
    return used


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def list_stages(cache: Path, results: Path) -> list[CachedStage]:
    used = users(results)
    found = list(stages(cache))
    for stage in found:
        owners, newest = used.get(str(stage.path.resolve()), (set(), 0.0))
        stage.users, stage.last_used = owners, max(stage.last_used, newest)
    return found


def print_list(found: list[CachedStage]) -> None:
    print(f"{'stage':<18} {'key':<18} {'status':<10} {'size':>9}  {'last used':<16} used by / inputs")
    for s in found:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.last_used))
        used_by = ", ".join(sorted(s.users)) or "(no result)"
        inputs = " ".join(f"{role}={key}" for role, key in sorted(s.inputs.items()))
        print(f"{s.kind:<18} {s.key:<18} {s.status:<10} {human(s.size):>9}  {when:<16} {used_by}  [{inputs}]")
    total = sum(s.size for s in found)
    print(f"{len(found)} stages, {human(total)}")


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


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="harness-cache", description="List and verify the stage cache.")
    parser.add_argument("--results", type=Path, default=Path("results"), help="the results folder (default: results)")
    parser.add_argument("--cache", type=Path, default=None, help="the stage cache (default: RESULTS/cache)")
    parser.add_argument("command", choices=["list", "verify"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cache = args.cache or args.results / "cache"
    try:
        if not cache.is_dir():
            raise HarnessError(f"--cache={str(cache)!r}: no such folder; expected a stage cache (results/cache)")
        found = list_stages(cache, args.results)
        if args.command == "list":
            print_list(found)
        elif verify(found):
            sys.exit(1)
    except HarnessError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
