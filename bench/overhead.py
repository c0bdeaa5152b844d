"""Harness overhead: `harness algorithm=sft|dpo` against the same TRL trainer in a plain script.

    python -m bench.overhead [--reps 3] [--algorithms sft,dpo] [--threads 1]

Both sides start from the same cached stages (the base model and data for SFT; the SFT policy and preference
pairs for DPO: one-time builds, excluded), use the same trainer settings (the harness's resolved
`algorithm.trainer`), seed and thread count, and run alternately in fresh processes. The harness rebuilds the
trained stage every time (its cache entry is removed first). Reported, as medians:
  training ratio   the harness's stage build (trainer imports, load, build, train, save, curves) / the same
                   span of the plain script (after torch/transformers/datasets are imported, which the harness
                   does at start-up): `harness_overhead_<algorithm>`
  train-loop ratio `trainer.train()` alone, as TRL times it (train_runtime)
  process ratio    the harness process without evaluation / the plain script's process
and where the harness's time goes: startup (imports, Hydra), logger (W&B offline run), cached stages, training,
evaluation (sampling and each suite), teardown (W&B finish, exit). Writes results/bench/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
from typing import Any

from bench.common import HARNESS, OUT, PYTHON, REPO, composed, last_json_line, make_run, median, run_timed
from harness.io import atomic_write_json
from harness.results import Result

CACHE = OUT / "cache"


def prepare(algorithm: str, threads: int) -> tuple[dict[str, Any], list[str]]:
    """The inputs of the trained stage (built once), the plain script's spec and the harness command line."""
    from harness.runner import build_plugin, plain

    overrides = [f"algorithm={algorithm}", "seed=0", f"cache_dir={CACHE}", f"cpu_threads={threads}"]
    with composed([*overrides, "logger=none"]) as cfg:
        run = make_run(cfg, OUT / "overhead" / "prepare")
        # the TRL-backed node that trains: the algorithm itself, or (algorithm=sft) the SFT it evaluates
        node = cfg.algorithm if "trainer_class" in cfg.algorithm else cfg.algorithm.init
        method = build_plugin(node)
        start = method.start(run)
        if method.data == "demonstrations":
            data_path = run.datasets().path
        else:
            source = method.pairs_from if method.pairs_from is not None else method.init
            data_path = run.preferences(source.stage(run)).path
        spec = {
            "algorithm": algorithm,
            "trainer_class": method.trainer_class,
            "data": method.data,
            "reference_model": method.reference_model,
            "model_path": str(start.path),
            "data_path": str(data_path),
            "trainer": plain(node.trainer),
            "seed": 0,
            "threads": threads,
        }
    return spec, overrides


def harness_breakdown(result: Result, process_wall: float, algorithm: str) -> dict[str, float]:
    """Where a harness job's time went, from its result.json and the process's wall time."""
    wall = result.cost.wall_s
    eval_parts = {k: v for k, v in wall.items() if k.startswith("eval/")}
    return {
        "process_s": process_wall,
        "startup_s": wall["startup"],
        "logger_start_s": wall["logger"],
        # looking up the cached stages (data, base model; SFT and pairs for DPO) and building the trainer's inputs
        "cached_stages_s": wall["train_job"] - wall[algorithm],
        "training_s": wall[algorithm],
        "eval_s": wall["eval"],
        **{f"{k}_s": v for k, v in eval_parts.items()},
        "teardown_s": process_wall - wall["startup"] - wall["job"],
        "train_runtime_s": result.stages[algorithm].metrics["train_runtime_s"],
    }


def bench_algorithm(algorithm: str, reps: int, threads: int) -> dict[str, Any]:
    spec, overrides = prepare(algorithm, threads)
    folder = OUT / "overhead" / algorithm
    shutil.rmtree(folder, ignore_errors=True)
    harness_runs, plain_runs = [], []
    for rep in range(reps):
        for side in ("harness", "plain") if rep % 2 == 0 else ("plain", "harness"):
            out = folder / f"{side}-{rep}"
            if side == "plain":
                out.mkdir(parents=True)
                (out / "spec.json").write_text(json.dumps({**spec, "out_dir": str(out / "model")}))
                timed = run_timed([str(PYTHON), str(REPO / "bench" / "plain_trl.py"), str(out / "spec.json")])
                report = last_json_line(timed.stdout)
                plain_runs.append({**report, "process_s": timed.wall_s, "process_peak_rss_mb": timed.peak_rss_mb})
            else:
                shutil.rmtree(CACHE / algorithm, ignore_errors=True)  # the stage is trained again, every time
                timed = run_timed([str(HARNESS), *overrides, f"results_dir={out}"], log=out / "log.txt")
                result = Result.read(next(out.glob("runs/*/result.json")))
                harness_runs.append(
                    {
                        **harness_breakdown(result, timed.wall_s, algorithm),
                        "process_peak_rss_mb": timed.peak_rss_mb,
                        "loss": result.stages[algorithm].metrics.get("loss"),
                        "global_step": result.stages[algorithm].metrics["global_step"],
                    }
                )
            print(f"bench overhead: {algorithm} {side} rep {rep}: {timed.wall_s:.1f} s", flush=True)
    keys = [k for k in harness_runs[0] if k.endswith("_s")]
    harness = {k: median([r[k] for r in harness_runs if k in r]) for k in keys}
    plain_keys = [k for k in plain_runs[0] if k.endswith("_s")]
    plain_medians = {k: median([r[k] for r in plain_runs]) for k in plain_keys}
    return {
        "harness": harness,
        "plain": plain_medians,
        "harness_runs": harness_runs,
        "plain_runs": plain_runs,
        "same_steps": all(r["global_step"] == plain_runs[0]["global_step"] for r in [*harness_runs, *plain_runs]),
        "training_ratio": harness["training_s"] / plain_medians["training_s"],
        "train_loop_ratio": harness["train_runtime_s"] / plain_medians["train_runtime_s"],
        "process_ratio": (harness["process_s"] - harness["eval_s"]) / plain_medians["process_s"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--algorithms", default="sft,dpo,kto,orpo")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    results = {name: bench_algorithm(name, args.reps, args.threads) for name in args.algorithms.split(",")}
    atomic_write_json(OUT / "overhead.json", results)
    return results


if __name__ == "__main__":
    summary = main()
    print(json.dumps({name: {k: v for k, v in r.items() if k.endswith("ratio")} for name, r in summary.items()}))
