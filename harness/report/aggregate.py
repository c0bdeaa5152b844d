"""Read a sweep back from its folders and put numbers on it: groups, means, intervals, differences between groups,
their Holm-adjusted p-values, and how many seeds a difference of a given size would need.

A sweep directory holds one folder per job with a `result.json` (complete or failed) and Hydra's
`multirun.yaml`, which says which jobs were asked for. Jobs asked for but without a result (killed, still
running, never started) are reported as missing, never silently dropped.

Intervals on bounded metrics. A suite may declare a metric's `bounds` (harness/declarations.py); its Student-t
interval is then intersected with them, and a difference's with [low - high, high - low]. The true mean lies
inside the bounds, so removing values outside them removes no value the interval could rightly cover: the
coverage is unchanged, the interval only stops claiming the impossible (a KL below 0, a rate above 1). Only an
estimate itself outside the bounds (`clip`) keeps its interval reaching to it. A transform
(logit, log) was the other choice; it fails at the bounds themselves (a rate of 1.0 on every seed, a KL estimate
at or below 0) and changes what is estimated (the mean of logits, not the mean rate). Without declared bounds a
metric keeps its plain t-interval: nothing is inferred.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from harness.errors import HarnessError
from harness.results import RESULT_FILE, TRAIN_LOG_FILE, Result, is_compared, read_all

CONFIDENCE = 0.95
ALPHA = 0.05  # significance level of the pairwise tests (Holm family-wise) and of the seeds-needed calculation
POWER = 0.8  # the power the seeds-needed calculation asks for
MAX_SEEDS = 1000  # seeds needed beyond this are reported as "more than"
MULTIRUN_FILE = "multirun.yaml"

Bounds = tuple[float | None, float | None]  # (low, high); None: unbounded on that side


@dataclass
class Job:
    """One job of the sweep: its swept values and, when it finished, its result."""

    params: dict[str, str]  # swept key -> value, seed included
    status: str  # complete | failed | missing
    result: Result | None = None  # None: missing (no result.json)
    dir: Path | None = None
    reason: str = ""  # why a job failed or is missing

    @property
    def seed(self) -> str:
        if "seed" in self.params:
            return self.params["seed"]
        return "" if self.result is None or self.result.seed is None else str(self.result.seed)

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics if self.result is not None else {}


@dataclass
class Summary:
    """One metric over the seeds of one group: mean, standard deviation and a t-interval for the mean (intersected
    with the metric's bounds, if it declares them: `clipped` says whether that moved an end)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    values: list[float]
    clipped: bool = False


@dataclass
class Difference:
    """A group minus another: mean difference, its t-interval (within the bounds a difference can take) and the
    two-sided p-value. `test`: "paired" (by seed; `n` pairs) or "Welch" (unpaired; `n` jobs in all)."""

    n: int
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str = "paired"
    clipped: bool = False


Paired = Difference  # the name `paired()` has always returned


@dataclass
class Group:
    label: str  # "<algorithm>", or "<algorithm> kl_beta=0.1" when a sweep varies more than algorithm and seed
    algorithm: str
    params: dict[str, str]  # swept values other than algorithm and seed
    jobs: list[Job]
    bounds: dict[str, Bounds] = field(default_factory=dict)  # metric key -> declared bounds (the comparison's)

    @property
    def complete(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "complete"]

    def values(self, metric: str) -> dict[str, float]:
        """Seed -> value of `metric` over the complete jobs that report it."""
        return {
            job.seed: float(job.metrics[metric])
            for job in self.complete
            if metric in job.metrics and finite(job.metrics[metric])
        }

    def summary(self, metric: str) -> Summary | None:
        values = list(self.values(metric).values())
        return summarise(values, bounds=self.bounds.get(metric)) if values else None


def finite(value: Any) -> bool:
    """A finite number (a bool is a verdict, not a number to average or plot)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def clip(low: float, high: float, bounds: Bounds | None, estimate: float) -> tuple[float, float, bool]:
    """The interval around `estimate` intersected with `bounds`, and whether that moved an end. An estimate of a
    mean within the bounds keeps the interval inside them. An estimate outside them (a k1 KL can fall below 0; a
    wrong declaration puts one there too, and the caption counts such values) stays inside its interval, which
    then reaches from the estimate to the nearest bound: every reader of an interval (tables, error bars) may
    rely on low <= estimate <= high."""
    if bounds is None or math.isnan(low):
        return low, high, False
    lower = -math.inf if bounds[0] is None else float(bounds[0])
    upper = math.inf if bounds[1] is None else float(bounds[1])
    new_low = min(max(low, lower), upper, estimate)
    new_high = max(min(high, upper), lower, estimate)
    return new_low, new_high, (new_low, new_high) != (low, high)


def difference_bounds(bounds: Bounds | None) -> Bounds | None:
    """The values a difference of two means within `bounds` can take: [low - high, high - low] (unbounded where
    either side is)."""
    if bounds is None or None in bounds:
        return None
    low, high = bounds
    return (low - high, high - low)


@functools.lru_cache(maxsize=512)
def _t_quantiles(confidence: float, df: float) -> tuple[float, float]:
    return float(stats.t.ppf((1.0 - confidence) / 2, df)), float(stats.t.ppf((1.0 + confidence) / 2, df))


def t_interval(confidence: float, df: float, loc: float, scale: float) -> tuple[float, float]:
    """scipy's `stats.t.interval(confidence, df, loc, scale)`, the same arithmetic (quantile * scale + loc), with the
    quantiles cached: the frontiers summarise at hundreds of KLs."""
    low, high = _t_quantiles(confidence, df)
    return low * scale + loc, high * scale + loc


def summarise(values: Sequence[float], confidence: float = CONFIDENCE, bounds: Bounds | None = None) -> Summary:
    """Mean, sample standard deviation and the Student-t interval for the mean, intersected with `bounds` when
    given (module docstring); NaN interval for one value."""
    data = np.asarray(values, dtype=float)
    n, mean = len(data), float(data.mean())
    if n < 2:
        return Summary(n, mean, math.nan, math.nan, math.nan, list(map(float, data)))
    std = float(data.std(ddof=1))
    low, high = t_interval(confidence, n - 1, mean, std / math.sqrt(n)) if std > 0 else (mean, mean)
    low, high, clipped = clip(float(low), float(high), bounds, mean)
    return Summary(n, mean, std, low, high, list(map(float, data)), clipped)


def paired(
    group: Mapping[str, float],
    baseline: Mapping[str, float],
    confidence: float = CONFIDENCE,
    bounds: Bounds | None = None,
) -> Difference | None:
    """Difference group - baseline over the seeds both have (a paired t-test: seeds share data and starting policy).
    `bounds`: the metric's, so the interval stays within what a difference can be."""
    seeds = sorted(set(group) & set(baseline))
    if not seeds:
        return None
    diffs = np.array([group[seed] - baseline[seed] for seed in seeds])
    n, mean = len(diffs), float(diffs.mean())
    if n < 2:
        return Difference(n, mean, math.nan, math.nan, math.nan)
    sem = float(diffs.std(ddof=1)) / math.sqrt(n)
    if sem == 0:
        return Difference(n, mean, mean, mean, 0.0 if mean != 0 else 1.0)
    low, high = t_interval(confidence, n - 1, mean, sem)
    p_value = float(stats.ttest_1samp(diffs, 0.0).pvalue)
    low, high, clipped = clip(float(low), float(high), difference_bounds(bounds), mean)
    return Difference(n, mean, low, high, p_value, "paired", clipped)


def welch(
    group: Mapping[str, float],
    other: Mapping[str, float],
    confidence: float = CONFIDENCE,
    bounds: Bounds | None = None,
) -> Difference | None:
    """Difference of means group - other without pairing (Welch's t-test: unequal variances, Welch-Satterthwaite
    degrees of freedom). NaN interval and p-value unless both have two values or more."""
    a, b = np.asarray(list(group.values()), float), np.asarray(list(other.values()), float)
    if len(a) == 0 or len(b) == 0:
        return None
    n, mean = len(a) + len(b), float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return Difference(n, mean, math.nan, math.nan, math.nan, "Welch")
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    sem = math.sqrt(va + vb)
    if sem == 0:
        return Difference(n, mean, mean, mean, 0.0 if mean != 0 else 1.0, "Welch")
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    low, high = t_interval(confidence, df, mean, sem)
    p_value = float(2 * stats.t.sf(abs(mean) / sem, df))
    low, high, clipped = clip(float(low), float(high), difference_bounds(bounds), mean)
    return Difference(n, mean, low, high, p_value, "Welch", clipped)


def difference(
    group: Mapping[str, float], other: Mapping[str, float], bounds: Bounds | None = None
) -> Difference | None:
    """group - other: paired by seed when both have the same seeds (two or more), else Welch on all their values
    (a seed that failed in one group would otherwise drop its partner from the other)."""
    if set(group) == set(other) and len(group) >= 2:
        return paired(group, other, bounds=bounds)
    return welch(group, other, bounds=bounds)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given (Holm 1979). Sort the m p-values ascending; the k-th
    smallest (k = 1..m) becomes (m - k + 1) p_(k), then the running maximum of those in sorted order, capped at 1.
    Rejecting where the adjusted p <= alpha is Holm's step-down test. NaN (no test possible) stays NaN and is not
    counted in m."""
    tested = sorted((p, index) for index, p in enumerate(p_values) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for k, (p, index) in enumerate(tested):
        running = max(running, min(1.0, (m - k) * p))
        adjusted[index] = running
    return adjusted


def power(n: int, effect: float, alpha: float = ALPHA, design: str = "paired") -> float:
    """Power of the two-sided t-test at level `alpha` for a standardised effect (difference / s.d.): "paired", n
    pairs (one-sample t on the differences: df n - 1, noncentrality effect sqrt(n)); "two-sample", n per group
    (df 2n - 2, noncentrality effect sqrt(n / 2)). From the noncentral t distribution."""
    df, noncentrality = (n - 1, effect * math.sqrt(n)) if design == "paired" else (2 * n - 2, effect * math.sqrt(n / 2))
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality))


def seeds_needed(
    sd: float, delta: float, alpha: float = ALPHA, target: float = POWER, design: str = "paired"
) -> int | None:
    """The fewest seeds (pairs, or per group for "two-sample") for which a two-sided t-test at `alpha` detects a
    true difference `delta` with power `target`, given the seed s.d. `sd` (of the paired differences, or within a
    group). Starts from the normal approximation n = ((z_{1-alpha/2} + z_power) sd / delta)^2 and steps to the
    exact answer under the noncentral t. None: more than MAX_SEEDS, or undefined (sd or delta not positive)."""
    if not (sd > 0 and delta > 0) or math.isnan(sd) or math.isnan(delta):
        return None
    effect = abs(delta) / sd
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(target)
    n = max(2, math.ceil((z / effect) ** 2 * (1 if design == "paired" else 2)))
    if n > MAX_SEEDS:
        return None
    while n > 2 and power(n - 1, effect, alpha, design) >= target:
        n -= 1
    while power(n, effect, alpha, design) < target:
        n += 1
        if n > MAX_SEEDS:
            return None
    return n


# -- reading the sweep ------------------------------------------------------------------------------------
@dataclass
class Sweep:
    root: Path
    jobs: list[Job]
    swept: list[str]  # keys that vary across jobs, in the order the sweep named them
    experiment: str
    config: dict[str, Any]  # the config of one complete job (for W&B project, generation settings, ...)
    baseline: str | None = None  # the group the sweep was to be compared with (its report callback's `baseline`)
    kl_budgets: list[float] | None = None  # KL budgets the report callback was given (None: the report's defaults)
    # the report callback's `fits`: algorithm -> over-optimisation form (harness/report/fits.py); None: no fits
    fits: dict[str, str] | None = None

    @property
    def groups(self) -> list[Group]:
        # a method (conf/method/: an algorithm with the groups it needs, e.g. PPO-GT) names its group as an
        # algorithm does: by the algorithm's own name, not as a setting beside it
        grouping = [key for key in self.swept if key not in ("algorithm", "seed", "method", "+method")]
        groups: dict[tuple, Group] = {}
        for job in self.jobs:
            recorded = job.result.algorithm if job.result is not None else None
            algorithm = job.params.get("algorithm") or recorded or "?"
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
    results = read_all(root)
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
        params = _job_params(result.overrides)
        params.setdefault("algorithm", str(result.algorithm))
        params.setdefault("seed", str(result.seed))
        params = {key: params[key] for key in swept if key in params} or params
        seen.add(tuple(sorted(params.items())))
        jobs.append(Job(params, result.status, result, result.dir, result.error or ""))
    unfinished = _unfinished_dirs(root, swept)
    for combo in expected:
        if (identity := tuple(sorted(combo.items()))) not in seen:
            folder = unfinished.get(identity)
            reason = f"no result.json in {folder.name}: killed or still running" if folder else "never started"
            jobs.append(Job(dict(combo), "missing", None, folder, reason))
    jobs.sort(key=lambda job: _job_order(job, expected))
    if not jobs:
        raise HarnessError(f"harness-report: no {RESULT_FILE} under {root} and no {MULTIRUN_FILE} naming jobs")
    complete = [job for job in jobs if job.status == "complete"]
    config = complete[0].result.config if complete else {}
    experiment = next((job.result.experiment for job in jobs if job.result is not None), None) or root.parent.name
    baseline = recorded_baseline(multirun) or next(
        (found for job in jobs if job.dir is not None and (found := _job_baseline(job.dir))), None
    )
    kl_budgets = parse_kl_budgets(recorded_callback_setting(multirun, "kl_budgets"))
    fits = recorded_callback_setting(multirun, "fits")
    fits = {str(k): str(v) for k, v in fits.items()} if isinstance(fits, Mapping) else None
    return Sweep(root, jobs, swept or ["algorithm", "seed"], experiment, config, baseline, kl_budgets, fits)


REPORT_CALLBACK = "harness.callbacks.ReportCallback"


def parse_kl_budgets(value: Any) -> list[float] | None:
    """KL budgets as given on the command line ("0.5,1,2"), in a config (a list) or not at all (None). One line
    naming the value when one is not a positive number of nats."""
    if value is None or value == "" or value == []:
        return None
    items: Iterable[Any]
    if isinstance(value, str):
        items = [item for item in value.strip().strip("[]").split(",") if item.strip()]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, Iterable) and not isinstance(value, Mapping):
        items = list(value)
    else:
        items = [value]  # refused below
    budgets = []
    for item in items:
        try:
            budget = float(item)
        except (TypeError, ValueError):
            budget = math.nan
        if isinstance(item, bool) or not math.isfinite(budget) or budget <= 0:
            raise HarnessError(f"kl_budgets={value!r}: expected positive KL budgets in nats, e.g. 0.5,1,2")
        budgets.append(budget)
    return sorted(set(budgets)) or None


def recorded_baseline(hydra_record: Mapping[str, Any]) -> str | None:
    """The `baseline` of the report callback in a Hydra record (`multirun.yaml`, a job's `.hydra/hydra.yaml`)."""
    baseline = recorded_callback_setting(hydra_record, "baseline")
    return str(baseline) if baseline else None


def recorded_callback_setting(hydra_record: Mapping[str, Any], key: str) -> Any:
    """A setting of the report callback in a Hydra record (None where it has none)."""
    callbacks = (hydra_record.get("hydra") or {}).get("callbacks") or {}
    for callback in callbacks.values():
        if isinstance(callback, Mapping) and callback.get("_target_") == REPORT_CALLBACK and callback.get(key):
            return callback[key]
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


def _varying_keys(results: list[Result]) -> list[str]:
    """Without `multirun.yaml`: the override keys whose values differ across jobs, plus algorithm and seed."""
    seen: dict[str, set[str]] = {}
    for result in results:
        for key, value in _job_params(result.overrides).items():
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
    stage = job.result.stages.get(job.result.algorithm or "") if job.result is not None else None
    if stage and stage.path:
        candidates.append(Path(stage.path) / "log_history.jsonl")
    for path in candidates:
        if path.exists():
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return []
