"""`make bench`: every benchmark, then results/bench/summary.json and summary.md.

    python -m bench [--only overhead,ppo,demo] [--reps 3] [--ppo-episodes N]
    python -m bench gpu [...]    # the GPU check, on its own (bench/gpu.py; not part of `make bench`)

Each benchmark measures its baseline in the same invocation and reports ratios of medians (see each module).
About 45 minutes on 2 CPU cores: overhead ~23 (SFT, DPO, KTO, ORPO), PPO ~12 (the TRL 1.12 environment is made
once), demo ~8.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bench import demo, overhead, ppo
from bench.common import OUT, machine
from harness.io import atomic_write_json


def summary_keys(parts: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers: ratios against baselines from the same invocation, and the demo's wall time and how
    well it kept its cores busy (its packing ratio)."""
    keys: dict[str, Any] = {}
    for name, result in parts.get("overhead", {}).items():
        keys[f"harness_overhead_{name}"] = result["training_ratio"]
        keys[f"harness_overhead_{name}_process"] = result["process_ratio"]
        keys[f"harness_overhead_{name}_train_loop"] = result["train_loop_ratio"]
    if "ppo" in parts:
        keys["ppo_speedup_vs_trl112"] = parts["ppo"]["ppo_speedup_vs_trl112"]
        keys["ppo_peak_memory_ratio_vs_trl112"] = parts["ppo"]["peak_memory_ratio_vs_trl112"]
        for side in ("harness", "trl"):
            for metric in ("episodes_per_second", "gold_reward", "seq_kl"):
                keys[f"ppo_{side}_{metric}"] = parts["ppo"]["summary"][side][metric]
    if "demo" in parts:
        keys["demo_wall_s"] = parts["demo"]["demo_wall_s"]
        keys["demo_peak_rss_mb"] = parts["demo"]["peak_rss_mb"]
        if "packing_ratio" in parts["demo"]:  # a demo.json from before the ratio was measured has none
            for key in ("packing_ratio", "stage_compute_s", "cores"):
                keys[f"demo_{key}"] = parts["demo"][key]
    return keys


def markdown(keys: dict[str, Any], parts: dict[str, Any], info: dict[str, Any]) -> str:
    lines = [
        f"# Benchmarks ({info['finished_at']}, {info['machine']['cpus']} CPUs, torch {info['machine']['torch']})",
        "",
    ]
    lines += ["| key | value |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in keys.items()]
    for name, result in parts.get("overhead", {}).items():
        lines += [
            "",
            f"## Harness overhead: {name} (medians, seconds)",
            "",
            "| part | harness | plain TRL |",
            "|---|---|---|",
        ]
        plain = result["plain"]
        rows = [
            ("process", result["harness"]["process_s"], plain["process_s"]),
            ("startup (imports, Hydra)", result["harness"].get("startup_s"), plain.get("imported_s")),
            ("logger start (W&B offline)", result["harness"].get("logger_start_s"), None),
            ("cached stages", result["harness"].get("cached_stages_s"), None),
            ("training (imports, load, build, train, save)", result["harness"]["training_s"], plain["training_s"]),
            ("  trainer.train()", result["harness"]["train_runtime_s"], plain["train_runtime_s"]),
            ("evaluation", result["harness"].get("eval_s"), None),
            ("teardown (W&B finish, exit)", result["harness"].get("teardown_s"), None),
        ]
        rows += [(f"  {k[:-2]}", v, None) for k, v in result["harness"].items() if k.startswith("eval/")]
        lines += [f"| {part} | {fmt(h)} | {fmt(p)} |" for part, h, p in rows]
    if "ppo" in parts:
        lines += ["", "## PPO: harness vs TRL 1.12.0 PPOTrainer (same models, data, settings; medians / means)", ""]
        lines += [
            "| | episodes/s | train s | peak MB | gold reward | KL to SFT | grammatical |",
            "|---|---|---|---|---|---|---|",
        ]
        for side, s in parts["ppo"]["summary"].items():
            lines.append(
                f"| {side} | {s['episodes_per_second']:.1f} | {s['train_s']:.1f} | {s['peak_rss_mb']:.0f} | "
                f"{s['gold_reward']:.3f} ± {s['gold_reward_std']:.3f} | {s['seq_kl']:.2f} | {s['grammatical']:.3f} |"
            )
    if "demo" in parts:
        d = parts["demo"]
        lines += [
            "",
            f"## Demo: {d['demo_wall_s']:.0f} s, {d['jobs']} jobs, largest process {d['peak_rss_mb']:.0f} MB",
            "",
        ]
        if "packing_ratio" in d:
            lines += [
                f"Packing: wall / (stage compute / cores) = {d['wall_s']:.0f} / ({d['stage_compute_s']:.0f} / "
                f"{d['cores']}) = **{d['packing_ratio']:.3f}** (1.0: no core ever idle; see bench/demo.py)",
                "",
                "| core-seconds | s |",
                "|---|---|",
            ]
            lines += [f"| {part} | {seconds:.0f} |" for part, seconds in d["core_seconds"].items()]
            lines.append("")
        lines += ["| stage build | builds | total s | mean s |", "|---|---|---|---|"]
        for name, s in sorted(d["stage_builds"].items(), key=lambda kv: -kv[1]["total_s"]):
            lines.append(f"| {name} | {s['builds']} | {s['total_s']:.1f} | {s['mean_s']:.1f} |")
        lines += ["", "| evaluation part (all jobs) | total s |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in sorted(d["evaluation_total_s"].items())]
        lines += ["", "| algorithm | job s | eval s | gold reward |", "|---|---|---|---|"]
        for name, a in d["per_algorithm"].items():
            lines.append(
                f"| {name} | {a['job_s']:.1f} | {a['eval_s']:.1f} | {a.get('gold_reward', float('nan')):.3f} |"
            )
    return "\n".join(lines) + "\n"


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def main() -> None:
    if sys.argv[1:2] == ["gpu"]:
        from bench import gpu

        sys.exit(gpu.main(sys.argv[2:]))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="overhead,ppo,demo")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--ppo-episodes", type=int, default=None)
    args = parser.parse_args()
    started = time.perf_counter()
    chosen = args.only.split(",")
    parts: dict[str, Any] = {}
    if "overhead" in chosen:
        parts["overhead"] = overhead.main(["--reps", str(args.reps)])
    if "ppo" in chosen:
        episodes = ["--episodes", str(args.ppo_episodes)] if args.ppo_episodes else []
        parts["ppo"] = ppo.main(["--reps", str(args.reps), *episodes])
    if "demo" in chosen:
        parts["demo"] = demo.main([])
    for name in ("overhead", "ppo", "demo"):  # a part not run now keeps its last results
        if name not in parts and (OUT / f"{name}.json").exists():
            parts[name] = json.loads((OUT / f"{name}.json").read_text())
    info = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "bench_wall_s": time.perf_counter() - started,
        "machine": machine(),
    }
    keys = summary_keys(parts)
    atomic_write_json(OUT / "summary.json", {**keys, "info": info})
    (OUT / "summary.md").write_text(markdown(keys, parts, info))
    print((OUT / "summary.md").read_text())
    print(json.dumps(keys, indent=2))


if __name__ == "__main__":
    main()
