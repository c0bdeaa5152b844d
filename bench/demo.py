"""End to end: `make demo`'s sweep (`harness -m experiment=compare`) from a cold cache.

    python -m bench.demo

Runs the demo into results/bench/demo (its own, empty cache: every stage is built as on a fresh clone) and
reports its wall time and peak memory, where the time went (each stage build, sampling and each evaluation
suite, summed over jobs) and the gold reward per algorithm (a speed-up must not change what is measured).
Writes results/bench/demo.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from collections import defaultdict
from typing import Any

from bench.common import HARNESS, OUT, run_timed
from harness.io import atomic_write_json
from harness.results import Result

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
        **breakdown(results),
    }
    atomic_write_json(OUT / "demo.json", summary)
    return summary


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))
