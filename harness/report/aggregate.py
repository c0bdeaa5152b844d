"""Read a sweep back from its folders and put numbers on it: groups, means, intervals, paired differences.

A sweep directory holds one folder per job with a `result.json` (complete or failed) and Hydra's
`multirun.yaml`, which says which jobs were asked for. Jobs asked for but without a result (killed, still
running, never started) are reported as missing, never silently dropped.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from harness.errors import HarnessError
from harness.results import RESULT_FILE, TRAIN_LOG_FILE, is_compared, read_results

CONFIDENCE = 0.95
MULTIRUN_FILE = "multirun.yaml"


@dataclass
class Job:
    """One job of the sweep: its swept values and, when it finished, its result."""

    params: dict[str, str]  # swept key -> value, seed included
    status: str  # complete | failed | missing
    result: dict[str, Any] = field(default_factory=dict)
    dir: Path | None = None
    reason: str = ""  # why a job failed or is missing

    @property
    def seed(self) -> str:
        return self.params.get("seed", str(self.result.get("seed", "")))

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.get("metrics", {})


@dataclass
class Summary:
    """One metric over the seeds of one group: mean, standard deviation and a t-interval for the mean."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    values: list[float]


@dataclass
class Paired:
    """A group minus the baseline, paired by seed: mean difference, its t-interval and p-value."""

    n: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass
class Group:
    label: str  # "<algorithm>", or "<algorithm> kl_beta=0.1" when a sweep varies more than algorithm and seed
    algorithm: str
    params: dict[str, str]  # swept values other than algorithm and seed
    jobs: list[Job]

    @property
    def complete(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "complete"]

    def values(self, metric: str) -> dict[str, float]:
        """Seed -> value of `metric` over the complete jobs that report it."""
        return {
            job.seed: float(job.metrics[metric])
            for job in self.complete
            if metric in job.metrics and _finite(job.metrics[metric])
        }

    def summary(self, metric: str) -> Summary | None:
        values = list(self.values(metric).values())
        return summarise(values) if values else None


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def summarise(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, sample standard deviation and the Student-t interval for the mean (NaN bounds for one value)."""
    data = np.asarray(values, dtype=float)
    n, mean = len(data), float(data.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan, list(map(float, data)))
    std = float(data.std(ddof=1))
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=std / math.sqrt(n)) if std > 0 else (mean, mean)
    return Summary(n, mean, std, float(low), float(high), list(map(float, data)))


def paired(group: Mapping[str, float], baseline: Mapping[str, float], confidence: float = CONFIDENCE) -> Paired | None:
    """Difference group - baseline over the seeds both have (a paired t-test: seeds share data and starting policy)."""
    seeds = sorted(set(group) & set(baseline))
    if not seeds:
        return None
    diffs = np.array([group[seed] - baseline[seed] for seed in seeds])
    n, mean = len(diffs), float(diffs.mean())
    if n < 2:
        return Paired(n, mean, math.nan, math.nan, math.nan)
    sem = float(diffs.std(ddof=1)) / math.sqrt(n)
    if sem == 0:
        return Paired(n, mean, mean, mean, 0.0 if mean != 0 else 1.0)
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    p_value = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    return Paired(n, mean, float(low), float(high), p_value)


# -- reading the sweep ------------------------------------------------------------------------------------
@dataclass
class Sweep:
    root: Path
    jobs: list[Job]
    swept: list[str]  # keys that vary across jobs, in the order the sweep named them
    experiment: str
    config: dict[str, Any]  # the config of one complete job (for W&B project, generation settings, ...)
    baseline: str | None = None  # the group the sweep was to be compared with (its report callback's `baseline`)

    @property
    def groups(self) -> list[Group]:
        grouping = [key for key in self.swept if key not in ("algorithm", "seed")]
        groups: dict[tuple, Group] = {}
        for job in self.jobs:
            algorithm = job.params.get("algorithm") or job.result.get("algorithm") or "?"
            params = {key: job.params[key] for key in grouping if key in job.params}
            key = (algorithm, *params.items())
            if key not in groups:
                label = " ".join([algorithm, *(f"{k}={v}" for k, v in params.items())])
                groups[key] = Group(label, algorithm, params, [])
            groups[key].jobs.append(job)
        return list(groups.values())

    def by_status(self, status: str) -> list[Job]:
        return [job for job in self.jobs if job.status == status]


def _parse(overrides: Iterable[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_overrides(list(overrides))


def _text(value: Any) -> str:
    """A swept value as the job's own override spells it (so `0.1` from a sweep matches `x=0.1`)."""
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


def _job_params(overrides: Iterable[str]) -> dict[str, str]:
    parsed = _parse(overrides)
    return {o.key_or_group: _text(o.value()) for o in parsed if not o.is_delete() and is_compared(o.key_or_group)}


def expected_jobs(multirun: Mapping[str, Any]) -> tuple[list[str], list[dict[str, str]]]:
    """The swept keys and every combination a multirun asked for (command line over `hydra.sweeper.params`)."""
    hydra = multirun.get("hydra", {})
    sweeps: dict[str, list[str]] = {}
    for key, value in (hydra.get("sweeper", {}).get("params") or {}).items():
        sweeps.update(_sweep_values([f"{key}={value}"]))
    sweeps.update(_sweep_values(hydra.get("overrides", {}).get("task", [])))
    swept = [key for key, values in sweeps.items() if len(values) > 1 or key in ("algorithm", "seed")]
    combos = [dict(zip(sweeps, values, strict=True)) for values in itertools.product(*sweeps.values())]
    return swept, [{key: combo[key] for key in swept} for combo in combos]


def _sweep_values(overrides: Iterable[str]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for override in _parse(overrides):
        key = override.key_or_group
        if override.is_delete() or not is_compared(key):
            continue
        if override.is_sweep_override():
            values[key] = [_text(v) for v in override.sweep_iterator()]
        else:
            values[key] = [_text(override.value())]
    return values


def load_sweep(root: Path) -> Sweep:
    """Every job of a sweep (or any folder of runs): complete, failed, and missing ones."""
    root = Path(root)
    if not root.is_dir():
        raise HarnessError(f"harness-report: {root} is not a directory (expected a sweep folder of result.json files)")
    results = read_results(root)
    multirun_path = root / MULTIRUN_FILE
    jobs: list[Job] = []
    multirun: dict[str, Any] = {}
    if multirun_path.exists():
        from omegaconf import OmegaConf

        multirun = OmegaConf.to_container(OmegaConf.load(multirun_path), resolve=False)
        swept, expected = expected_jobs(multirun)
    else:
        swept, expected = _varying_keys(results), []
    seen: set[tuple] = set()
    for result in results:
        params = _job_params(result.get("overrides", []))
        params.setdefault("algorithm", str(result.get("algorithm")))
        params.setdefault("seed", str(result.get("seed")))
        params = {key: params[key] for key in swept if key in params} or params
        seen.add(tuple(sorted(params.items())))
        status = result.get("status", "complete")
        jobs.append(Job(params, status, result, Path(result["dir"]), result.get("error") or ""))
    unfinished = _unfinished_dirs(root, swept)
    for combo in expected:
        if (identity := tuple(sorted(combo.items()))) not in seen:
            folder = unfinished.get(identity)
            reason = f"no result.json in {folder.name}: killed or still running" if folder else "never started"
            jobs.append(Job(dict(combo), "missing", {}, folder, reason))
    jobs.sort(key=lambda job: _job_order(job, expected))
    if not jobs:
        raise HarnessError(f"harness-report: no {RESULT_FILE} under {root} and no {MULTIRUN_FILE} naming jobs")
    complete = [job for job in jobs if job.status == "complete"]
    config = complete[0].result.get("config", {}) if complete else {}
    experiment = next((job.result.get("experiment") for job in jobs if job.result), None) or root.parent.name
    baseline = recorded_baseline(multirun) or next(
        (found for job in jobs if job.dir is not None and (found := _job_baseline(job.dir))), None
    )
    return Sweep(root, jobs, swept or ["algorithm", "seed"], experiment, config, baseline)


REPORT_CALLBACK = "harness.callbacks.ReportCallback"


def recorded_baseline(hydra_record: Mapping[str, Any]) -> str | None:
    """The `baseline` of the report callback in a Hydra record (`multirun.yaml`, a job's `.hydra/hydra.yaml`)."""
    callbacks = (hydra_record.get("hydra") or {}).get("callbacks") or {}
    for callback in callbacks.values():
        if isinstance(callback, Mapping) and callback.get("_target_") == REPORT_CALLBACK and callback.get("baseline"):
            return str(callback["baseline"])
    return None


def _job_baseline(folder: Path) -> str | None:
    """The baseline a job's own Hydra record names (for a folder of runs without `multirun.yaml`)."""
    path = folder / ".hydra" / "hydra.yaml"
    if not path.exists():
        return None
    from omegaconf import OmegaConf

    return recorded_baseline(OmegaConf.to_container(OmegaConf.load(path), resolve=False))


def _job_order(job: Job, expected: list[dict[str, str]]) -> tuple[int, int, str]:
    """The order the sweep asked for the jobs in; else Hydra's job number (`12_ppo_seed0`), not the string order."""
    identity = tuple(sorted(job.params.items()))
    position = next((i for i, combo in enumerate(expected) if tuple(sorted(combo.items())) == identity), len(expected))
    name = job.dir.name if job.dir is not None else ""
    number = name.split("_", 1)[0]
    return position, int(number) if number.isdigit() else 1 << 30, name


def _varying_keys(results: list[dict[str, Any]]) -> list[str]:
    """Without `multirun.yaml`: the override keys whose values differ across jobs, plus algorithm and seed."""
    seen: dict[str, set[str]] = {}
    for result in results:
        for key, value in _job_params(result.get("overrides", [])).items():
            seen.setdefault(key, set()).add(value)
    varying = [key for key, values in seen.items() if len(values) > 1 and key not in ("algorithm", "seed")]
    return ["algorithm", "seed", *varying]


def _unfinished_dirs(root: Path, swept: list[str]) -> dict[tuple, Path]:
    """Job folders Hydra made (`<num>_<algorithm>_seed<N>`) that hold no result.json, by their swept values."""
    found: dict[tuple, Path] = {}
    for folder in sorted(path for path in root.iterdir() if path.is_dir()):
        if (folder / RESULT_FILE).exists() or not (folder / ".hydra" / "overrides.yaml").exists():
            continue
        from omegaconf import OmegaConf

        params = _job_params(OmegaConf.load(folder / ".hydra" / "overrides.yaml"))
        found[tuple(sorted((key, value) for key, value in params.items() if key in swept))] = folder
    return found


def training_history(job: Job) -> list[dict[str, float]]:
    """The training log of the job's own algorithm stage: copied into the job folder, else read from the cache."""
    import json

    candidates = []
    if job.dir is not None:
        candidates.append(job.dir / TRAIN_LOG_FILE)
    stage = job.result.get("stages", {}).get(job.result.get("algorithm", ""))
    if stage and stage.get("path"):
        candidates.append(Path(stage["path"]) / "log_history.jsonl")
    for path in candidates:
        if path.exists():
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return []

