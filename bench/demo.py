"""End to end: `make demo`'s sweep (`harness -m experiment=compare`) from a cold cache.

    python -m bench.demo

Runs the demo into results/bench/demo (its own, empty cache: every stage is built as on a fresh clone) and
reports its wall time and peak memory, where the time went (each stage build, sampling and each evaluation
suite, summed over jobs) and the gold reward per algorithm (a speed-up must not change what is measured).
Writes results/bench/demo.json.

How well the sweep kept its cores busy: `packing_ratio` = wall_s / (stage_compute_s / cores), 1.0 when no core was
ever idle. `cores`: the launcher's slots times each job's torch threads (cpu_threads). `stage_compute_s`: the
core-seconds of the sweep's work, what would take stage_compute_s / cores of wall time packed perfectly: every
stage built in the sweep, as the cores it held (stage.json `core_seconds`: its own, plus those jobs waiting for it
lent it, harness.cores) over its build, and every job's evaluation on its own cores. The rest of cores x wall_s is
itemised in `core_seconds`: jobs waiting without lending, loading cached stages and starting up; slots with no job
(between jobs, the sweep's tail); before the first job starts and after the last ends (launching, the report).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
from collections import defaultdict
from contextlib import suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import HARNESS, OUT, REPO, run_timed
from harness.io import atomic_write_json, read_json
from harness.results import Result
from harness.stages import META

FOLDER = OUT / "demo"


def breakdown(results: list[Result]) -> dict[str, Any]:
    """Seconds per stage build and per evaluation part, summed over the sweep's jobs."""
    stages: dict[str, list[float]] = defaultdict(list)
    evaluation: dict[str, float] = defaultdict(float)
    per_algorithm: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for result in results:
        cost = result.cost
        for name, seconds in cost.wall_s.items():
            if cost.built_now.get(name):
                stages[name].append(seconds)
            elif name.startswith("eval"):
                evaluation[name] += seconds
        per_algorithm[result.algorithm]["job_s"].append(cost.wall_s["job"])
        per_algorithm[result.algorithm]["eval_s"].append(cost.wall_s.get("eval", 0.0))
        per_algorithm[result.algorithm]["peak_memory_mb"].append(cost.peak_memory_mb)
        gold = result.metrics.get("eval/gold/reward")
        if gold is not None:
            per_algorithm[result.algorithm]["gold_reward"].append(gold)
    return {
        "stage_builds": {
            name: {"builds": len(v), "total_s": sum(v), "mean_s": statistics.fmean(v)} for name, v in stages.items()
        },
        "evaluation_total_s": dict(evaluation),
        "per_algorithm": {
            name: {key: statistics.fmean(values) for key, values in parts.items()}
            for name, parts in per_algorithm.items()
        },
    }


def job_cores(result: Result) -> int:
    """The cores a job computes on: its torch threads (cpu_threads; unset, one is counted)."""
    return int(result.config.get("cpu_threads") or 1)


def held_core_seconds(result: Result, name: str) -> float:
    """The core-seconds a stage the job built held: its stage.json `core_seconds`, else its seconds on the job's
    cores (a stage built before stages recorded them, or a cache since pruned)."""
    record = result.stages.get(name)
    if record is not None and record.path:
        meta = Path(record.path) / META
        with suppress(OSError, ValueError, TypeError):
            held = read_json(meta if meta.is_absolute() else REPO / meta).get("core_seconds")
            if held is not None:
                return float(held)
    return float(result.cost.wall_s.get(name, 0.0)) * job_cores(result)


def packing(results: list[Result], wall_s: float, cores: int) -> dict[str, Any]:
    """How the sweep's cores x wall_s went: its work (`stage_compute_s`) and the rest, itemised (module docstring)."""
    compute = lent = other = in_jobs = 0.0
    for result in results:
        cores_of_job = job_cores(result)
        wall = result.cost.wall_s
        built = [name for name, now in result.cost.built_now.items() if now]
        build_s = sum(float(wall.get(name, 0.0)) for name in built)
        held = sum(held_core_seconds(result, name) for name in built)
        evaluation = float(wall.get("eval", 0.0)) + float(wall.get("eval/snapshots", 0.0))
        compute += held + evaluation * cores_of_job
        lent += held - build_s * cores_of_job  # cores other jobs lent while they waited: counted in compute
        job_s = float(wall.get("job", 0.0))
        other += (job_s - build_s - evaluation) * cores_of_job
        in_jobs += job_s * cores_of_job
    times = [(datetime.fromisoformat(r.started_at), datetime.fromisoformat(r.finished_at))
             for r in results if r.started_at and r.finished_at]  # fmt: skip
    span = (max(end for _, end in times) - min(start for start, _ in times)).total_seconds() if times else wall_s
    return {
        "cores": cores,
        "wall_s": wall_s,
        "stage_compute_s": compute,
        "packing_ratio": wall_s / (compute / cores) if compute else float("nan"),
        "core_seconds": {
            "capacity (cores x wall)": cores * wall_s,
            "work (stage_compute_s)": compute,
            "of which lent by waiting jobs": lent,
            "jobs waiting (not lent), loading, starting": other - lent,
            "slots with no job (between jobs, the tail)": cores * span - in_jobs,
            "before the first job and after the last": cores * (wall_s - span),
        },
    }


def sweep_cores(folder: Path, results: list[Result]) -> int:
    """The sweep's cores: its launcher's slots (multirun.yaml `hydra.launcher.n_jobs`; 1 without) times each job's
    torch threads, at most this machine's."""
    from omegaconf import OmegaConf

    slots = 1
    for record in folder.glob("sweeps/*/*/multirun.yaml"):
        slots = int(OmegaConf.load(record).hydra.launcher.get("n_jobs") or 1)
    threads = max((job_cores(r) for r in results), default=1)
    return min(slots * threads, os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides (e.g. hydra.launcher.n_jobs=4)")
    args = parser.parse_args(argv)
    shutil.rmtree(FOLDER, ignore_errors=True)
    timed = run_timed(
        [str(HARNESS), "-m", "experiment=compare", f"results_dir={FOLDER}", *args.overrides], log=FOLDER / "log.txt"
    )
    results = [Result.read(path) for path in sorted(FOLDER.glob("sweeps/*/*/*/result.json"))]
    failed = [r.name for r in results if r.status != "complete"]
    if failed or (len(results) != 18 and not args.overrides):
        raise RuntimeError(f"the demo sweep did not complete: {len(results)} results, failed: {failed}")
    summary = {
        "demo_wall_s": timed.wall_s,
        "peak_rss_mb": timed.peak_rss_mb,  # the largest single process (a job's worker)
        "jobs": len(results),
        **packing(results, timed.wall_s, sweep_cores(FOLDER, results)),
        **breakdown(results),
    }
    atomic_write_json(OUT / "demo.json", summary)
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
