"""PPO's math: pure functions on tensors, each worked out by hand in tests/test_ppo_math.py.

The per-token quantities of one rollout, in the loop's order: logprobs and entropy under the sampling temperature,
the response cut after its first EOS, the score with its missing-EOS penalty, the KL estimate to the reference, the
per-token rewards (Ziegler et al. 2019), the advantages and returns (GAE, Schulman et al. 2016; or REINFORCE++'s
rewards to go, Hu 2025), and the two losses (Schulman et al. 2017; Huang et al. 2022).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

import torch
import torch.nn.functional as F

if typing.TYPE_CHECKING:
    from plugins.algorithms.ppo.config import PPOConfig


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
