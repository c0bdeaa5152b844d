"""Content-addressed stage cache.

A stage (datasets, base model, SFT policy, ...) is stored under `<cache_dir>/<stage>/<key>/`, where the key
hashes the stage's resolved config, the keys of the stages it was built from, and the versions of the stack.
Two jobs that need the same stage get the same directory: the first builds it while holding a file lock, the
others wait and reuse it. `COMPLETE` is written last, so a directory without it is a killed build: it is
rebuilt, resuming from the trainer checkpoints the killed build left (everything else in it is thrown away).

A completed stage records every file it wrote, with its size and SHA-256 (`stage.json` `files`). Reusing one
checks it first: every size, and the hash of every small file (`verify="hashes"`: of every file). A stage that
fails (a file cut short by a full disk or an interrupted copy, one that went missing, a flipped bit the check can
see) is set aside as `<key>.corrupt-<time>` with a one-line warning and built again.

A process that is handed a stage holds a shared `flock` on `<stage>/<key>.use` until it exits (the kernel drops
it when the process dies, kill -9 included): `harness-cache prune` removes only stages whose use and build locks
it can take alone, without waiting.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from harness import cores, distributed, progress
from harness.io import atomic_write_json, read_json
from harness.results import redact
from harness.versions import stack_versions

log = logging.getLogger(__name__)

MARKER = "COMPLETE"
META = "stage.json"
HISTORY = "log_history.jsonl"  # a trained stage's training curve, one JSON row per logging step
# What a killed build leaves that the next build resumes from: trainer checkpoints (each written whole by its
# trainer) and the training curve up to them (the builder cuts it back to the checkpoint it resumes from).
RESUMABLE = ("checkpoints", "log_history.jsonl", "snapshots")  # snapshots: each whole once its record is written
SMALL_FILE = 1 << 20  # bytes: files up to this size are hashed on every reuse (configs, tokenizers, datasets' state)
VERIFY = ("sizes", "hashes")
USE = ".use"  # `<key>.use`, beside the stage: every process using the stage holds a shared lock on it

# Stage folder -> the `<key>.use` file this process holds open (and shared-locked) for the rest of its life.
_held: dict[Path, int] = {}


def hold(path: Path) -> None:
    """Mark a stage as in use by this process until it exits, so `harness-cache prune` keeps it.

    Taken before the stage is checked, so a prune cannot remove it between the check and the load. It waits
    only while a prune renames the stage out of the way (a moment); the check then finds it gone and rebuilds it."""
    path = path.absolute()
    if path in _held:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_name(path.name + USE), os.O_RDONLY | os.O_CREAT, 0o666)  # flock needs no write access
    except OSError as error:  # a cache this process may only read (a read-only mount): reusing it still works
        log.info("stage %s: not marked in use (%s); a prune by the cache's owner may remove it", path, error)
        return
    fcntl.flock(fd, fcntl.LOCK_SH)
    with suppress(OSError):  # another account's file in a shared cache: the lock is what matters
        os.utime(fd)  # its last use, for `harness-cache prune --older-than`
    _held[path] = fd


def release_stages() -> None:
    """Let go of every stage this process holds (tests; a long-lived process that is done with them)."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest(path: Path) -> dict[str, list[Any]]:
    """Every file a stage wrote (relative path -> [size, sha256]), but for its completion records."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name not in (MARKER, META))
    return {str(f.relative_to(path)): [f.stat().st_size, file_hash(f)] for f in files}


def check_files(path: Path, recorded: Mapping[str, list[Any]], hashes: bool) -> str | None:
    """What is wrong with a stage's files against what it recorded (None: they are sound)."""
    for name, (size, digest) in recorded.items():
        file = path / name
        if not file.is_file():
            return f"{name} is missing"
        actual = file.stat().st_size
        if actual != size:
            return f"{name} has {actual} bytes, {size} when it was built"
        if (hashes or size <= SMALL_FILE) and file_hash(file) != digest:
            return f"{name} differs from what was built (SHA-256)"
    return None


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded")
LOW_SPACE = 16 << 20  # bytes: a write that fails with less than this left is put down to a full disk


def disk_full(error: BaseException, path: Path) -> bool:
    """Whether `error` (or what caused it) is a write the disk had no room for. Libraries wrap ENOSPC in their own
    errors (torch's "file write failed", safetensors' I/O error), so a failed write with the disk all but full
    counts too."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in DISK_FULL:
            return True
        if any(text in str(current) for text in _DISK_FULL_TEXT):
            return True
        current = current.__cause__ or current.__context__
    if isinstance(error, OSError | RuntimeError):
        with suppress(OSError):
            return shutil.disk_usage(_existing(path)).free < LOW_SPACE
    return False


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def human(size: float) -> str:
    """A size in bytes as people read it: `512 B`, `1.5 KB`, `3.2 GB` (the disk-full error, harness-cache)."""
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GB"


def where_full(path: Path) -> tuple[Path, str]:
    """The mount point `path` is on, and how much is free there (for the disk-full error)."""
    mount = _existing(path.absolute())
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        free = human(shutil.disk_usage(mount).free)
    except OSError:
        free = "unknown space"
    return mount, free


def clear_incomplete(path: Path) -> list[str]:
    """Empty a killed build's directory but for what a resumed build can use; returns what was kept."""
    kept = []
    for entry in path.iterdir():
        if entry.name in RESUMABLE:
            kept.append(entry.name)
        elif entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return kept


@dataclass(frozen=True)
class StageOutput:
    """A finished stage: where it lives, its key, and what its build reported."""

    name: str
    key: str
    path: Path
    built_now: bool
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


def stage_key(name: str, config: Any, inputs: Mapping[str, StageOutput]) -> str:
    payload = {
        "stage": name,
        "config": redact(config),  # a credential is not what a stage computes: rotating it keeps the key
        "inputs": {role: out.key for role, out in sorted(inputs.items())},
        "versions": stack_versions(),
    }
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# A build gets its (empty) output directory and returns metrics to keep with the stage.
Build = Callable[[Path], Mapping[str, Any] | None]


class StageCache:
    def __init__(self, root: Path | str, verify: str = "sizes") -> None:
        from harness.errors import HarnessError

        if verify not in VERIFY:
            raise HarnessError(f"verify_stages={verify!r}: expected one of {', '.join(VERIFY)}")
        self.root = Path(root)
        self.verify = verify

    def path(self, name: str, key: str) -> Path:
        return self.root / name / key

    def is_complete(self, name: str, key: str) -> bool:
        return (self.path(name, key) / MARKER).exists()

    def problem(self, name: str, key: str) -> str | None:
        """What is wrong with a complete stage's files (None: sound, or built before stages recorded them)."""
        path = self.path(name, key)
        try:
            recorded = read_json(path / META).get("files")
        except (OSError, ValueError):
            return f"{META} cannot be read"
        if recorded is None:
            return None
        return check_files(path, recorded, hashes=self.verify == "hashes")

    def is_sound(self, name: str, key: str) -> bool:
        """Complete, and its files are what its build wrote."""
        return self.is_complete(name, key) and self.problem(name, key) is None

    def set_aside(self, name: str, key: str, problem: str) -> Path:
        """Move a stage that failed its check out of the way (kept for a post-mortem), so it is built again."""
        path = self.path(name, key)
        aside = path.with_name(f"{key}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        path.rename(aside)
        log.warning("stage %s: %s failed its check (%s); set aside as %s and rebuilt", name, path, problem, aside.name)
        return aside

    def run(
        self, name: str, config: Any, inputs: Mapping[str, StageOutput], build: Build, collective: bool = False
    ) -> StageOutput:
        """Return the stage's output, building it first unless a complete copy is cached.

        With several processes (harness.distributed), a `collective` build (a trainer's) runs in all of them;
        any other is built by the main process while the rest wait, then read from the cache."""
        key = stage_key(name, config, inputs)
        hold(self.path(name, key))  # per process, so every process of a multi-process job holds it too
        if distributed.main_value(self.is_sound(name, key)):
            return self._load(name, key, built_now=False)
        if not distributed.is_distributed():
            return self._build(name, key, config, inputs, build)
        if collective:
            return self._build(name, key, config, inputs, build, together=True)
        output = self._build(name, key, config, inputs, build) if distributed.is_main() else None
        distributed.barrier()
        return output or self._load(name, key, built_now=False)

    def _build(
        self,
        name: str,
        key: str,
        config: Any,
        inputs: Mapping[str, StageOutput],
        build: Build,
        together: bool = False,
    ) -> StageOutput:
        path = self.path(name, key)
        if together and not distributed.is_main():  # the main process prepares the folder and marks it complete
            distributed.barrier()
            start = time.perf_counter()
            metrics = dict(build(path) or {})
            seconds = time.perf_counter() - start
            distributed.barrier()
            distributed.barrier()
            return StageOutput(name, key, path, built_now=True, seconds=seconds, metrics=metrics)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path.parent / f"{key}.lock"))
        # while another job builds it, the view says so and this job's cores are lent to that build (harness.cores)
        with progress.waiting_for(name, lock, while_waiting=cores.lending(path)):
            # Another job finished it while we waited. (A multi-process job whose trainer stage another job
            # completes meanwhile leaves its other processes waiting at the barrier until gloo's timeout: rare.)
            if self.is_complete(name, key):
                problem = self.problem(name, key)
                if problem is None:
                    log.info("stage %s: reusing %s (built by a concurrent job)", name, path)
                    return self._load(name, key, built_now=False)
                self.set_aside(name, key, problem)
            if path.exists():
                kept = clear_incomplete(path)
                log.warning("stage %s: incomplete build at %s (killed?); keeping %s", name, path, kept or "nothing")
            try:
                path.mkdir(parents=True, exist_ok=True)
                log.info("stage %s: building %s", name, path)
                if together:
                    distributed.barrier()  # the folder is ready: every process trains
                start = time.perf_counter()
                with progress.stage(name), cores.building(path) as held:  # the view shows the stage this job builds
                    metrics = dict(build(path) or {})
                seconds = time.perf_counter() - start
                if together:
                    distributed.barrier()  # every process is done writing (checkpoints, per-process state)
                shutil.rmtree(path / "checkpoints", ignore_errors=True)  # only a killed build needs them (optimizer)
                atomic_write_json(
                    path / META,
                    {
                        "stage": name,
                        "key": key,
                        "config": redact(config),
                        "inputs": {role: out.key for role, out in inputs.items()},
                        "seconds": seconds,
                        "core_seconds": held.core_seconds,  # its own cores and those lent to it, over time
                        "metrics": metrics,
                        "versions": stack_versions(),
                        "pid": os.getpid(),
                        "files": manifest(path),  # what a later reuse checks
                    },
                )
                (path / MARKER).write_text(key + "\n")  # last: from here on the stage is complete
            except Exception as error:
                if not disk_full(error, path):
                    raise
                raise self._disk_full(name, path) from error
            log.info("stage %s: built in %.1fs", name, seconds)
            if together:
                distributed.barrier()  # complete before anyone reads it
        return StageOutput(name, key, path, built_now=True, seconds=seconds, metrics=metrics)

    def _disk_full(self, name: str, path: Path) -> Exception:
        """The one-line error of a build the disk could not hold, after clearing what it wrote: no marker, nothing a
        later run could mistake for the stage, and the space back (only whole trainer checkpoints stay, to resume)."""
        from harness.errors import HarnessError

        with suppress(OSError):
            clear_incomplete(path)
        mount, free = where_full(path)
        return HarnessError(
            f"stage {name}: the disk is full ({free} free on {mount}); building {path} stopped, not marked complete, "
            f"its partial files removed; free space there or set cache_dir to a larger disk, then run again"
        )

    def _load(self, name: str, key: str, built_now: bool) -> StageOutput:
        path = self.path(name, key)
        meta = read_json(path / META)
        log.info("stage %s: cached at %s", name, path)
        return StageOutput(name, key, path, built_now, meta["seconds"], meta.get("metrics", {}))
