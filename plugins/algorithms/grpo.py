"""`algorithm=grpo`: Group Relative Policy Optimization (Shao et al. 2024) with TRL's `GRPOTrainer`.

Online RL from the SFT policy: for each prompt a group of completions is sampled and each one's advantage is
its reward relative to its group, so no value model is needed. Rewarded by `reward=...` (a learned reward
model or the task's gold reward); `algorithm.trainer.beta` is the KL penalty to the SFT policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.guards import check_rewards, prompt_room, warn_long_prompts
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
        scores = check_rewards(reward.name, reward.fn(list(prompts), list(completions)))
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
        build = lambda out: self._train(run, sft, reward, out)  # noqa: E731
        stage = run.stage(self.name, config, inputs, build, collective=True)
        return Policy(
            path=stage.path,
            reference_path=sft.path,
            metrics={**reward.metrics, **run.training_metrics(stage)},
            proxy_reward=None if reward.is_gold else reward.fn,
        )

    def _train(self, run: Run, sft: StageOutput, reward: Reward, out_dir: Path) -> dict[str, Any]:
        import trl
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from harness.training import fit

        tokenizer = AutoTokenizer.from_pretrained(sft.path)
        model = AutoModelForCausalLM.from_pretrained(sft.path, use_safetensors=True)
        fitted = fit(
            getattr(trl, self.trainer_name),
            getattr(trl, self.config_name),
            self.trainer,
            run=run,
            model=model,
            tokenizer=tokenizer,
            out_dir=out_dir,
            reward_funcs=as_trl_reward(reward, tokenizer.eos_token_id, self.missing_eos_penalty),
            train_dataset=self._prompts_that_fit(run, model, tokenizer),
        )
        return fitted.summary("reward", "kl", "loss")

    def _prompts_that_fit(self, run: Run, model: Any, tokenizer: Any) -> Any:
        """The training prompts, less those with no room beside `max_completion_length` in the model's context
        (TRL would fail on them deep inside the model). Dropped, not cut: TRL tokenises the text itself, and text
        cut by tokens does not come back as the same tokens with every tokenizer."""
        prompts = run.load_split("prompts")
        setting = "algorithm.trainer.max_completion_length"
        length = int(self.trainer.get("max_completion_length") or 0)
        room = prompt_room(model, length, setting) if length else None
        action = "training without them"
        longer = warn_long_prompts(self.name, tokenizer, prompts["prompt"], room, length, setting, action)
        if longer and len(longer) == len(prompts):
            raise HarnessError(
                f"{self.name}: no training prompt fits the model's context of {room + length} tokens beside "
                f"{setting}={length}; expected shorter prompts or a smaller {setting}"
            )
        return prompts.select(sorted(set(range(len(prompts))) - set(longer))) if longer else prompts
