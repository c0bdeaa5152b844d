"""Where PPO's time goes, for either implementation: cProfile over a short run, grouped by what the time is for.

    python -m bench.profile_ppo [--impl harness|trl] [--episodes 512]

Uses the same spec (models, prompts, settings) as bench/ppo.py. Prints the functions with the most cumulative
time and a grouping into generation, forward passes without gradient (reference, value, reward), the PPO
update (forward + backward + optimizer) and the rest; writes the raw profile to results/bench/profile-<impl>.prof
(open it with `python -m pstats` or snakeviz).
"""

from __future__ import annotations

import argparse
import json
import pstats
import shutil

from bench.common import OUT, PYTHON, REPO, bench_env, run_timed
from bench.ppo import prepare, trl_venv

# (group, function name, file fragment): cumulative time of these functions, outermost first
GROUPS = {
    "harness": [
        ("generation", "sample_responses", "algorithms/ppo/"),
        ("reward model", "__call__", "learned.py"),
        ("update: backward", "backward", "accelerator.py"),
        ("update: optimizer", "step", "optimizer.py"),
        ("forwards (policy, reference, value, update)", "response_logits", "algorithms/ppo/"),
        ("forwards (policy, reference, value, update)", "response_values", "algorithms/ppo/"),
    ],
    "trl": [
        ("generation", "batch_generation", "ppo_trainer.py"),
        ("reward and value forwards", "get_reward", "utils.py"),
        ("reference and update forwards", "forward", "ppo_trainer.py"),
        ("update: backward", "backward", "accelerator.py"),
        ("update: optimizer", "step", "optimizer.py"),
    ],
}


def grouped(stats: pstats.Stats, impl: str) -> dict[str, float]:
    total = max(entry[3] for entry in stats.stats.values())  # the outermost cumulative time
    groups: dict[str, float] = {"total": total}
    for group, name, fragment in GROUPS[impl]:
        seconds = sum(entry[3] for (path, _, func), entry in stats.stats.items() if func == name and fragment in path)
        groups[group] = groups.get(group, 0.0) + seconds
    return groups


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=("harness", "trl"), default="harness")
    parser.add_argument("--episodes", type=int, default=512)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    spec, _ = prepare(1, args.episodes)
    out_dir = OUT / "profile" / args.impl
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    spec_path = out_dir / "spec.json"
    spec_path.write_text(json.dumps({**spec, "seed": 0, "out_dir": str(out_dir)}))
    python = PYTHON if args.impl == "harness" else trl_venv()
    script = REPO / "bench" / ("ppo_ours.py" if args.impl == "harness" else "ppo_trl112.py")
    env = bench_env() if args.impl == "harness" else {**bench_env(), "PYTHONPATH": ""}
    profile = OUT / f"profile-{args.impl}.prof"
    run_timed([str(python), "-m", "cProfile", "-o", str(profile), str(script), str(spec_path)], env=env)
    stats = pstats.Stats(str(profile))
    stats.sort_stats("cumulative").print_stats(args.top)
    groups = grouped(stats, args.impl)
    print(json.dumps(groups, indent=2))
    return groups


if __name__ == "__main__":
    main()
