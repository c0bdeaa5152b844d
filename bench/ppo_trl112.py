"""PPO with TRL 1.12.0's PPOTrainer (`trl.experimental.ppo`, the last release that had it), as its docs set it up.

Runs in its own virtual environment (bench/ppo.py makes it), so it imports nothing of the harness:
    python bench/ppo_trl112.py SPEC.json
SPEC holds the SFT and reward-model folders (the testbed's cached stages), the prompts, our PPO settings and
where to save the policy; the last stdout line is a JSON report (training seconds, episodes, peak memory).
Our settings map one to one onto PPOConfig; where TRL has no such setting it says so in the report.
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
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    torch.set_num_threads(spec["threads"])
    ours = spec["trainer"]
    imported = time.perf_counter()

    tokenizer = AutoTokenizer.from_pretrained(spec["sft_path"])
    tokenizer.padding_side = "left"  # queries flush against responses
    prompts = json.loads(Path(spec["prompts_path"]).read_text())
    encode = lambda rows: {"input_ids": tokenizer(rows["prompt"])["input_ids"]}  # noqa: E731
    dataset = Dataset.from_dict({"prompt": prompts}).map(encode, batched=True, remove_columns=["prompt"])
    eval_dataset = dataset.select(range(min(len(dataset), ours["batch_size"])))

    args = PPOConfig(
        output_dir=spec["out_dir"],
        seed=spec["seed"],
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        num_sample_generations=0,  # no sampled tables during training
        # the batch: batch_size prompts per update, split into num_minibatches optimizer steps per epoch
        total_episodes=ours["total_episodes"],
        # TRL's rollout batch is per_device_train_batch_size x gradient_accumulation_steps; with accumulation 1
        # each minibatch is one optimizer step, as in ours (accumulation > 1 would step once per several)
        per_device_train_batch_size=ours["batch_size"],
        gradient_accumulation_steps=1,
        num_mini_batches=ours["num_minibatches"],
        local_rollout_forward_batch_size=ours["batch_size"],
        num_ppo_epochs=ours["ppo_epochs"],
        learning_rate=ours["learning_rate"],
        lr_scheduler_type="linear",
        adam_epsilon=ours["adam_eps"],
        weight_decay=ours["weight_decay"],
        response_length=ours["response_length"],
        temperature=ours["temperature"],
        stop_token="eos",
        missing_eos_penalty=ours["missing_eos_penalty"],
        kl_coef=ours["kl_coef"],
        kl_estimator=ours["kl_estimator"],
        whiten_rewards=ours["whiten_rewards"],
        gamma=ours["gamma"],
        lam=ours["gae_lambda"],
        cliprange=ours["clip_coef"],
        cliprange_value=ours["cliprange_value"],
        vf_coef=ours["vf_coef"],
    )
    policy = AutoModelForCausalLM.from_pretrained(spec["sft_path"])
    reference = AutoModelForCausalLM.from_pretrained(spec["sft_path"])
    reward_model = AutoModelForSequenceClassification.from_pretrained(spec["reward_path"], num_labels=1)
    value_model = AutoModelForSequenceClassification.from_pretrained(spec["reward_path"], num_labels=1)
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=reference,
        reward_model=reward_model,
        value_model=value_model,
        train_dataset=dataset,
        eval_dataset=eval_dataset,
    )
    ready = time.perf_counter()
    trainer.train()
    trained = time.perf_counter()
    policy.save_pretrained(Path(spec["out_dir"]) / "policy", safe_serialization=True)
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(Path(spec["out_dir"]) / "policy")
    logs = [row for row in trainer.state.log_history if "objective/kl" in row]
    tail = logs[-max(1, len(logs) // 10) :]
    episodes = int(trainer.state.episode)
    print(
        json.dumps(
            {
                "implementation": "trl-1.12.0",
                "episodes": episodes,
                "updates": len(logs),
                "train_s": trained - ready,
                "setup_s": ready - imported,
                "import_s": imported - started,
                "episodes_per_second": episodes / (trained - ready),
                "peak_rss_mb": peak_rss_mb(),
                "train_kl": sum(row["objective/kl"] for row in tail) / len(tail),
                "train_score": sum(row["objective/scores"] for row in tail) / len(tail),
                "not_in_trl": {"max_grad_norm": ours["max_grad_norm"]},  # TRL's PPO loop does not clip gradients
                "policy_path": str(Path(spec["out_dir"]) / "policy"),
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
