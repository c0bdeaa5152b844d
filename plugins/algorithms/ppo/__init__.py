"""`algorithm=ppo`: RLHF with PPO, written out for Hugging Face causal LMs (no TRL trainer underneath).

The recipe of Ziegler et al. 2019 and Ouyang et al. 2022 with the implementation details collected by
Huang et al. 2024 ("The N+ implementation details of RLHF with PPO"): a policy and a separate value model
start from SFT (the value model from the reward model when there is one); each update samples responses to a
batch of prompts, scores them with the reward at the EOS token, subtracts a per-token KL penalty to the frozen
SFT reference, computes GAE advantages and takes a few epochs of clipped PPO steps on minibatches.

With `peft=lora` (harness.api.PeftSettings) the policy is a LoRA adapter on the SFT weights, the reference is the
same weights with the adapter off, and the value model is a second adapter on them with its own scalar head: one copy
of the SFT weights for all three (the learned reward model is the only other one).

`advantage_estimator: reinforce++` (`algorithm=reinforce_pp`) is REINFORCE++ (Hu 2025, "REINFORCE++: A Simple and
Efficient Approach for Aligning Large Language Models"; OpenRLHF's `reinforce` estimator): the same loop without
a critic. The advantages are the rewards to go (score minus the KL penalty still to come), whitened over the
whole global batch of tokens; the loss is the clipped policy loss alone.

Two knobs exist for the ablations of Xu et al. 2024 ("Is DPO Superior to PPO for LLM Alignment?"; their PPO
is ReaLHF's; `experiment=xu`): `normalize_advantages` (on, as always before) and `ref_ema`, a training
reference that follows the policy as an exponential moving average instead of staying the SFT policy. Either
one changes what training optimises only: every evaluation still measures KL to the SFT policy.

The package, in the order of the algorithm:
- `config`: every setting (`PPOConfig`), with what it does and where it comes from;
- `maths`: the math, pure functions on tensors (unit-tested in tests/test_ppo_math.py);
- `models`: policy, reference and value model, and the forward passes through them;
- `rollout`: the prompt batches and the sampler;
- `loop`: `train_ppo`, the training loop step by step (rollout, score, advantages, update, log);
- `checkpoint`: what a killed build resumes from, exactly;
- here: the plugin, PPO as a cached training stage on top of SFT (and the reward model, when there is one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.api import HarnessError, Policy, Run, StageOutput, TrainingStage, peft_settings, torch_threads
from plugins.algorithms.ppo.checkpoint import Trainables, load_state, restore_state, save_state
from plugins.algorithms.ppo.config import ADDED_SETTINGS, NOT_IN_KEY, PPOConfig, load_config, stage_trainer
from plugins.algorithms.ppo.loop import Learner, logged_row, no_sync, train_ppo
from plugins.algorithms.ppo.maths import (
    KLController,
    advantages_and_returns,
    apply_missing_eos_penalty,
    entropy_from_logits,
    explained_variance,
    gae,
    global_masked_whiten,
    kl_estimate,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
    per_token_rewards,
    policy_loss,
    reinforce_returns,
    score_positions,
    truncate_after_eos,
    value_loss,
)
from plugins.algorithms.ppo.models import (
    VALUE_ADAPTER,
    AdapterValueModel,
    Models,
    ValueModel,
    as_reference,
    by_length,
    check_reference,
    cut_to_group,
    disable_dropout,
    load_models,
    load_value_model,
    logprobs_of,
    position_ids,
    response_logits,
    response_values,
    trained_weights,
    update_reference,
    values_of,
)
from plugins.algorithms.ppo.rollout import prompt_batches, sample_responses


class PPO:
    """PPO (or REINFORCE++) as a cached training stage, started from the SFT method's stage."""

    def __init__(
        self,
        name: str = "ppo",
        init: Any = None,
        trainer: Mapping[str, Any] | None = None,
        missing_eos_penalty: float | None = PPOConfig.missing_eos_penalty,
    ) -> None:
        self.name = name
        self.init = init  # the SFT method (Hydra builds it from `init: ${sft}`)
        self.trainer = dict(trainer or {})
        self.missing_eos_penalty = missing_eos_penalty  # algorithm.missing_eos_penalty, as in every method

    def _trainer(self) -> dict[str, Any]:
        """`algorithm.trainer` with the missing-EOS penalty of `algorithm.missing_eos_penalty`, its one setting (the
        YAML hands it down, so the loop and the stage key read it where they always did): a different value under
        `algorithm.trainer` was set there by hand, where the setting no longer is."""
        penalty = self.missing_eos_penalty
        if isinstance(penalty, bool) or not isinstance(penalty, int | float):
            raise HarnessError(f"algorithm.missing_eos_penalty={penalty!r}: expected a number >= 0 (0 = off)")
        here = self.trainer.get("missing_eos_penalty", penalty)
        if here != penalty:
            raise HarnessError(
                f"algorithm.trainer.missing_eos_penalty={here}: the setting moved to algorithm.missing_eos_penalty, "
                f"as in every method; expected algorithm.missing_eos_penalty={here}"
            )
        return {**self.trainer, "missing_eos_penalty": penalty}

    def _sft(self, run: Run) -> StageOutput:
        init = self.init
        if init is None:
            raise HarnessError("algorithm.init: PPO needs the SFT method it starts from (init: ${sft})")
        if isinstance(init, Mapping):  # built without Hydra's recursive instantiation
            from hydra.utils import instantiate

            init = instantiate(dict(init), _convert_="all")
        return init.stage(run)

    def train(self, run: Run) -> Policy:
        config = load_config(self._trainer())  # here, not in __init__, so the error stays one line
        check_reference(config, peft_settings(run))  # checked before the SFT stage trains
        sft = self._sft(run)
        reward = run.reward()
        stage_config = {
            "algorithm": self.name,
            "trainer": stage_trainer(config),
            "seed": run.seed,
            "reward": reward.name,
            # the penalty is subtracted from the score since 2026-11-30 (it replaced it before): a stage trained
            # under the old meaning is another stage, never reused as this one
            "missing_eos_penalty": "subtracted",
        }  # the training stage adds the LoRA settings and the snapshot count (only when there are any)
        inputs = {"sft": sft, **({"reward": reward.stages[-1]} if reward.stages else {})}

        def build(stage: TrainingStage) -> dict[str, Any]:
            with torch_threads(config.cpu_threads if run.device == "cpu" else None):
                return train_ppo(
                    config,
                    stage,
                    reward=reward,
                    prompts=list(run.load_split("prompts")["prompt"]),
                    recorder=stage.recorder("train"),
                    device=run.device,
                    seed=run.seed,
                    gold=None if reward.is_gold or (judge := run.gold()) is None else judge.reward,
                )

        trained = run.train_stage(self.name, stage_config, inputs, build, start=sft, snapshots=True)
        return run.trained_policy(trained, reference=sft, reward=reward)


__all__ = [
    "ADDED_SETTINGS",
    "NOT_IN_KEY",
    "PPO",
    "VALUE_ADAPTER",
    "AdapterValueModel",
    "KLController",
    "Learner",
    "Models",
    "PPOConfig",
    "Trainables",
    "ValueModel",
    "advantages_and_returns",
    "apply_missing_eos_penalty",
    "as_reference",
    "by_length",
    "check_reference",
    "cut_to_group",
    "disable_dropout",
    "entropy_from_logits",
    "explained_variance",
    "gae",
    "global_masked_whiten",
    "kl_estimate",
    "load_config",
    "load_models",
    "load_state",
    "load_value_model",
    "logged_row",
    "logprobs_from_logits",
    "logprobs_of",
    "masked_mean",
    "masked_var",
    "masked_whiten",
    "no_sync",
    "per_token_rewards",
    "policy_loss",
    "position_ids",
    "prompt_batches",
    "reinforce_returns",
    "response_logits",
    "response_values",
    "restore_state",
    "sample_responses",
    "save_state",
    "score_positions",
    "stage_trainer",
    "train_ppo",
    "trained_weights",
    "truncate_after_eos",
    "update_reference",
    "value_loss",
    "values_of",
]
