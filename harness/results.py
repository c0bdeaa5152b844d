"""`result.json`: what one job leaves behind, and the only thing the comparison reads. `Result` is its one writer
(`Result.write`, atomic) and reader (`Result.read`, `read_all`): the report, the arena, harness-cache and the
benchmarks read results through it, by attribute.

Schema (version 1; a file without `schema_version` is version 1). Every key below is written; a key a file has
beyond them (from a newer harness) is kept in `extra` and written back, so a result reads and writes back whole.
    schema_version   the format's version (SCHEMA_VERSION); a file says which it was written in
    status           "complete" | "failed"
    error            why the job failed (one line), or null
    experiment       `experiment_name`: groups the runs of one comparison
    algorithm        the algorithm's name (`algorithm.name`)
    seed             the training seed
    name             the job's W&B run name: algorithm, compared overrides, seed
    group            its W&B group: the experiment, and the sweep's folder in a sweep
    overrides        the command-line overrides (credentials redacted)
    config           the resolved config (credentials redacted)
    metrics          flat: eval/<suite>/<metric>, and the final train/<name> of the algorithm's stage
    trajectory       the policy along training, evaluated as the final one (harness.snapshots): a list of points,
                     each {step, fraction (of training), metrics (eval/...)}; [] without snapshots
    headline         the comparison's leading columns as the suites declared them (harness.declarations)
    curves           what the report draws as curves (harness.declarations): the training-log keys the algorithm
                     declared worth plotting ({key, label, role}), and the suites' metric families over the number in
                     their names ({key: eval/<suite>/pass_at_{k}, x: k, ...}: pass@k over k)
    cost             wall_s (seconds per stage, per eval suite, eval, startup, logger, train_job, job), built_now
                     (stage -> built by this job), tokens_trained (stage -> tokens), trainable_parameters
                     (stage -> [trainable, total]), tokens_generated (evaluation samples), peak_memory_mb
    stages           stage name -> {key, path, built_now, seconds, metrics}: every stage the job used
    resumed          whether the job resumed a stage whose build was killed
    resumed_from     stage -> the step its killed build was resumed from
    versions         the versions of the stack (harness.versions)
    started_at       ISO 8601, UTC
    finished_at      ISO 8601, UTC
    convergence      whether the loss and quality were still moving over the last fifth of training
                     (harness.convergence): {series: {loss, quality, train_quality}, still_improving}; {} unknown
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import resource
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json, atomic_write_text, read_json

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.jsonl"
TRAIN_LOG_FILE = "train_log.jsonl"  # the algorithm stage's training history (step + metrics per line)

# Overrides that say how or where a job ran, not what it compares: never part of a job's name or a report group.
_NOT_COMPARED = {
    "results_dir",
    "cache_dir",
    "logger",
    "experiment_name",
    "device",
    "debug",
    "cpu_threads",
    "base_model_threads",
}


def is_compared(key: str) -> bool:
    """Whether an override key (`algorithm`, `kl_beta`, `algorithm.trainer.beta`) is part of what is compared.
    A credential never is: it would end up in job names and report groups."""
    return key not in _NOT_COMPARED and not key.startswith(("hydra.", "logger.", "tune.")) and not is_secret(key)


REDACTED = "<redacted>"
# A credential's key: api_key / secret / password anywhere in it, or a last word `token` (`token`, `hub_token`,
# `HF_TOKEN`, `access_token`). Counts (`max_new_tokens`, `include_num_input_tokens_seen`) and a tokenizer's
# special tokens (`pad_token`: a string such as "<pad>") are settings, not secrets.
_SECRET = re.compile(r"api_?key|secret|passw(or)?d|credential|(^|_)token$", re.IGNORECASE)
_SPECIAL_TOKEN = re.compile(r"(^|_)(pad|eos|bos|unk|sep|cls|mask)_token$", re.IGNORECASE)


def is_secret(key: str) -> bool:
    """Whether a config key or override key (`model.token`, `+logger.api_key`, `WANDB_API_KEY`) names a credential."""
    name = key.lstrip("+~").rsplit(".", 1)[-1]
    return bool(_SECRET.search(name)) and not _SPECIAL_TOKEN.search(name)


def redact(config: Any) -> Any:
    """A copy of the config (nested dicts and lists) with the values of credential keys replaced by "<redacted>"."""
    if isinstance(config, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_secret(key) and config[key] else redact(value)
            for key, value in config.items()
        }
    if isinstance(config, list | tuple):
        return [redact(item) for item in config]
    return config


def redact_overrides(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides with the value of every credential key replaced. Quoted, so Hydra can still parse
    them (the report does): `algorithm.trainer.hub_token=hf_x` -> `algorithm.trainer.hub_token='<redacted>'`."""
    redacted = []
    for override in overrides:
        key, equals, _ = override.partition("=")
        redacted.append(f"{key}='{REDACTED}'" if equals and is_secret(key) else override)
    return redacted


def redact_saved_config(path: Path, overrides: Sequence[str]) -> bool:
    """Redact a YAML config record in place: credential keys, and every credential override wherever it is
    quoted (override lists, Hydra's `override_dirname`). Returns whether the file changed."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        return False
    replacements = {o: r for o, r in zip(overrides, redact_overrides(overrides), strict=True) if o != r}

    def scrub(node: Any) -> Any:
        if isinstance(node, str):
            for original, redacted in replacements.items():
                node = node.replace(original, redacted)
            return node
        if isinstance(node, Mapping):
            return {key: scrub(value) for key, value in node.items()}
        if isinstance(node, list):
            return [scrub(item) for item in node]
        return node

    record = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    clean = scrub(redact(record))
    if clean == record:
        return False
    # atomic: parallel jobs of a sweep (joblib) redact the same multirun.yaml, and may read it meanwhile
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(clean)))
    return True


def reset_peak_memory() -> None:
    """Start a new peak for this job. Sweeps run several jobs in one process (Hydra's basic launcher, joblib's
    reused workers), so the process-lifetime peak would charge a job for its predecessors' memory."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with contextlib.suppress(OSError):  # Linux >= 4.0: writing 5 resets the peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb() -> float:
    """Peak memory since `reset_peak_memory`: CUDA allocations on a GPU, resident set size on CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # KiB
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak; Linux reports KiB


def _mapping(value: Any) -> dict[str, Any]:
    """A copy of a JSON object (an absent or malformed one: empty)."""
    return dict(value) if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _unknown(data: Mapping[str, Any], known: Any) -> dict[str, Any]:
    """The keys of `data` that the dataclass `known` does not write (its fields but `extra` and `dir`): kept, so
    a result read writes back whole."""
    names = {f.name for f in dataclasses.fields(known)} - {"extra", "dir"}
    return {key: value for key, value in data.items() if key not in names}


@dataclass
class Cost:
    """result.json `cost`: what the job spent. Counts not recorded (a hand-made or older result) are None."""

    wall_s: dict[str, float] = field(default_factory=dict)  # seconds: per stage (as built), eval/*, job, ...
    built_now: dict[str, bool] = field(default_factory=dict)  # stage -> whether this job built it
    tokens_trained: dict[str, int] = field(default_factory=dict)  # stage -> tokens its training saw
    trainable_parameters: dict[str, list[int]] = field(default_factory=dict)  # stage -> [trainable, total]
    tokens_generated: int | None = None  # completion tokens of the evaluation samples
    peak_memory_mb: float | None = None  # CUDA allocations on a GPU, resident set size on CPU
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> Cost:
        data = _mapping(data)
        return cls(
            wall_s=_mapping(data.get("wall_s")),
            built_now=_mapping(data.get("built_now")),
            tokens_trained=_mapping(data.get("tokens_trained")),
            trainable_parameters=_mapping(data.get("trainable_parameters")),
            tokens_generated=data.get("tokens_generated"),
            peak_memory_mb=data.get("peak_memory_mb"),
            extra=_unknown(data, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "wall_s": dict(self.wall_s),
            "built_now": dict(self.built_now),
            "tokens_trained": dict(self.tokens_trained),
            "trainable_parameters": dict(self.trainable_parameters),
            "tokens_generated": self.tokens_generated,
            "peak_memory_mb": self.peak_memory_mb,
        }


@dataclass
class StageRecord:
    """One stage a job used (result.json `stages`): its cache key and folder, as the job saw them."""

    key: str = ""
    path: str = ""  # as the job saw it (relative to its working folder with the default cache_dir)
    built_now: bool = False
    seconds: float = 0.0  # as built (a reused stage: the seconds its build took)
    metrics: dict[str, Any] = field(default_factory=dict)  # what its build reported
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> StageRecord:
        data = _mapping(data)
        return cls(
            key=data.get("key", ""),
            path=data.get("path", ""),
            built_now=data.get("built_now", False),
            seconds=data.get("seconds", 0.0),
            metrics=_mapping(data.get("metrics")),
            extra=_unknown(data, cls),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.extra,
            "key": self.key,
            "path": self.path,
            "built_now": self.built_now,
            "seconds": self.seconds,
            "metrics": dict(self.metrics),
        }


@dataclass
class TrajectoryPoint:
    """The policy at one snapshot along training, evaluated as the final one (result.json `trajectory`)."""

    step: int | None = None
    fraction: float | None = None  # of the training stage's steps
    metrics: dict[str, float] = field(default_factory=dict)  # eval/<suite>/<metric>
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> TrajectoryPoint:
        data = _mapping(data)
        return cls(data.get("step"), data.get("fraction"), _mapping(data.get("metrics")), _unknown(data, cls))

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "step": self.step, "fraction": self.fraction, "metrics": dict(self.metrics)}


@dataclass
class Result:
    """One job's result.json (the module docstring has the schema). `dir`: the folder it was read from (not
    written). Values are kept as the file has them: no number is converted."""

    status: str = "complete"
    error: str | None = None
    experiment: str | None = None
    algorithm: str | None = None
    seed: int | None = None
    name: str | None = None
    group: str | None = None
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    trajectory: list[TrajectoryPoint] = field(default_factory=list)
    headline: list[dict[str, Any]] = field(default_factory=list)
    curves: list[dict[str, Any]] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)
    stages: dict[str, StageRecord] = field(default_factory=dict)
    resumed: bool = False
    resumed_from: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    convergence: dict[str, Any] = field(default_factory=dict)  # harness.convergence; {}: not measured
    schema_version: int = SCHEMA_VERSION  # read: the version the file says (none: 1); written: SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # keys of the file this version does not know
    dir: Path | None = field(default=None, compare=False)  # where it was read from

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], dir: Path | str | None = None) -> Result:
        """A result from result.json's object. Missing keys take their defaults (a hand-made or older file);
        unknown keys go to `extra`."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a result is a JSON object, not {type(data).__name__}")
        return cls(
            status=data.get("status", "complete"),
            error=data.get("error"),
            experiment=data.get("experiment"),
            algorithm=data.get("algorithm"),
            seed=data.get("seed"),
            name=data.get("name"),
            group=data.get("group"),
            overrides=_list(data.get("overrides")),
            config=_mapping(data.get("config")),
            metrics=_mapping(data.get("metrics")),
            trajectory=[TrajectoryPoint.from_dict(p) for p in _list(data.get("trajectory")) if isinstance(p, Mapping)],
            headline=[dict(e) for e in _list(data.get("headline")) if isinstance(e, Mapping)],
            curves=[dict(e) for e in _list(data.get("curves")) if isinstance(e, Mapping)],
            cost=Cost.from_dict(data.get("cost")),
            stages={
                name: StageRecord.from_dict(stage)
                for name, stage in _mapping(data.get("stages")).items()
                if isinstance(stage, Mapping)
            },
            resumed=data.get("resumed", False),
            resumed_from=_mapping(data.get("resumed_from")),
            versions=_mapping(data.get("versions")),
            started_at=data.get("started_at"),
            finished_at=data.get("finished_at"),
            convergence=_mapping(data.get("convergence")),
            schema_version=data.get("schema_version", 1),
            extra=_unknown(data, cls),
            dir=None if dir is None else Path(dir),
        )

    def to_dict(self) -> dict[str, Any]:
        """result.json's object: every field but `dir`, and the unknown keys read with it."""
        return {
            **self.extra,
            "schema_version": self.schema_version,
            "status": self.status,
            "error": self.error,
            "experiment": self.experiment,
            "algorithm": self.algorithm,
            "seed": self.seed,
            "name": self.name,
            "group": self.group,
            "overrides": list(self.overrides),
            "config": self.config,
            "metrics": dict(self.metrics),
            "trajectory": [point.to_dict() for point in self.trajectory],
            "headline": [dict(entry) for entry in self.headline],
            "curves": [dict(entry) for entry in self.curves],
            "cost": self.cost.to_dict(),
            "stages": {name: stage.to_dict() for name, stage in self.stages.items()},
            "resumed": self.resumed,
            "resumed_from": dict(self.resumed_from),
            "versions": dict(self.versions),
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "convergence": dict(self.convergence),
        }

    @classmethod
    def read(cls, path: Path | str) -> Result:
        """A result.json (or the folder holding one). ValueError when it is no JSON object."""
        path = Path(path)
        if path.is_dir():
            path = path / RESULT_FILE
        return cls.from_dict(read_json(path), dir=path.parent)

    def write(self, output_dir: Path | str) -> Path:
        """`output_dir`/result.json, atomically (readers see the old file or the whole new one), in this
        harness's schema version."""
        path = Path(output_dir) / RESULT_FILE
        atomic_write_json(path, {**self.to_dict(), "schema_version": SCHEMA_VERSION})
        return path


# folders under a sweep that are not its comparison: the stage cache, a tuning's trials and its untuned runs (each
# read as a folder of its own: `harness-report <sweep>/untuned`)
SET_ASIDE = {"cache", "tuning", "untuned"}


def read_all(root: Path | str) -> list[Result]:
    """Every `result.json` under `root` (a run or a sweep directory, or a results folder; the stage cache is
    skipped, and a tuning's trials and untuned runs), in path order, each with its `dir`."""
    root = Path(root)
    paths = sorted(path for path in root.rglob(RESULT_FILE) if not SET_ASIDE & set(path.relative_to(root).parts))
    return [Result.read(path) for path in paths]


def read_results(root: Path) -> list[dict[str, Any]]:
    """Every `result.json` under `root` as plain objects (for scripts and tests), each with its `dir` added; read
    through `Result`, so as the report reads them."""
    return [{**result.to_dict(), "dir": str(result.dir)} for result in read_all(root)]
