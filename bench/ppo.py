"""PPO: the harness's loop against TRL 1.12.0's PPOTrainer, on the same models, data, settings and machine.

    python -m bench.ppo [--reps 3] [--episodes N] [--threads 1]

1. Makes a virtual environment with TRL 1.12.0 (results/bench/venv-trl112; the same torch, transformers,
   accelerate and datasets as ours: only the PPO implementation differs) unless it is there already.
2. Builds (or reuses) the testbed's SFT policy and reward model of seed 0 in results/bench/cache.
3. Trains each implementation `reps` times, alternating which goes first, each in a fresh process with the
   same thread count, from the same SFT policy, reward model (also the value model's start), prompts and
   settings (conf/algorithm/ppo.yaml): batch, response length, epochs, minibatches, KL coefficient, LR.
4. Evaluates every trained policy as the harness does: the gold reward and KL to SFT of samples on the
   held-out prompts, with the evaluation's sampling settings.
Reports episodes per second, peak memory, gold reward and KL; writes results/bench/ppo.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench.common import OUT, PYTHON, REPO, bench_env, composed, last_json_line, make_run, median, run_timed
from harness.io import atomic_write_json

TRL_VERSION = "1.12.0"
VENV = OUT / "venv-trl112"
SAME_AS_OURS = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "safetensors", "huggingface-hub")


def pinned(names: tuple[str, ...]) -> list[str]:
    """`name==version` from constraints.txt for each of `names` (so both sides run the same libraries)."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    return [f"{name}=={pins[name]}" for name in names if name in pins]


def trl_venv() -> Path:
    """The TRL 1.12.0 environment's python, made once (about a minute: torch comes from the local wheel)."""
    python = VENV / "bin" / "python"
    stamp = VENV / f".trl-{TRL_VERSION}"
    if stamp.exists():
        return python
    print(f"bench ppo: making {VENV} with trl=={TRL_VERSION}", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([str(PYTHON), "-m", "venv", str(VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, f"trl=={TRL_VERSION}", *pinned(SAME_AS_OURS[1:])], check=True)
    stamp.touch()
    return python


def prepare(threads: int, episodes: int | None) -> tuple[dict[str, Any], Any]:
    """The SFT and reward-model stages of seed 0 (built once, cached), the prompts, and the PPO settings."""
    from harness.runner import build_plugin
    from plugins.algorithms.ppo import load_config

    overrides = [f"cache_dir={OUT / 'cache'}", "algorithm=ppo", "reward=learned", "logger=none", "seed=0"]
    with composed(overrides) as cfg:
        run = make_run(cfg, OUT / "ppo" / "prepare")
        algorithm = build_plugin(cfg.algorithm)
        sft = algorithm._sft(run)
        reward = run.reward()
        prompts = list(run.load_split("prompts")["prompt"])
        trainer = dataclasses.asdict(load_config(algorithm.trainer))
    if episodes is not None:
        trainer["total_episodes"] = episodes
    trainer.pop("cpu_threads")
    trainer.pop("save_every")
    prompts_path = OUT / "ppo" / "prompts.json"
    prompts_path.write_text(json.dumps(prompts))
    spec = {
        "sft_path": str(sft.path),
        "reward_path": str(reward.model_path),
        "prompts_path": str(prompts_path),
        "threads": threads,
        "trainer": trainer,
    }
    return spec, run


def evaluate(run: Any, policy_path: Path, reference_path: Path) -> dict[str, float]:
    """The policy as a harness job evaluates it: its samples on the held-out prompts (the evaluation's
    sampling settings), scored by the gold and kl suites (KL to `reference_path`, the SFT policy)."""
    from harness.generation import load_policy, sample_completions
    from harness.protocols import Policy
    from harness.runner import EvalContext, plain
    from plugins.evals.gold import GoldEval
    from plugins.evals.kl import KLEval

    settings = plain(run.cfg.generation)
    prompts = list(run.load_split("eval_prompts")["prompt"])
    model, tokenizer = load_policy(policy_path, "cpu")
    samples = sample_completions(model, tokenizer, prompts, settings, "cpu")
    context = EvalContext(
        prompts=prompts,
        completions=samples.completions,
        completion_tokens=samples.lengths,
        policy=Policy(path=policy_path, reference_path=reference_path),
        gold=run.task.gold(),
        device="cpu",
        generation=settings,
        run=run,
        completion_ids=samples.token_ids,
        model=model,
        tokenizer=tokenizer,
    )
    gold, kl = GoldEval().evaluate(context), KLEval().evaluate(context)
    return {"gold_reward": gold["reward"], "grammatical": gold["grammatical"], "seq_kl": kl["seq_kl"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=None, help="default: conf/algorithm/ppo.yaml")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each run (the harness default)")
    args = parser.parse_args(argv)
    trl_python = trl_venv()
    spec, run = prepare(args.threads, args.episodes)
    scripts = {
        "harness": (PYTHON, REPO / "bench" / "ppo_ours.py"),
        "trl": (trl_python, REPO / "bench" / "ppo_trl112.py"),
    }
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in scripts}
    for rep in range(args.reps):
        order = list(scripts) if rep % 2 == 0 else list(reversed(scripts))  # neither always runs first
        for name in order:
            python, script = scripts[name]
            out_dir = OUT / "ppo" / f"{name}-{rep}"
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir(parents=True)
            spec_path = out_dir / "spec.json"
            spec_path.write_text(json.dumps({**spec, "seed": rep, "out_dir": str(out_dir)}))
            # TRL's side must not see our repository: it runs on what its own environment has
            env = bench_env() if name == "harness" else {**bench_env(), "PYTHONPATH": ""}
            timed = run_timed([str(python), str(script), str(spec_path)], env=env, log=out_dir / "log.txt")
            report = last_json_line(timed.stdout)
            report.update(process_wall_s=timed.wall_s, process_peak_rss_mb=timed.peak_rss_mb, seed=rep)
            print(f"bench ppo: {name} rep {rep}: {report['episodes_per_second']:.1f} episodes/s", flush=True)
            runs[name].append(report)
    for reports in runs.values():  # after all timing, so evaluation never shares the CPU with a timed run
        for report in reports:
            report.update(evaluate(run, Path(report["policy_path"]), Path(spec["sft_path"])))
    summary = {name: summarise(reports) for name, reports in runs.items()}
    result = {
        "settings": {**spec["trainer"], "threads": args.threads, "reps": args.reps},
        "runs": runs,
        "summary": summary,
        "ppo_speedup_vs_trl112": summary["harness"]["episodes_per_second"] / summary["trl"]["episodes_per_second"],
        "peak_memory_ratio_vs_trl112": summary["harness"]["peak_rss_mb"] / summary["trl"]["peak_rss_mb"],
    }
    atomic_write_json(OUT / "ppo.json", result)
    return result


def summarise(reports: list[dict[str, Any]]) -> dict[str, float]:
    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in reports)

    return {
        "episodes_per_second": median([r["episodes_per_second"] for r in reports]),
        "train_s": median([r["train_s"] for r in reports]),
        "peak_rss_mb": median([r["peak_rss_mb"] for r in reports]),
        "episodes": reports[0]["episodes"],
        "gold_reward": mean("gold_reward"),
        "gold_reward_std": statistics.stdev([r["gold_reward"] for r in reports]) if len(reports) > 1 else 0.0,
        "seq_kl": mean("seq_kl"),
        "grammatical": mean("grammatical"),
        "train_kl": mean("train_kl"),
        "train_score": mean("train_score"),
    }


if __name__ == "__main__":
    print(json.dumps(main()["summary"], indent=2))
