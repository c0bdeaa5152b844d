"""`logger=wandb`: one W&B run per job, offline unless the user asked for online mode.

Offline runs land under `<dir>/wandb/offline-run-*` and can be uploaded later with `wandb sync`.
Each metric namespace (`train/...`, `sft/...`) gets its own step axis (`<namespace>/step`), so two stages
trained in one job never fight over W&B's single monotonic step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harness.api import atomic_write_text

log = logging.getLogger(__name__)

DEFAULT_INIT_TIMEOUT = 30.0  # seconds an online run waits for the W&B server before logging offline instead
_server_unreachable = False  # set once an online start failed in this process


@contextlib.contextmanager
def redacted_argv() -> Iterator[None]:
    """W&B copies the command line (`sys.argv`) into the run's metadata when a run starts; a credential given
    as an override (`+model.token=...`) must not go with it."""
    from harness.api import redact_overrides

    saved = sys.argv
    sys.argv = [saved[0], *redact_overrides(saved[1:])]
    try:
        yield
    finally:
        sys.argv = saved


class WandbLogger:
    def __init__(
        self,
        name: str = "wandb",
        project: str = "alignment-harness",
        entity: str | None = None,
        mode: str | None = None,
        dir: str = "results",
        tags: list[str] | None = None,
        init_timeout: float | None = None,
    ) -> None:
        self.name = name
        self.project = project
        self.entity = entity
        # The user's choice wins: logger.mode, else WANDB_MODE, else offline (no server is assumed).
        self.mode = mode or os.environ.get("WANDB_MODE") or "offline"
        # How long an online start waits for the server before falling back to offline (wandb's own wait is 90 s).
        self.init_timeout = float(init_timeout or os.environ.get("WANDB_INIT_TIMEOUT") or DEFAULT_INIT_TIMEOUT)
        self.dir = Path(dir)
        self.tags = list(tags or [])
        self.run: Any = None
        self._axes: set[str] = set()
        self._pending: Path | None = None

    def start(self, *, config: Mapping[str, Any], name: str, group: str, job_type: str) -> None:
        # A job that was killed (or failed) left its run id behind: the same command resumes the same W&B run.
        self._pending = self.dir / "pending" / f"{_job_hash(config, name, group, job_type)}.id"
        run_id = self._pending.read_text().strip() if self._pending.exists() else None
        identity = {"config": dict(config), "name": name, "group": group, "job_type": job_type}
        self.run = self._resume(run_id, identity) if run_id else self._init(**identity)
        atomic_write_text(self._pending, self.run.id + "\n")
        log.info("W&B run %s (%s%s) in %s", self.run.id, self.mode, ", resumed" if run_id else "", self.run.dir)

    def _resume(self, run_id: str, identity: dict[str, Any], patience_s: float = 30.0) -> Any:
        """Resume run `run_id`. Right after a kill, the killed job's W&B service (its own process, which
        outlives it by a second or two) still holds the id: wait for it, then fall back to a new run."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                return self._init(**identity, id=run_id, resume="allow")
            except Exception as error:
                if "in use" not in str(error):
                    raise
                if time.monotonic() > deadline:
                    log.warning("W&B run %s is still held by another process; logging to a new run", run_id)
                    return self._init(**identity)
                time.sleep(1.0)

    def _init(self, **identity: Any) -> Any:
        """`wandb.init`; an online run whose server cannot be reached falls back to offline with one warning, so
        a job never fails for want of a network (upload the run later with `wandb sync`)."""
        import wandb

        global _server_unreachable
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "online" and _server_unreachable:  # a sweep's later jobs need not wait out the timeout
            self.mode = "offline"
        try:
            return self._start(wandb, **identity)
        except wandb.errors.Error as error:
            if self.mode != "online":
                raise
            reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            log.warning(
                "logger.mode=online: cannot start a W&B run (%s); logging offline to %s instead (upload later "
                "with `wandb sync`)", reason, self.dir / "wandb",
            )
            self.mode, _server_unreachable = "offline", True
            return self._start(wandb, **identity)

    def _start(self, wandb: Any, **identity: Any) -> Any:
        with redacted_argv():
            return wandb.init(
                project=self.project,
                entity=self.entity,
                mode=self.mode,
                dir=str(self.dir),
                tags=self.tags,
                settings=wandb.Settings(console="off", x_disable_stats=True, init_timeout=self.init_timeout),
                **identity,
            )

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        row = dict(metrics)
        if step is not None:
            for namespace in {key.split("/", 1)[0] for key in metrics if "/" in key}:
                axis = f"{namespace}/step"
                if namespace not in self._axes:
                    self.run.define_metric(axis)
                    self.run.define_metric(f"{namespace}/*", step_metric=axis)
                    self._axes.add(namespace)
                row[axis] = step
        self.run.log(row)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
            if exit_code == 0 and self._pending is not None:
                self._pending.unlink(missing_ok=True)

    def log_comparison(
        self,
        *,
        group: str,
        experiment: str,
        columns: list[str],
        rows: list[list[Any]],
        images: Mapping[str, Path],
        summary: Mapping[str, float],
        markdown: str,
        tables: Mapping[str, tuple[list[str], list[list[Any]]]] | None = None,
    ) -> str:
        """The sweep's comparison as one more run in its group (job_type `comparison`): the table as a
        `wandb.Table`, each figure as an image, the headline means in the summary, and each of `tables`
        (name -> columns, rows: the samples side by side, the human votes) as a `wandb.Table` under
        `comparison/<name>`. Returns the run's folder."""
        import wandb

        run = self._init(name=f"{experiment}-comparison", group=group, job_type="comparison",
                         config={"experiment": experiment})
        try:
            run.log({
                "comparison/table": wandb.Table(columns=columns, data=rows),
                "comparison/markdown": wandb.Html(f"<pre>{markdown}</pre>"),
                **{f"comparison/{name}": wandb.Image(str(path)) for name, path in images.items()},
                **{f"comparison/{name}": wandb.Table(columns=list(columns), data=[list(row) for row in rows])
                   for name, (columns, rows) in (tables or {}).items()},
            })
            for key, value in summary.items():
                run.summary[key] = value
            folder = str(Path(run.dir).parent)
        finally:
            run.finish()
        log.info("W&B comparison run (%s) in %s", self.mode, folder)
        return folder


def _job_hash(config: Mapping[str, Any], *identity: str) -> str:
    """Identifies a job across re-runs of the same command: its resolved config and W&B identity."""
    blob = json.dumps([dict(config), *identity], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


# -- reading an offline run back ---------------------------------------------------------------------------
# A `.wandb` file is a 7-byte header (":W&B", magic, version) followed by LevelDB-log records in 32 KiB
# blocks: crc32 (4 bytes), length (2, little-endian), type (1: full, 2: first, 3: middle, 4: last), data.
# Each record's data is a serialized `wandb_internal_pb2.Record`. wandb ships no reader, so here is one.
_HEADER, _BLOCK, _RECORD_HEADER = 7, 32 * 1024, 7


def _records(path: Path) -> Iterator[bytes]:
    blob = path.read_bytes()
    if blob[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    position, pending = _HEADER, b""
    while position + _RECORD_HEADER <= len(blob):
        left_in_block = _BLOCK - position % _BLOCK
        if left_in_block < _RECORD_HEADER:  # block trailer: zero padding
            position += left_in_block
            continue
        length = int.from_bytes(blob[position + 4 : position + 6], "little")
        kind = blob[position + 6]
        data = blob[position + _RECORD_HEADER : position + _RECORD_HEADER + length]
        position += _RECORD_HEADER + length
        if kind == 0 and length == 0:
            break
        pending = data if kind in (1, 2) else pending + data
        if kind in (1, 4):
            yield pending
            pending = b""


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)  # wandb stores some keys as path components


def read_offline_run(run_dir: Path) -> dict[str, Any]:
    """The identity, config, summary and history rows of an offline run directory (`offline-run-*`)."""
    from wandb.proto import wandb_internal_pb2

    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    run: dict[str, Any] = {"config": {}, "summary": {}, "history": []}
    for data in _records(files[0]):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(data)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            info = record.run
            run.update(id=info.run_id, project=info.project, group=info.run_group, job_type=info.job_type)
            run["name"] = info.display_name
            items = info.config.update
        elif kind == "config":
            items = record.config.update
        elif kind == "summary":
            run["summary"].update({_key(item): json.loads(item.value_json) for item in record.summary.update})
            continue
        elif kind == "history":
            run["history"].append({_key(item): json.loads(item.value_json) for item in record.history.item})
            continue
        else:
            continue
        run["config"].update({_key(item): json.loads(item.value_json) for item in items})
    return run
