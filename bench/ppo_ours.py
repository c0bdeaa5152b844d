"""PPO with the harness's own loop (plugins/algorithms/ppo/), on what bench/ppo_trl112.py gets: the same SFT
and reward-model folders, prompts, settings and thread count. Run in a fresh process, as TRL's is:
    python bench/ppo_ours.py SPEC.json
The last stdout line is a JSON report. Like TRL, it does not score rollouts with the gold reward as it trains
(the harness does, to draw over-optimisation; that costs little, but it is work TRL does not do).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from common import peak_rss_mb  # bench/common.py: this script's folder is on sys.path


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    started = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM

    from harness.api import TrainingStage
    from harness.protocols import Reward
    from harness.runner import torch_threads
    from harness.training import MetricsRecorder
    from plugins.algorithms.ppo import load_config, train_ppo
    from plugins.loggers.none import NoLogger
    from plugins.rewards.learned import RewardModelFn

    torch.set_num_threads(spec["threads"])
    imported = time.perf_counter()
    config = load_config({**spec["trainer"], "cpu_threads": spec["threads"]})
    reward_path = Path(spec["reward_path"])
    reward = Reward(name="learned", fn=RewardModelFn(reward_path, "cpu"), is_gold=False, model_path=reward_path)
    prompts = json.loads(Path(spec["prompts_path"]).read_text())
    out_dir = Path(spec["out_dir"]) / "policy"
    recorder = MetricsRecorder(NoLogger(), "train", out_dir / "log_history.jsonl")
    # TRL's clock starts after its models are loaded; train_ppo loads its own, so load one here first: the
    # one-time imports that brings (~2 s, transformers resolves model classes lazily) stay off our clock too
    AutoModelForCausalLM.from_pretrained(spec["sft_path"], use_safetensors=True)
    ready = time.perf_counter()
    with torch_threads(spec["threads"]):
        metrics = train_ppo(
            config,
            TrainingStage.outside_a_run(out_dir, Path(spec["sft_path"])),
            reward=reward,
            prompts=prompts,
            recorder=recorder,
            device="cpu",
            seed=spec["seed"],
        )
    trained = time.perf_counter()
    print(
        json.dumps(
            {
                "implementation": "harness",
                "episodes": metrics["episodes"],
                "updates": metrics["updates"],
                "train_s": trained - ready,
                "setup_s": ready - imported,
                "import_s": imported - started,
                "episodes_per_second": metrics["episodes"] / (trained - ready),
                "peak_rss_mb": peak_rss_mb(),
                "train_kl": metrics["kl"],
                "train_score": metrics["score"],
                "policy_path": str(out_dir),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
