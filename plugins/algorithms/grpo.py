"""`algorithm=grpo`: Group Relative Policy Optimization (Shao et al. 2024) with TRL's `GRPOTrainer`.

Online RL from the SFT policy: for each prompt a group of completions is sampled and each one's advantage is
its reward relative to its group, so no value model is needed. Rewarded by `reward=...` (a learned reward
model or the task's gold reward); `algorithm.trainer.beta` is the KL penalty to the SFT policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.protocols import Policy, Reward
from harness.runner import Run, plain
from harness.stages import StageOutput


def as_trl_reward(
    reward: Reward, eos_token_id: int | None = None, missing_eos_penalty: float = 0.0
) -> Callable[..., list[float]]:
    """Our reward as TRL wants it: keyword arguments, and a `__name__` its metrics are named after.

    A completion that never emits EOS (cut at `max_completion_length`) loses `missing_eos_penalty`: without
    it the policy learns to ramble until the cut (the missing-EOS penalty of Huang et al. 2024).
    """

    def reward_func(
        prompts: Sequence[str],
        completions: Sequence[str],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **_: Any,
    ) -> list[float]:
        scores = reward.fn(list(prompts), list(completions))
        if missing_eos_penalty and completion_ids is not None and eos_token_id is not None:
            scores = [
                s - missing_eos_penalty * (eos_token_id not in ids)
                for s, ids in zip(scores, completion_ids, strict=True)
            ]
        return scores

    reward_func.__name__ = f"reward_{reward.name}"
    return reward_func


class GRPO:
    """Wraps one of TRL's online RL trainers; `rloo.py` reuses it with TRL's RLOO trainer."""

    trainer_name = "GRPOTrainer"
    config_name = "GRPOConfig"

    def __init__(
        self,
        name: str = "grpo",
        init: Any = None,
        trainer: Mapping[str, Any] | None = None,
        missing_eos_penalty: float = 0.0,
    ) -> None:
        self.name = name
        self.init = init  # the SFT algorithm (Hydra builds it from `init: sft`)
        self.trainer = dict(trainer or {})
        self.missing_eos_penalty = missing_eos_penalty

    def train(self, run: Run) -> Policy:
        sft = self.init.stage(run)
        reward = run.reward()
        config = {
            "algorithm": self.name,
            "trainer": plain(self.trainer),
            "missing_eos_penalty": self.missing_eos_penalty,
            "seed": run.seed,
            "reward": reward.name,
        }
        inputs = {"sft": sft, **({"reward": reward.stages[-1]} if reward.stages else {})}
        stage = run.stage(self.name, config, inputs, lambda out: self._train(run, sft, reward, out))
        run.replay_history("train", stage)
        metrics = {f"train/{k}": v for k, v in stage.metrics.items() if isinstance(v, int | float)}
        return Policy(
            path=stage.path,
            reference_path=sft.path,
            stages=[*reward.stages, stage] if reward.stages else [sft, stage],
            metrics={**reward.metrics, **metrics},
            proxy_reward=None if reward.is_gold else reward.fn,
        )

    def _train(self, run: Run, sft: StageOutput, reward: Reward, out_dir: Path) -> dict[str, Any]:
        import trl
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from harness.training import trainer_args

        tokenizer = AutoTokenizer.from_pretrained(sft.path)
        model = AutoModelForCausalLM.from_pretrained(sft.path)
        before = [p.detach().clone() for p in model.parameters()]
        config_cls, trainer_cls = getattr(trl, self.config_name), getattr(trl, self.trainer_name)
        args = trainer_args(
            config_cls, self.trainer, output_dir=out_dir / "checkpoints", seed=run.seed, device=run.device
        )
        forwarder = run.trainer_callback("train", out_dir)
        trainer = trainer_cls(
            model=model,
            reward_funcs=as_trl_reward(reward, tokenizer.eos_token_id, self.missing_eos_penalty),
            args=args,
            train_dataset=run.load_split("prompts"),
            processing_class=tokenizer,
            callbacks=[forwarder],
        )
        outcome = trainer.train()
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(out_dir)
        changed = sum(not a.equal(b) for a, b in zip(before, model.parameters(), strict=True)) / len(before)
        last, first = forwarder.last, forwarder.first
        return {
            "reward": last.get("reward", float("nan")),
            "first_reward": first.get("reward", float("nan")),
            "kl": last.get("kl", float("nan")),
            "loss": last.get("loss", float("nan")),
            "global_step": outcome.global_step,
            "tokens_trained": int(last.get("num_tokens", 0)),
            "params_changed": changed,
            "train_runtime_s": outcome.metrics.get("train_runtime", float("nan")),
        }
