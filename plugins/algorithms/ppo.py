"""`algorithm=ppo`: RLHF with PPO, written out for Hugging Face causal LMs (no TRL trainer underneath).

The recipe of Ziegler et al. 2019 and Ouyang et al. 2022 with the implementation details collected by
Huang et al. 2024 ("The N+ implementation details of RLHF with PPO"): a policy and a separate value model
start from SFT (the value model from the reward model when there is one); each update samples responses to a
batch of prompts, scores them with the reward at the EOS token, subtracts a per-token KL penalty to the frozen
SFT reference, computes GAE advantages and takes a few epochs of clipped PPO steps on minibatches.

With `peft=lora` (harness.adapters) the policy is a LoRA adapter on the SFT weights, the reference is the same
weights with the adapter off, and the value model is a second adapter on them with its own scalar head: one copy of
the SFT weights for all three (the learned reward model is the only other one).

`advantage_estimator: reinforce++` (`algorithm=reinforce_pp`) is REINFORCE++ (Hu 2025, "REINFORCE++: A Simple and
Efficient Approach for Aligning Large Language Models"; OpenRLHF's `reinforce` estimator): the same loop without
a critic. The advantages are the rewards to go (score minus the KL penalty still to come), whitened over the
whole global batch of tokens; the loss is the clipped policy loss alone.

Two knobs exist for the ablations of Xu et al. 2024 ("Is DPO Superior to PPO for LLM Alignment?"; their PPO
is ReaLHF's; `experiment=xu`): `normalize_advantages` (on, as always before) and `ref_ema`, a training
reference that follows the policy as an exponential moving average instead of staying the SFT policy. Either
one changes what training optimises only: every evaluation still measures KL to the SFT policy.

The file reads top to bottom like the algorithm: config, the math (pure functions, unit-tested in
tests/test_ppo_math.py), rollout, advantages, update, logging. `accelerate` wraps the models and optimizer, so
the same loop runs on several GPUs under `accelerate launch`; on the testbed it runs single-process on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import random
import shutil
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from harness import adapters, progress, snapshots
from harness.batching import length_groups
from harness.devices import torch_threads
from harness.errors import HarnessError
from harness.guards import prompt_room, warn_long_prompts
from harness.protocols import Policy, Reward, RewardFn, Run
from harness.ranges import allowed, check_fields
from harness.stages import StageOutput
from harness.training import truncate_history

log = logging.getLogger("harness")

# ---------------------------------------------------------------------------------------------------------
# Config: every hyperparameter, with what it does and where it comes from
# ---------------------------------------------------------------------------------------------------------


def _in(spec: str, default: Any) -> Any:
    """A field with its allowed range (harness.ranges): refused before any training, in one line."""
    return field(default=default, metadata=allowed(spec))


@dataclass(frozen=True)
class PPOConfig:
    """`algorithm.trainer.*`, with the defaults of conf/algorithm/ppo.yaml (tuned for the testbed; why: there)."""

    total_episodes: int = _in("[1, inf)", 4096)  # prompts rolled out in all; updates = total_episodes // batch_size
    batch_size: int = _in("[1, inf)", 64)  # prompts per rollout, i.e. per PPO update
    num_minibatches: int = _in("[1, inf)", 2)  # minibatches each rollout is split into per epoch (Schulman 2017)
    ppo_epochs: int = _in("[1, inf)", 2)  # passes over each rollout (Schulman et al. 2017)
    learning_rate: float = _in("(0, inf)", 3e-4)  # AdamW learning rate, decayed linearly to 0 (Huang et al. 2024)
    adam_eps: float = _in("(0, inf)", 1e-5)  # AdamW epsilon (Huang et al. 2022, "The 37 implementation details of PPO")
    weight_decay: float = _in("[0, inf)", 0.0)  # AdamW weight decay
    max_grad_norm: float = _in("(0, inf)", 1.0)  # global gradient-norm clip of policy and value (Huang et al. 2022)
    response_length: int = _in("[1, inf)", 40)  # most response tokens sampled per prompt
    temperature: float = _in("(0, inf)", 1.0)  # sampling temperature; logprobs from logits / temperature (Huang 2024)
    missing_eos_penalty: float | None = _in("[0, inf)", 1.0)  # subtracted from the score of a response with no EOS
    kl_coef: float = _in("[0, inf)", 0.1)  # beta of the per-token KL penalty to the reference (Ziegler et al. 2019)
    kl_estimator: Literal["k1", "k3"] = "k1"  # k1 = log p - log p_ref; k3 = (r - 1) - log r, r = p_ref / p (Schulman)
    adaptive_kl: bool = False  # adapt kl_coef towards target_kl (Ziegler et al. 2019, eq. 2)
    target_kl: float = _in("(0, inf)", 6.0)  # KL (nats per response) the adaptive controller aims for (Ziegler 2019)
    kl_horizon: int = _in("[1, inf)", 10_000)  # episodes over which the adaptive controller moves kl_coef (Ziegler)
    # None: the KL penalty's reference is the frozen SFT policy. A number: after each update the reference moves
    # toward the policy, ref <- ref_ema ref + (1 - ref_ema) policy (Xu et al. 2024; ReaLHF's ref_ema_eta = 1 - ref_ema)
    ref_ema: float | None = _in("[0, 1)", None)
    whiten_rewards: bool = False  # whiten the per-token rewards before GAE (Huang et al. 2024)
    advantage_estimator: Literal["gae", "reinforce++"] = "gae"  # gae: critic + GAE; reinforce++: no critic (Hu 2025)
    normalize_advantages: bool = True  # whiten each batch's advantages (Xu et al. 2024: one of PPO's key factors)
    gamma: float = _in("[0, 1]", 1.0)  # discount (Huang et al. 2024: none within a response)
    gae_lambda: float = _in("[0, 1]", 0.95)  # GAE lambda (Schulman et al. 2016)
    clip_coef: float = _in("(0, inf)", 0.2)  # ratio clip of the policy loss (Schulman et al. 2017, eq. 7)
    cliprange_value: float = _in("(0, inf)", 0.2)  # clip of the value prediction around its rollout value (Huang 2022)
    vf_coef: float = _in("[0, inf)", 0.1)  # weight of the value loss (Ziegler et al. 2019; TRL)
    cpu_threads: int | None = _in("[1, inf)", 1)  # torch threads on CPU (not a hyperparameter: why 1, see the YAML)
    save_every: int = _in("[1, inf)", 16)  # updates between checkpoints a killed job resumes from (not a hyperparam.)

    def __post_init__(self) -> None:
        """What no single range says (harness.ranges runs this on the composed settings, before any training)."""
        check_fields(self)
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_minibatches={self.num_minibatches}: must divide batch_size={self.batch_size}")
        if self.total_episodes < self.batch_size:
            raise ValueError(f"total_episodes={self.total_episodes}: less than one batch ({self.batch_size})")
        if self.advantage_estimator == "reinforce++" and self.gamma != 1.0:
            raise ValueError(f"gamma={self.gamma}: REINFORCE++ sums undiscounted rewards to go (Hu 2025); expected 1.0")


def load_config(fields: Mapping[str, Any]) -> PPOConfig:
    """A `PPOConfig` from `algorithm.trainer`; an unknown key, a wrong type or a value out of range is a one-line
    `HarnessError`."""
    hints = typing.get_type_hints(PPOConfig)
    known = {spec.name for spec in dataclasses.fields(PPOConfig)}
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in known:
            raise HarnessError(f"algorithm.trainer.{key}: unknown PPO setting; expected one of {sorted(known)}")
        values[key] = _checked(f"algorithm.trainer.{key}", value, hints[key])
    try:
        return PPOConfig(**values)
    except HarnessError as error:  # a range: name the whole setting
        raise HarnessError(f"algorithm.trainer.{error}") from None
    except ValueError as error:
        raise HarnessError(f"algorithm.trainer.{error}") from None


def _checked(name: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise HarnessError(f"{name}={value!r}: expected one of {', '.join(map(str, args))}")
        return value
    if type(None) in args:  # `X | None`
        return None if value is None else _checked(name, value, next(a for a in args if a is not type(None)))
    expected = {bool: "true or false", int: "an integer", float: "a number"}[hint]
    if isinstance(value, bool) != (hint is bool):
        raise HarnessError(f"{name}={value!r}: expected {expected}")
    if hint is float and isinstance(value, int | float):
        return float(value)
    if not isinstance(value, hint):
        raise HarnessError(f"{name}={value!r}: expected {expected}")
    return value


# ---------------------------------------------------------------------------------------------------------
# The math: pure functions on tensors (tests/test_ppo_math.py works each one out by hand)
# ---------------------------------------------------------------------------------------------------------


def logprobs_from_logits(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log pi(token) under the temperature-scaled logits the tokens were sampled from (Huang et al. 2024)."""
    logprobs = F.log_softmax(logits.float() / temperature, dim=-1)
    return logprobs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


def entropy_from_logits(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Entropy of each next-token distribution (temperature-scaled), in nats."""
    logprobs = F.log_softmax(logits.float() / temperature, dim=-1)
    return -(logprobs.exp() * logprobs).sum(-1)


def truncate_after_eos(
    responses: torch.Tensor, eos_id: int, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut each response after its first EOS: later tokens become `pad_id` and are masked out.

    Returns (responses, mask, contains_eos); the mask covers the tokens up to and including the first EOS
    (all tokens when there is none).
    """
    is_eos = responses == eos_id
    contains_eos = is_eos.any(dim=1)
    positions = torch.arange(responses.shape[1], device=responses.device).expand_as(responses)
    first_eos = torch.where(contains_eos, is_eos.float().argmax(dim=1), responses.shape[1] - 1)
    mask = positions <= first_eos.unsqueeze(1)
    return responses.masked_fill(~mask, pad_id), mask, contains_eos


def score_positions(mask: torch.Tensor) -> torch.Tensor:
    """Index of each response's last real token (its EOS when it has one): where the score is paid."""
    return mask.long().sum(dim=1) - 1


def apply_missing_eos_penalty(
    scores: torch.Tensor, contains_eos: torch.Tensor, missing_eos_penalty: float | None
) -> torch.Tensor:
    """A response cut off before EOS loses `missing_eos_penalty` from its score (None: off).

    Subtracted, as TRL's online trainers do (`missing_eos_penalty` of OnlineDPOConfig; our `as_trl_reward` for
    GRPO/RLOO), so the penalty means the same in every method: Huang et al. 2024 replace the score by -1
    instead, which on a reward of another scale is a different penalty.
    """
    if missing_eos_penalty is None:
        return scores
    return scores - missing_eos_penalty * (~contains_eos).to(scores.dtype)


def kl_estimate(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from a sample of pi (Schulman, "Approximating KL divergence").

    k1 = log p - log p_ref (unbiased, can be negative); k3 = (r - 1) - log r with r = p_ref / p
    (unbiased, never negative, lower variance).
    """
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"unknown KL estimator {estimator!r}; expected k1 or k3")


def per_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = -kl_coef KL_t at every response token, plus the score at the last one (Ziegler et al. 2019, eq. 2).

    Returns (rewards, non_score_rewards); both are zero on padding.
    """
    non_score_rewards = -kl_coef * kl * mask
    rewards = non_score_rewards.clone()
    rows = torch.arange(rewards.shape[0], device=rewards.device)
    rewards[rows, score_positions(mask)] += scores
    return rewards, non_score_rewards


def masked_mean(values: torch.Tensor, mask: torch.Tensor, count: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the masked entries; with `count`, the masked sum / count (a part of a batch of `count` entries,
    so the parts of a batch split by length add up to the batch's mean)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / (mask.sum() if count is None else count).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Variance over the masked entries, with Bessel's correction (as TRL)."""
    mean = masked_mean(values, mask)
    count = mask.sum().clamp(min=2)
    return masked_mean((values - mean) ** 2, mask) * count / (count - 1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the masked entries; `shift_mean=False` keeps the mean (only rescales)."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, gae_lambda: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016, eq. 16); returns (advantages, returns).

    delta_t = r_t + gamma V_{t+1} - V_t and A_t = delta_t + gamma lambda A_{t+1}, with V and r zero past each
    response's end (the episode ends at EOS, so nothing is bootstrapped from padding). returns = A + V.
    """
    mask = mask.to(values.dtype)
    values, rewards = values * mask, rewards * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(steps)):
        next_values = values[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last = delta + gamma * gae_lambda * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, advantages + values


def reinforce_returns(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE++ returns (Hu 2025, gamma = 1): G_t = sum_{i >= t} r_i over each response's real tokens, i.e.
    the score minus beta times the KL still to come (OpenRLHF's `get_cumulative_returns`); zero on padding."""
    mask = mask.to(rewards.dtype)
    return (rewards * mask).flip(1).cumsum(1).flip(1) * mask


def global_masked_whiten(
    values: torch.Tensor,
    mask: torch.Tensor,
    all_sum: typing.Callable[[torch.Tensor], torch.Tensor] = lambda stats: stats,
) -> torch.Tensor:
    """(x - mean) / std over the masked entries of the whole global batch, every process's rows and not only this
    one's: REINFORCE++'s global advantage normalisation (Hu 2025; OpenRLHF whitens a rollout's advantages over
    all its tokens at once). `all_sum` sums a tensor over the processes (accelerate's `reduce(t, "sum")`); it gets
    this shard's [sum x, sum x^2, count], in float64 so the one-pass variance loses nothing. Bessel's correction
    and the 1e-8 of `masked_whiten`, which it equals on one process; zero on padding."""
    mask = mask.to(values.dtype)
    local = values.double() * mask
    total, total_squares, count = all_sum(torch.stack([local.sum(), (local * values).sum(), mask.double().sum()]))
    mean = total / count.clamp(min=1)
    var = (total_squares - total * mean).clamp(min=0) / (count - 1).clamp(min=1)
    return (values - mean.to(values.dtype)) * torch.rsqrt(var + 1e-8).to(values.dtype) * mask


def advantages_and_returns(
    rewards: torch.Tensor,
    values: torch.Tensor | None,
    mask: torch.Tensor,
    config: PPOConfig,
    all_sum: typing.Callable[[torch.Tensor], torch.Tensor] = lambda stats: stats,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 4 of the loop: (advantages, returns), zero on padding. With a critic (`values`), GAE, its advantages
    whitened over this process's real tokens; REINFORCE++ (values None), the rewards to go, whitened over the
    global batch's (`all_sum`, see `global_masked_whiten`). `normalize_advantages=False` skips the whitening:
    the raw advantages, the ablation of Xu et al. 2024. The returns (the critic's targets) are never whitened."""
    if values is not None:  # GAE (Schulman et al. 2016, eq. 16)
        advantages, returns = gae(rewards, values, mask, config.gamma, config.gae_lambda)
        if config.normalize_advantages:
            advantages = masked_whiten(advantages, mask) * mask
        return advantages, returns
    returns = reinforce_returns(rewards, mask)  # REINFORCE++ (Hu 2025)
    advantages = global_masked_whiten(returns, mask, all_sum) if config.normalize_advantages else returns
    return advantages, returns


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_coef: float,
    count: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate (Schulman et al. 2017, eq. 7), as a loss: mean of max(-A r, -A clip(r, 1-e, 1+e)).

    Returns (pg_loss, clipfrac, approx_kl); approx_kl is the k3 estimate of KL(old || new) (CleanRL).
    `count`: the minibatch's token count when these rows are part of it (see `masked_mean`).
    """
    log_ratio = logprobs - old_logprobs
    ratio = log_ratio.exp()
    pg_losses = -advantages * ratio
    pg_losses_clipped = -advantages * ratio.clamp(1.0 - clip_coef, 1.0 + clip_coef)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses_clipped), mask, count)
    with torch.no_grad():
        clipfrac = masked_mean((pg_losses_clipped > pg_losses).float(), mask, count)
        approx_kl = masked_mean((ratio - 1) - log_ratio, mask, count)
    return pg_loss, clipfrac, approx_kl


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
    count: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss (Huang et al. 2022): 0.5 mean max((V - R)^2, (V_old + clip(V - V_old) - R)^2).

    Returns (v_loss, clipfrac): how often the clipped error was the larger one. `count`: as in `policy_loss`.
    """
    clipped = old_values + (values - old_values).clamp(-cliprange_value, cliprange_value)
    losses, losses_clipped = (values - returns) ** 2, (clipped - returns) ** 2
    v_loss = 0.5 * masked_mean(torch.max(losses, losses_clipped), mask, count)
    with torch.no_grad():
        clipfrac = masked_mean((losses_clipped > losses).float(), mask, count)
    return v_loss, clipfrac


@dataclass
class KLController:
    """beta of the KL penalty; adaptive, it follows Ziegler et al. 2019 (eq. 2):
    e = clip(KL / target - 1, -0.2, 0.2), beta <- beta (1 + e n / horizon), n = episodes in the batch."""

    value: float
    adaptive: bool = False
    target: float = 6.0
    horizon: int = 10_000

    def update(self, kl: float, episodes: int) -> None:
        if not self.adaptive:
            return
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * episodes / self.horizon


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over real tokens: 1 is a perfect value function, 0 no better than a constant."""
    var_returns = masked_var(returns, mask)
    return float(1.0 - masked_var(returns - values, mask) / var_returns) if var_returns > 0 else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Models: policy, frozen reference, value model (none for REINFORCE++)
# ---------------------------------------------------------------------------------------------------------


def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout off, so rollout and update logprobs agree (Huang et al. 2024)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions that skip left padding (what `generate` uses), so a prompt's padding never shifts it."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_logits(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: int) -> torch.Tensor:
    """Logits that predict each response token: outputs at positions context-1 ... end-1. Only those are
    projected onto the vocabulary (`logits_to_keep`): the prompt's would be thrown away, and with a real
    vocabulary they are most of the memory."""
    keep = input_ids.shape[1] - context + 1
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        logits_to_keep=keep,
    ).logits
    return logits[:, -keep:-1]


class ValueModel(torch.nn.Module):
    """V(s) at every position: a transformer backbone and a scalar head (its own network, Huang et al. 2024)."""

    def __init__(self, classifier: Any) -> None:
        super().__init__()
        self.backbone = classifier.base_model  # e.g. GPT2Model under GPT2ForSequenceClassification
        self.score = classifier.score  # Linear(hidden, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
        ).last_hidden_state
        return self.score(hidden).squeeze(-1).float()


VALUE_ADAPTER = "value"  # with LoRA: the value model's adapter, beside the policy's ("default") on the same weights


class AdapterValueModel(torch.nn.Module):
    """V(s) with LoRA: the policy's own frozen SFT weights seen through a second adapter (`value`), and a scalar head.

    Why there, and not as an adapter on the reward model (whose head would start it, as `load_value_model` does): the
    reward model belongs to the reward function, which scores through it with no adapter in the way, and the gold
    reward has none; the policy's weights are held anyway. So the critic costs an adapter and a head, and it still
    shares no trained weight with the policy (Huang et al. 2024 keep the two networks apart). Its head starts at
    zero (V = 0), as the SFT-started critic of a run without a reward model does.

    Its parameters are the head alone: the adapter lives in the policy's layers, so the policy's optimizer step,
    checkpoint and gradient clipping carry it. The policy is kept in a list, not as a submodule, so that its weights
    are not this module's too (the optimizer would see them twice)."""

    def __init__(self, policy: Any) -> None:
        super().__init__()
        self.score = torch.nn.Linear(policy.get_base_model().config.hidden_size, 1, bias=False)
        torch.nn.init.zeros_(self.score.weight)
        self.shared = [policy]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        (policy,) = self.shared
        backbone = policy.get_base_model().base_model  # e.g. GPT2Model under GPT2LMHeadModel, the adapters inside
        with adapters.adapter_active(policy, VALUE_ADAPTER):
            hidden = backbone(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids(attention_mask)
            ).last_hidden_state
        return self.score(hidden.to(self.score.weight.dtype)).squeeze(-1).float()


def load_value_model(sft_path: Path, reward: Reward) -> ValueModel:
    """A learned reward model starts the value model (Ouyang et al. 2022); else SFT with a zero scalar head."""
    from transformers import AutoModelForSequenceClassification

    if reward.model_path is not None:
        scorer = adapters.load_model(reward.model_path, AutoModelForSequenceClassification, merge=True)
        return ValueModel(disable_dropout(scorer))
    classifier = adapters.load_model(sft_path, AutoModelForSequenceClassification, merge=True, num_labels=1)
    torch.nn.init.zeros_(classifier.score.weight)
    if getattr(classifier.score, "bias", None) is not None:
        torch.nn.init.zeros_(classifier.score.bias)
    return ValueModel(disable_dropout(classifier))


@dataclass
class Models:
    """What PPO holds: the policy it trains, the frozen SFT reference, the value model (None: REINFORCE++)."""

    policy: Any
    reference: Any | None  # None with LoRA: the reference is the policy with its adapters off (see `as_reference`)
    value_model: Any | None


def load_models(sft_path: Path, reward: Reward, critic: bool, peft: adapters.PeftSettings | None = None) -> Models:
    """Full fine-tuning: the policy, a frozen copy of it as the reference, and a value model of its own (three copies
    of the weights). LoRA: one copy of the SFT weights with a policy adapter, the value adapter (with a critic) beside
    it; the reference is that copy with the adapters off."""
    policy = disable_dropout(adapters.load_model(sft_path, merge=True, **(peft.model_kwargs() if peft else {})))
    if peft is None:
        reference = disable_dropout(adapters.load_model(sft_path, merge=True)).eval().requires_grad_(False)
        return Models(policy, reference, load_value_model(sft_path, reward) if critic else None)
    from peft import get_peft_model, prepare_model_for_kbit_training

    if peft.quantization is not None:  # QLoRA: norms in fp32, the 4-bit weights frozen (Dettmers et al. 2023)
        policy = prepare_model_for_kbit_training(policy, use_gradient_checkpointing=False)
    lora = peft.lora_config()
    policy = get_peft_model(policy, lora)
    if critic:
        policy.add_adapter(VALUE_ADAPTER, lora)
        policy.set_requires_grad(VALUE_ADAPTER, True)  # added adapters start frozen; this one trains too
    return Models(disable_dropout(policy), None, AdapterValueModel(policy) if critic else None)


def check_reference(config: PPOConfig, peft: adapters.PeftSettings | None) -> None:
    """An EMA reference needs weights of its own to move; with LoRA the reference is the SFT weights themselves
    (the policy with its adapter off), which the policy stands on. (An EMA of the adapter's two factors would
    not be an EMA of their product, so no second adapter can stand in for it.)"""
    if config.ref_ema is not None and peft is not None:
        raise HarnessError(
            f"algorithm.trainer.ref_ema={config.ref_ema}: an EMA reference needs its own copy of the weights, and "
            "with peft=lora the reference is the policy's frozen base; use peft=none or ref_ema=null"
        )


@contextlib.contextmanager
def as_reference(models: Models, policy: Any) -> typing.Iterator[Any]:
    """The frozen SFT policy to score with: the reference copy, or (LoRA) `policy` with its adapters off."""
    if models.reference is not None:
        yield models.reference
    else:
        with adapters.adapter_disabled(policy):
            yield policy


@torch.no_grad()
def update_reference(reference: torch.nn.Module, policy: torch.nn.Module, ref_ema: float) -> None:
    """The EMA reference of Xu et al. 2024: every weight moves (1 - ref_ema) of the way to the policy's,
    ref <- ref_ema ref + (1 - ref_ema) policy, once per update (after its PPO epochs, as ReaLHF's `ref_ema_eta`
    hook after each actor training step). Parameters only: the buffers (GPT-2's causal mask) are constants."""
    for ref, new in zip(reference.parameters(), policy.parameters(), strict=True):
        if ref.shape != new.shape:
            raise ValueError(f"reference weight {tuple(ref.shape)} against policy weight {tuple(new.shape)}")
        ref.lerp_(new, 1.0 - ref_ema)  # ref + (1 - ref_ema) (new - ref)


def trained_weights(model: Any) -> dict[str, torch.Tensor]:
    """What a LoRA checkpoint holds of the policy: the adapters (the frozen weights are the SFT stage's)."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def response_values(
    value_model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, context: int
) -> torch.Tensor:
    """V(state before each response token): the values at positions context-1 ... end-1."""
    return value_model(input_ids, attention_mask)[:, context - 1 : -1]


def logprobs_of(
    model: Any,
    temperature: float,
    with_entropy: bool,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    responses: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """Logprobs of the response tokens (queries fill the rest of `input_ids`), and the entropy at each token
    when `with_entropy` (the policy's; the reference's would be thrown away)."""
    logits = response_logits(model, input_ids, attention_mask, input_ids.shape[1] - responses.shape[1])
    logprobs = logprobs_from_logits(logits, responses, temperature)
    return (logprobs, entropy_from_logits(logits, temperature)) if with_entropy else (logprobs,)


def values_of(
    value_model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, responses: torch.Tensor
) -> tuple[torch.Tensor]:
    """V(state before each response token)."""
    return (response_values(value_model, input_ids, attention_mask, input_ids.shape[1] - responses.shape[1]),)


def cut_to_group(
    rows: torch.Tensor, mask: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The group's longest response (`width`), and its rows of the query + response tensors cut to it."""
    width = int(mask[rows].sum(1).max())
    end = input_ids.shape[1] - mask.shape[1] + width
    return width, input_ids[rows, :end], attention_mask[rows, :end]


def by_length(
    groups: Sequence[Sequence[int]],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    responses: torch.Tensor,
    mask: torch.Tensor,
    compute: typing.Callable[..., tuple[torch.Tensor, ...]],
) -> list[torch.Tensor]:
    """Per-token results for a batch, computed group by group (harness.batching.length_groups) with each group
    cut to its longest response: `compute(input_ids, attention_mask, responses)` returns [rows, width] tensors,
    put back into [batch, response width] ones (zero past each row's end, where `mask` is 0)."""
    outputs: list[torch.Tensor] = []
    for group in groups:
        rows = torch.tensor(group, device=mask.device)
        width, ids, attention = cut_to_group(rows, mask, input_ids, attention_mask)
        parts = compute(ids, attention, responses[rows, :width])
        if not outputs:
            outputs = [torch.zeros(mask.shape, dtype=part.dtype, device=part.device) for part in parts]
        for output, part in zip(outputs, parts, strict=True):
            output[rows, :width] = part
    return outputs


# ---------------------------------------------------------------------------------------------------------
# Rollout: sample responses with a KV cache
# ---------------------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_responses(
    model: Any,
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    response_length: int,
    temperature: float,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample up to `response_length` tokens per (left-padded) query; stops early once every row has an EOS.

    A hand-written KV-cached loop: on the testbed it is ~25% faster than `generate` and draws from our own
    seeded generator. Rows that have ended leave the batch (and the cache) once a quarter of it has: the last
    long responses are sampled at a few rows' cost, not the whole batch's. Tokens after a row's EOS are `pad_id`.
    Returns (tokens, their sampling logprobs, 0 after EOS); the update recomputes the logprobs with one forward
    pass instead (Huang et al. 2024), and a test checks that the two agree.
    """
    batch = queries.shape[0]
    tokens = torch.full((batch, response_length), pad_id, dtype=torch.long, device=queries.device)
    logprobs = torch.zeros((batch, response_length), device=queries.device)
    rows = torch.arange(batch, device=queries.device)  # which query each row of the cache belongs to
    attention_mask = query_mask.long()
    positions = position_ids(attention_mask)
    output = model(input_ids=queries, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    cache, last_position = output.cache, positions[:, -1:]
    finished = torch.zeros(batch, dtype=torch.bool, device=queries.device)
    steps = 0
    for step in range(response_length):
        steps = step + 1
        step_logprobs = F.log_softmax(output.logits[:, -1].float() / temperature, dim=-1)
        token = torch.multinomial(step_logprobs.exp(), 1, generator=generator).squeeze(1)
        chosen = step_logprobs.gather(1, token.unsqueeze(1)).squeeze(1)
        token, chosen = token.masked_fill(finished, pad_id), chosen.masked_fill(finished, 0.0)
        tokens[rows, step], logprobs[rows, step] = token, chosen
        finished |= token == eos_id
        if finished.all():
            break
        if int(finished.sum()) >= max(1, len(rows) // 4):  # drop the rows that have ended
            keep = (~finished).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, token, finished = rows[keep], token[keep], finished[keep]
            attention_mask, last_position = attention_mask[keep], last_position[keep]
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        last_position = last_position + 1
        output = model(
            input_ids=token.unsqueeze(1),
            attention_mask=attention_mask,
            position_ids=last_position,
            cache=cache,
            use_cache=True,
        )
        cache = output.cache
    return tokens[:, :steps], logprobs[:, :steps]


@contextlib.contextmanager
def no_sync(accelerator: Any, models: Sequence[Any], skip: bool) -> typing.Iterator[None]:
    """Gradient accumulation across several processes: no all-reduce in this backward when `skip`."""
    with contextlib.ExitStack() as stack:
        if skip:
            for model in models:
                stack.enter_context(accelerator.no_sync(model))
        yield


def prompt_batches(prompts: Sequence[str], batch_size: int, seed: int) -> typing.Iterator[list[str]]:
    """Endless batches of prompts: a fresh seeded shuffle each pass, incomplete last batch dropped."""
    if batch_size > len(prompts):  # no pass would hold a whole batch: the batches would never come
        raise HarnessError(
            f"algorithm.trainer.batch_size={batch_size}: more than the task's {len(prompts)} RL prompts; "
            f"expected at most {len(prompts)}"
        )
    return _shuffled_batches(prompts, batch_size, seed)


def _shuffled_batches(prompts: Sequence[str], batch_size: int, seed: int) -> typing.Iterator[list[str]]:
    rng = random.Random(seed)
    while True:
        order = list(range(len(prompts)))
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [prompts[i] for i in order[start : start + batch_size]]


# ---------------------------------------------------------------------------------------------------------
# The training loop: rollout -> rewards -> GAE (or REINFORCE++) -> PPO epochs -> log, steps 1-7
# ---------------------------------------------------------------------------------------------------------


def train_ppo(
    config: PPOConfig,
    *,
    sft_path: Path,
    reward: Reward,
    prompts: Sequence[str],
    out_dir: Path,
    recorder: Any,
    device: str,
    seed: int,
    gold: RewardFn | None = None,
    peft: adapters.PeftSettings | None = None,
    snapshot_count: int = 0,
) -> dict[str, Any]:
    """Train a policy from `sft_path` against `reward`; save it to `out_dir`; return the stage's metrics.

    `gold`, when given (a task with an exact reward, trained against a learned one), is only watched: each
    update also logs the rollouts' gold score, so over-optimisation shows as proxy up, gold down.
    `peft`: train LoRA adapters (the policy saved as one) instead of every weight.
    `snapshot_count`: keep that many snapshots of the policy along its updates (harness.snapshots).
    """
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import AutoTokenizer

    started = time.perf_counter()
    accelerator = Accelerator(cpu=device == "cpu")
    set_seed(seed + accelerator.process_index)  # each process draws its own prompts and samples
    generator = torch.Generator(device=accelerator.device).manual_seed(seed + accelerator.process_index)

    tokenizer = AutoTokenizer.from_pretrained(sft_path)
    saved_padding_side, tokenizer.padding_side = tokenizer.padding_side, "left"  # queries flush against responses
    eos_id, pad_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    if pad_id is None:
        pad_id = eos_id
    check_reference(config, peft)
    # REINFORCE++ has no critic (Hu 2025): no value model is loaded, run or trained
    critic = config.advantage_estimator == "gae"
    models = load_models(sft_path, reward, critic, peft)
    policy, value_model = models.policy, models.value_model
    # what training moves (all of it, or the adapters): where it started, to report how much of it moved
    start_weights = [(p, p.detach().clone()) for p in policy.parameters() if p.requires_grad]
    trained_parameters = [p for model in (policy, value_model) if model is not None for p in model.parameters()]
    trainable = sum(p.numel() for p in trained_parameters if p.requires_grad)
    total = sum(p.numel() for p in trained_parameters)

    # batch_size prompts per process and update: several processes share the episodes, not multiply them
    num_updates = config.total_episodes // (config.batch_size * accelerator.num_processes)
    optimizer = torch.optim.AdamW(
        [p for p in trained_parameters if p.requires_grad],
        lr=config.learning_rate,
        eps=config.adam_eps,
        weight_decay=config.weight_decay,
    )
    # Linear decay to 0 over the updates (Huang et al. 2024); stepped once per update.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda update: 1.0 - update / num_updates)
    if critic:
        policy, value_model, optimizer = accelerator.prepare(policy, value_model, optimizer)
    else:
        policy, optimizer = accelerator.prepare(policy, optimizer)
    trained = (policy, value_model) if critic else (policy,)  # the models the optimizer steps
    if models.reference is not None:
        models.reference = models.reference.to(accelerator.device)
    unwrapped_policy = accelerator.unwrap_model(policy)
    kl_controller = KLController(config.kl_coef, config.adaptive_kl, config.target_kl, config.kl_horizon)
    snapshot_at = snapshots.targets(num_updates, snapshot_count)

    # prompts too long for the context beside a response keep their last tokens (one warning for all of them)
    room = prompt_room(unwrapped_policy, config.response_length, "algorithm.trainer.response_length")
    tokenizer.truncation_side = "left"
    warn_long_prompts(
        "ppo",
        tokenizer,
        prompts,
        room,
        config.response_length,
        "algorithm.trainer.response_length",
        f"training on their last {room} tokens",
    )
    batches = prompt_batches(prompts, config.batch_size, seed + accelerator.process_index)
    minibatch_size = config.batch_size // config.num_minibatches
    episodes, tokens_trained, history = 0, 0, []
    state_dir = out_dir / "checkpoints" / f"ppo-rank{accelerator.process_index}"
    resumed_from = 0
    parts = Trainables(
        unwrapped_policy,
        accelerator.unwrap_model(value_model) if critic else None,
        optimizer,
        scheduler,
        kl_controller,
        generator,
        models.reference if config.ref_ema is not None else None,
    )
    if (state := load_state(state_dir)) is not None:  # a killed build of this stage: go on where it stopped
        resumed_from, episodes, tokens_trained, history = restore_state(state, state_dir, parts)
        for _ in range(resumed_from):  # the prompt batches the killed run already used
            next(batches)
        if accelerator.is_main_process:
            recorder.first.update(truncate_history(recorder.history_path, resumed_from))
    progress.steps("train", total=num_updates, done=resumed_from, unit="updates")  # a sweep's view counts them
    for update in range(resumed_from + 1, num_updates + 1):
        # 1. Rollout: sample a response per prompt from the current policy
        batch_prompts = next(batches)
        encoded = tokenizer(
            batch_prompts, return_tensors="pt", padding=True, truncation=room is not None, max_length=room
        )
        encoded = encoded.to(accelerator.device)
        queries, query_mask = encoded["input_ids"], encoded["attention_mask"]
        context = queries.shape[1]
        unwrapped_policy.eval()
        raw, _ = sample_responses(
            unwrapped_policy, queries, query_mask, config.response_length, config.temperature, eos_id, pad_id, generator
        )
        # Truncate after the first EOS (Huang et al. 2024); the padding is masked from every loss.
        responses, mask, contains_eos = truncate_after_eos(raw, eos_id, pad_id)
        input_ids = torch.cat([queries, responses], dim=1)
        attention_mask = torch.cat([query_mask.bool(), mask], dim=1).long()

        # 2. Logprobs of policy and reference, values (with a critic), and the reward's score at the EOS token.
        # Rows go through in groups of similar length (harness.batching): the same numbers on less padding.
        groups = length_groups(mask.sum(1), fixed=context)
        rollout = (groups, input_ids, attention_mask, responses, mask)
        with torch.no_grad():
            for model in trained:
                model.eval()
            logprobs, entropies = by_length(*rollout, partial(logprobs_of, policy, config.temperature, True))
            entropy = masked_mean(entropies, mask)  # per token, exact
            with as_reference(models, unwrapped_policy) as reference:
                (ref_logprobs,) = by_length(*rollout, partial(logprobs_of, reference, config.temperature, False))
            if critic:
                (values,) = by_length(*rollout, partial(values_of, value_model))
        completions = tokenizer.batch_decode(responses, skip_special_tokens=True)
        raw_scores = torch.tensor(
            reward.fn(batch_prompts, [c.strip() for c in completions]), dtype=torch.float, device=accelerator.device
        )
        scores = apply_missing_eos_penalty(raw_scores, contains_eos, config.missing_eos_penalty)

        # 3. Per-token rewards: -beta KL_t at every token, plus the score at the last one (Ziegler et al. 2019)
        kl = kl_estimate(logprobs, ref_logprobs, config.kl_estimator) * mask
        rewards, non_score_rewards = per_token_rewards(scores, kl, mask, kl_controller.value)
        if config.whiten_rewards:
            rewards = masked_whiten(rewards, mask, shift_mean=False) * mask

        # 4. Advantages and returns: GAE with a critic, else REINFORCE++'s rewards to go; whitened unless
        # normalize_advantages is off (Xu et al. 2024)
        advantages, returns = advantages_and_returns(
            rewards, values if critic else None, mask, config, partial(accelerator.reduce, reduction="sum")
        )

        # 5. PPO update: ppo_epochs passes over shuffled minibatches (Schulman et al. 2017)
        for model in trained:
            model.train()
        logged_keys = ("pg_loss", "approx_kl", "clipfrac", *(("v_loss", "vf_clip") if critic else ()))
        stats: dict[str, list[float]] = {key: [] for key in logged_keys}
        for _ in range(config.ppo_epochs):
            order = torch.randperm(config.batch_size, device=accelerator.device)
            for start in range(0, config.batch_size, minibatch_size):
                index = order[start : start + minibatch_size]
                # The minibatch's loss, in parts of similar length (harness.batching): each part is normalised by
                # the whole minibatch's token count, so the accumulated gradient is the minibatch's own.
                count = mask[index].sum()
                pieces = [index[group] for group in length_groups(mask[index].sum(1), fixed=context)]
                totals = torch.zeros(len(stats))
                optimizer.zero_grad(set_to_none=True)
                for number, rows in enumerate(pieces):
                    # several processes: gradients are averaged once, after the minibatch's last part. DDP settles in
                    # the forward pass whether the backward syncs, so the forward runs under no_sync too.
                    with no_sync(accelerator, trained, number < len(pieces) - 1):
                        width, mb_ids, mb_attention = cut_to_group(rows, mask, input_ids, attention_mask)
                        mb_responses, mb_mask, mb_logprobs, mb_advantages = (
                            t[rows, :width] for t in (responses, mask, logprobs, advantages)
                        )
                        (new_logprobs,) = logprobs_of(
                            policy, config.temperature, False, mb_ids, mb_attention, mb_responses
                        )
                        pg_loss, clipfrac, approx_kl = policy_loss(
                            new_logprobs, mb_logprobs, mb_advantages, mb_mask, config.clip_coef, count
                        )
                        loss, logged = pg_loss, [pg_loss, approx_kl, clipfrac]  # REINFORCE++: that is all (Hu 2025)
                        if critic:
                            mb_values, mb_returns = values[rows, :width], returns[rows, :width]
                            (new_values,) = values_of(value_model, mb_ids, mb_attention, mb_responses)
                            v_loss, vf_clipfrac = value_loss(
                                new_values, mb_values, mb_returns, mb_mask, config.cliprange_value, count
                            )
                            loss, logged = pg_loss + config.vf_coef * v_loss, [*logged, v_loss, vf_clipfrac]
                        accelerator.backward(loss)
                        totals += torch.stack(logged).detach().cpu()
                accelerator.clip_grad_norm_([p for model in trained for p in model.parameters()], config.max_grad_norm)
                optimizer.step()
                for key, value in zip(stats, totals.tolist(), strict=True):
                    stats[key].append(value)
        lr = scheduler.get_last_lr()[0]  # the rate this update used
        scheduler.step()
        if config.ref_ema is not None:  # the reference follows the policy (Xu et al. 2024); the next KL is to it
            update_reference(models.reference, unwrapped_policy, config.ref_ema)

        # 6. Log: what the objective is doing (reward, KL, entropy) and how the optimisation behaves
        sequence_kl = kl.sum(1)
        episodes += config.batch_size * accelerator.num_processes
        tokens_trained += int(accelerator.gather(mask.sum()).sum())
        row = {
            "objective/kl": sequence_kl.mean(),
            "objective/entropy": entropy,
            "objective/non_score_reward": non_score_rewards.sum(1).mean(),
            "objective/score": raw_scores.mean(),
            **(
                {"objective/gold_score": sum(gold(batch_prompts, [c.strip() for c in completions])) / len(completions)}
                if gold is not None
                else {}
            ),
            "objective/rlhf_reward": (scores - kl_controller.value * sequence_kl).mean(),
            "objective/missing_eos": (~contains_eos).float().mean(),
            "objective/response_length": mask.float().sum(1).mean(),
            "policy/approx_kl": sum(stats["approx_kl"]) / len(stats["approx_kl"]),
            "policy/clipfrac": sum(stats["clipfrac"]) / len(stats["clipfrac"]),
            "losses/pg_loss": sum(stats["pg_loss"]) / len(stats["pg_loss"]),
            # the critic's: REINFORCE++ has none
            **(
                {
                    "losses/v_loss": sum(stats["v_loss"]) / len(stats["v_loss"]),
                    "val/explained_variance": explained_variance(values, returns, mask),
                    "val/clipfrac": sum(stats["vf_clip"]) / len(stats["vf_clip"]),
                }
                if critic
                else {}
            ),
            "kl_coef": kl_controller.value,
            "lr": lr,
            "episodes": episodes,
            "eps": episodes / (time.perf_counter() - started),
        }
        row = {
            key: float(accelerator.reduce(torch.as_tensor(v, device=accelerator.device).float(), "mean"))
            for key, v in row.items()
        }
        history.append(row)
        if accelerator.is_main_process:
            recorder.record(row, step=update)
        # The adaptive controller sees this batch's KL (Ziegler et al. 2019)
        kl_controller.update(row["objective/kl"], config.batch_size * accelerator.num_processes)
        if update % config.save_every == 0 and update < num_updates:
            save_state(state_dir, update, parts, episodes, tokens_trained, history)
        if update in snapshot_at and accelerator.is_main_process:  # the policy along training, as saved at the end
            tokenizer.padding_side = saved_padding_side
            snapshots.save(unwrapped_policy, tokenizer, out_dir, update, num_updates, start=sft_path)
            tokenizer.padding_side = "left"

    # 7. Save the policy (safetensors) with its tokenizer; report the run
    accelerator.wait_for_everyone()
    policy = accelerator.unwrap_model(policy)
    if accelerator.is_main_process:
        if adapters.is_peft_model(policy):  # the policy's adapter; the value adapter goes, as a value model does
            adapters.save_adapter(policy, out_dir, start=sft_path)
        else:
            policy.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.padding_side = saved_padding_side
        tokenizer.save_pretrained(out_dir)
    seconds = time.perf_counter() - started
    changed = sum(not start.equal(p.detach().cpu()) for p, start in start_weights)
    tail = history[-max(1, len(history) // 10) :]  # the last tenth of the updates, for less noisy finals

    def tail_mean(key: str) -> float:
        return sum(row[key] for row in tail) / len(tail)

    gold_finals = {"gold_score": tail_mean("objective/gold_score")} if gold is not None else {}
    return {
        **gold_finals,
        "score": tail_mean("objective/score"),
        "first_score": history[0]["objective/score"],
        "kl": tail_mean("objective/kl"),
        "rlhf_reward": tail_mean("objective/rlhf_reward"),
        "entropy": tail_mean("objective/entropy"),
        "kl_coef": kl_controller.value,
        "updates": num_updates,
        "episodes": episodes,
        "episodes_per_second": episodes / seconds,
        "train_runtime_s": seconds,
        "tokens_trained": tokens_trained,
        "params_changed": changed / len(start_weights),
        "trainable_parameters": trainable,
        "total_parameters": total,
        **({"resumed_from_step": resumed_from} if resumed_from else {}),
    }


# ---------------------------------------------------------------------------------------------------------
# Checkpoints: everything the loop carries from one update to the next, so a killed build resumes exactly
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Trainables:
    """What the loop updates and a checkpoint must carry besides counters: weights, optimizer, RNG, KL beta."""

    policy: Any
    value_model: Any | None  # None: no critic (REINFORCE++)
    optimizer: Any
    scheduler: Any
    kl_controller: KLController
    generator: torch.Generator
    moving_reference: Any | None = None  # the EMA reference (ref_ema): every update moves it; None: frozen SFT


def save_state(
    state_dir: Path, update: int, parts: Trainables, episodes: int, tokens_trained: int, history: list[dict[str, float]]
) -> None:
    """Weights as safetensors; optimizer, scheduler, counters and every RNG in `state.pt` (tensors and plain
    Python only, so it loads with `weights_only=True`). Written beside, then swapped in: never half a state."""
    from safetensors.torch import save_file, save_model

    scratch = state_dir.with_name(state_dir.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if adapters.is_peft_model(parts.policy):  # the adapters only: the frozen weights are the SFT stage's
        save_file(trained_weights(parts.policy), str(scratch / "policy.safetensors"))
    else:
        save_model(parts.policy, str(scratch / "policy.safetensors"))  # save_model: tied embeddings are stored once
    if parts.value_model is not None:
        save_model(parts.value_model, str(scratch / "value.safetensors"))
    if parts.moving_reference is not None:
        save_model(parts.moving_reference, str(scratch / "reference.safetensors"))
    numpy_state = np.random.get_state()
    torch.save(
        {
            "update": update,
            "episodes": episodes,
            "tokens_trained": tokens_trained,
            "history": history,
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "kl_coef": parts.kl_controller.value,
            "rng": {
                "torch": torch.get_rng_state(),
                "generator": parts.generator.get_state(),
                "python": random.getstate(),
                "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
            },
        },
        scratch / "state.pt",
    )
    previous = state_dir.with_name(state_dir.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if state_dir.exists():
        os.replace(state_dir, previous)  # a rename: state_dir is whole or absent, never half deleted
    os.replace(scratch, state_dir)
    shutil.rmtree(previous, ignore_errors=True)


def load_state(state_dir: Path) -> dict[str, Any] | None:
    if not (state_dir / "state.pt").exists():
        return None
    return torch.load(state_dir / "state.pt", weights_only=True)


def restore_state(
    state: dict[str, Any], state_dir: Path, parts: Trainables
) -> tuple[int, int, int, list[dict[str, float]]]:
    """Put a saved state back; returns (update, episodes, tokens_trained, history) to continue from."""
    from safetensors.torch import load_file, load_model

    if adapters.is_peft_model(parts.policy):
        saved = load_file(str(state_dir / "policy.safetensors"))
        weights = trained_weights(parts.policy)
        if saved.keys() != weights.keys():
            raise HarnessError(f"{state_dir}: its adapters are not this run's; delete the folder to start over")
        with torch.no_grad():
            for name, tensor in weights.items():
                tensor.copy_(saved[name])
    else:
        load_model(parts.policy, str(state_dir / "policy.safetensors"))
    if parts.value_model is not None:
        load_model(parts.value_model, str(state_dir / "value.safetensors"))
    if parts.moving_reference is not None:
        load_model(parts.moving_reference, str(state_dir / "reference.safetensors"))
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.kl_controller.value = state["kl_coef"]
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    parts.generator.set_state(rng["generator"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    log.info("PPO: resuming from update %d (%s)", state["update"], state_dir)
    return state["update"], state["episodes"], state["tokens_trained"], list(state["history"])


# ---------------------------------------------------------------------------------------------------------
# The plugin: PPO as a cached stage on top of SFT (and the reward model, when there is one)
# ---------------------------------------------------------------------------------------------------------

# Settings added after PPO stages were cached, with the value that does what PPO did before them: at that value
# a setting stays out of the stage key, so every stage built before it (and every number quoted from one) is
# still found. Any other value is in the key.
ADDED_SETTINGS = {"ref_ema": None, "normalize_advantages": True}
NOT_IN_KEY = {"save_every"}  # where checkpoints go, not what is trained: the same policy


def stage_trainer(config: PPOConfig) -> dict[str, Any]:
    """The settings that go into the PPO stage's key."""
    return {
        key: value
        for key, value in dataclasses.asdict(config).items()
        if key not in NOT_IN_KEY and not (key in ADDED_SETTINGS and value is ADDED_SETTINGS[key])
    }


class PPO:
    def __init__(self, name: str = "ppo", init: Any = None, trainer: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.init = init  # the SFT method (Hydra builds it from `init: ${sft}`)
        self.trainer = dict(trainer or {})

    def _sft(self, run: Run) -> StageOutput:
        init = self.init
        if init is None:
            raise HarnessError("algorithm.init: PPO needs the SFT method it starts from (init: ${sft})")
        if isinstance(init, Mapping):  # built without Hydra's recursive instantiation
            from hydra.utils import instantiate

            init = instantiate(dict(init), _convert_="all")
        return init.stage(run)

    def train(self, run: Run) -> Policy:
        config = load_config(self.trainer)  # here, not in __init__, so the error stays one line
        peft = adapters.of_run(run)  # checked before the SFT stage trains
        check_reference(config, peft)
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
        }
        if peft is not None:  # only then: full fine-tuning keeps the keys its stages always had
            stage_config["peft"] = peft.stage_config()
        if snapshot_count := snapshots.requested(run):  # likewise: the policy along training
            stage_config["snapshots"] = snapshot_count
        inputs = {"sft": sft, **({"reward": reward.stages[-1]} if reward.stages else {})}

        def build(out_dir: Path) -> dict[str, Any]:
            with torch_threads(config.cpu_threads if run.device == "cpu" else None):
                return train_ppo(
                    config,
                    sft_path=sft.path,
                    reward=reward,
                    prompts=list(run.load_split("prompts")["prompt"]),
                    out_dir=out_dir,
                    recorder=run.recorder("train", out_dir),
                    device=run.device,
                    seed=run.seed,
                    gold=None if reward.is_gold or (judge := run.gold()) is None else judge.reward,
                    peft=peft,
                    snapshot_count=snapshot_count,
                )

        stage = run.stage(self.name, stage_config, inputs, build, collective=True)
        return Policy(
            path=stage.path,
            reference_path=sft.path,
            metrics={**reward.metrics, **run.training_metrics(stage)},
            proxy_reward=None if reward.is_gold else reward.fn,
            snapshots=snapshots.of_stage(stage.path),
        )
