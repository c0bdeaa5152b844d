"""PPO's math on small fixed tensors, each worked out by hand in the docstring (plugins/algorithms/ppo/maths.py)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from plugins.algorithms.ppo import (
    KLController,
    PPOConfig,
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
    response_logits,
    sample_responses,
    score_positions,
    truncate_after_eos,
    update_reference,
    value_loss,
)

LN2 = math.log(2.0)


def close(actual: torch.Tensor, expected: list | float, atol: float = 1e-6) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# --- logprobs ------------------------------------------------------------------------------------------


def test_logprobs_come_from_temperature_scaled_logits() -> None:
    """logits [0, 2 ln 2]: at T = 1, softmax = [1, 4] / 5, so log p(1) = ln 0.8 and log p(0) = ln 0.2;
    at T = 2 the logits are [0, ln 2], softmax = [1, 2] / 3, so log p(1) = ln 2/3."""
    logits = torch.tensor([[[0.0, 2 * LN2], [0.0, 2 * LN2]]])
    tokens = torch.tensor([[1, 0]])
    close(logprobs_from_logits(logits, tokens, temperature=1.0), [[math.log(0.8), math.log(0.2)]])
    close(logprobs_from_logits(logits, tokens, temperature=2.0), [[math.log(2 / 3), math.log(1 / 3)]])


def test_entropy_from_logits() -> None:
    """Uniform over 4 tokens: ln 4. [0, 2 ln 2] at T = 2 is [1/3, 2/3]: -(1/3 ln 1/3 + 2/3 ln 2/3)."""
    close(entropy_from_logits(torch.zeros(1, 4), temperature=1.0), [math.log(4)])
    expected = -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    close(entropy_from_logits(torch.tensor([[0.0, 2 * LN2]]), temperature=2.0), [expected])


# --- EOS truncation, score position, missing-EOS penalty --------------------------------------------------

EOS, PAD = 2, 0


def test_tokens_after_the_first_eos_become_padding_and_are_masked() -> None:
    """Row 0 ends at its EOS (index 1): the later 7 8 and even a second EOS become pad. Row 1 never ends: kept
    whole, contains_eos False. Row 2 ends at once: only its EOS is real."""
    responses = torch.tensor([[5, EOS, 7, EOS], [5, 6, 7, 8], [EOS, 9, 9, 9]])
    truncated, mask, contains_eos = truncate_after_eos(responses, EOS, PAD)
    assert truncated.tolist() == [[5, EOS, PAD, PAD], [5, 6, 7, 8], [EOS, PAD, PAD, PAD]]
    assert mask.tolist() == [[True, True, False, False], [True, True, True, True], [True, False, False, False]]
    assert contains_eos.tolist() == [True, False, True]


def test_the_score_is_paid_at_the_last_real_token() -> None:
    """Masks of lengths 2, 4, 1: last real tokens at 1, 3, 0 (the EOS, or the final token without one)."""
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert score_positions(mask).tolist() == [1, 3, 0]


def test_a_response_without_eos_gets_the_penalty() -> None:
    """Scores [0.9, 0.8, 0.5], only the second lacks EOS: penalty 1 is subtracted from it (0.8 - 1 = -0.2), as
    TRL's online trainers do; None turns it off."""
    scores, contains_eos = torch.tensor([0.9, 0.8, 0.5]), torch.tensor([True, False, True])
    close(apply_missing_eos_penalty(scores, contains_eos, 1.0), [0.9, -0.2, 0.5])
    close(apply_missing_eos_penalty(scores, contains_eos, None), [0.9, 0.8, 0.5])


def test_per_token_rewards_are_the_kl_penalty_plus_the_score_at_the_end() -> None:
    """kl_coef 0.5, KL [0.2, 0.4, 0.6 | pad]: non-score rewards [-0.1, -0.2, -0.3, 0]; the score 1.0 lands on
    the last real token (index 2): [-0.1, -0.2, 0.7, 0]. Row 2 has one real token: [-0.5 + 0.25, 0, 0, 0]."""
    kl = torch.tensor([[0.2, 0.4, 0.6, 9.0], [1.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    rewards, non_score = per_token_rewards(torch.tensor([1.0, 0.25]), kl, mask, kl_coef=0.5)
    close(non_score, [[-0.1, -0.2, -0.3, 0.0], [-0.5, 0.0, 0.0, 0.0]])
    close(rewards, [[-0.1, -0.2, 0.7, 0.0], [-0.25, 0.0, 0.0, 0.0]])


# --- KL estimators --------------------------------------------------------------------------------------


def test_kl_estimators_k1_and_k3_on_single_tokens() -> None:
    """p = 1/2, p_ref = 1/4: k1 = ln 2; r = p_ref / p = 1/2, k3 = (1/2 - 1) - ln 1/2 = ln 2 - 1/2.
    p = 1/4, p_ref = 1/2: k1 = -ln 2 (negative); r = 2, k3 = (2 - 1) - ln 2 = 1 - ln 2 (positive)."""
    logp = torch.log(torch.tensor([0.5, 0.25]))
    ref = torch.log(torch.tensor([0.25, 0.5]))
    close(kl_estimate(logp, ref, "k1"), [LN2, -LN2])
    close(kl_estimate(logp, ref, "k3"), [LN2 - 0.5, 1 - LN2])


def test_both_estimators_are_unbiased_and_k3_is_never_negative() -> None:
    """p = [1/2, 1/4, 1/4], p_ref = [1/4, 1/4, 1/2]: KL(p || p_ref) = 1/2 ln 2 + 0 + 1/4 ln 1/2 = ln 2 / 4.
    E_p[k1] is that sum by definition; E_p[k3] = sum p_ref - 1 + KL = KL. k3 = (r - 1) - ln r >= 0 for all r."""
    p, ref = torch.tensor([0.5, 0.25, 0.25]), torch.tensor([0.25, 0.25, 0.5])
    for estimator in ("k1", "k3"):
        close((p * kl_estimate(p.log(), ref.log(), estimator)).sum(), LN2 / 4)
    log_ratios = torch.linspace(-5, 5, 101)
    assert (kl_estimate(log_ratios, torch.zeros(101), "k3") >= 0).all()
    with pytest.raises(ValueError):
        kl_estimate(p, ref, "k2")


# --- masked statistics ------------------------------------------------------------------------------------


def test_masked_whitening_uses_only_the_masked_entries() -> None:
    """[2, 4, 6 | 100]: mean 4, variance (4 + 0 + 4) / (3 - 1) = 4 (Bessel), std 2 -> [-1, 0, 1]; the padded
    100 does not count. shift_mean=False adds the mean back: [3, 4, 5]."""
    values = torch.tensor([[2.0, 4.0], [6.0, 100.0]])
    mask = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)
    close(masked_mean(values, mask), 4.0)
    close(masked_var(values, mask), 4.0)
    whitened = masked_whiten(values, mask)
    close(whitened[mask], [-1.0, 0.0, 1.0], atol=1e-4)
    close(masked_whiten(values, mask, shift_mean=False)[mask], [3.0, 4.0, 5.0], atol=1e-4)


def test_explained_variance() -> None:
    """Returns [1, 2, 3]: V = R explains all (1); V = mean 2 explains nothing (0); padding ignored."""
    returns = torch.tensor([[1.0, 2.0, 3.0, 50.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(returns, 2.0), returns, mask) == pytest.approx(0.0)


# --- GAE ----------------------------------------------------------------------------------------------------


def test_gae_with_lambda_and_masked_padding() -> None:
    """r = [0, 0, 1 | 7], V = [.5, .5, .5 | 9], gamma 1, lambda 0.5; the padded 7 and 9 must not count.
    t=2: delta = 1 + 0 - .5 = .5 (nothing after the end)  A2 = .5
    t=1: delta = 0 + .5 - .5 = 0                          A1 = 0 + .5 * .5 = .25
    t=0: delta = 0                                        A0 = .5 * .25 = .125
    returns = A + V = [.625, .75, 1.0 | 0]; A and returns are 0 on padding."""
    rewards = torch.tensor([[0.0, 0.0, 1.0, 7.0]])
    values = torch.tensor([[0.5, 0.5, 0.5, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, gae_lambda=0.5)
    close(advantages, [[0.125, 0.25, 0.5, 0.0]])
    close(returns, [[0.625, 0.75, 1.0, 0.0]])


def test_gae_with_discount_and_lambda_one_is_the_discounted_return_minus_the_value() -> None:
    """gamma .9, lambda 1, r = [0, 0, 1], V = .5 everywhere:
    t=2: delta = 1 - .5 = .5                       A2 = .5
    t=1: delta = 0 + .9 * .5 - .5 = -.05           A1 = -.05 + .9 * .5 = .4
    t=0: delta = -.05                              A0 = -.05 + .9 * .4 = .31
    i.e. G_t - V_t with G = [.81, .9, 1]; returns = G. A second row of one token: A = r - V = .3 - .5."""
    rewards = torch.tensor([[0.0, 0.0, 1.0], [0.3, 5.0, 5.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [0.5, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.bool)
    advantages, returns = gae(rewards, values, mask, gamma=0.9, gae_lambda=1.0)
    close(advantages, [[0.31, 0.4, 0.5], [-0.2, 0.0, 0.0]])
    close(returns, [[0.81, 0.9, 1.0], [0.3, 0.0, 0.0]])


# --- REINFORCE++ (Hu 2025): rewards to go, whitened over the global batch ----------------------------------


def test_reinforce_returns_are_the_score_minus_the_kl_penalty_still_to_come() -> None:
    """kl_coef .5, KL [.2, .4, .6 | pad], score 1: rewards [-.1, -.2, .7 | 0] (the score on the last real token).
    Rewards to go, gamma 1: t=2 .7; t=1 -.2 + .7 = .5; t=0 -.1 + .5 = .4, i.e. G_t = 1 - .5 sum_{i>=t} KL_i:
    1 - .5 * 1.2 = .4, 1 - .5 * 1.0 = .5, 1 - .5 * .6 = .7. Row 2, one token with KL 1 and score .25: -.25.
    Padding is 0, and a reward on padding (7 below) never flows back into a real token."""
    kl = torch.tensor([[0.2, 0.4, 0.6, 9.0], [1.0, 9.0, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
    rewards, _ = per_token_rewards(torch.tensor([1.0, 0.25]), kl, mask, kl_coef=0.5)
    close(reinforce_returns(rewards, mask), [[0.4, 0.5, 0.7, 0.0], [-0.25, 0.0, 0.0, 0.0]])
    rewards[:, 3] = 7.0
    close(reinforce_returns(rewards, mask), [[0.4, 0.5, 0.7, 0.0], [-0.25, 0.0, 0.0, 0.0]])


def test_reinforce_returns_without_kl_give_every_token_the_sequence_score() -> None:
    """kl_coef 0: plain REINFORCE, each real token's return is its response's score (.3 and -1)."""
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    rewards, _ = per_token_rewards(torch.tensor([0.3, -1.0]), torch.ones(2, 3), mask, kl_coef=0.0)
    close(reinforce_returns(rewards, mask), [[0.3, 0.3, 0.3], [-1.0, -1.0, 0.0]])


def test_global_whitening_uses_every_process_tokens() -> None:
    """Returns [2, 4 | pad] on process A and [6 | pad] on process B. The global batch is [2, 4, 6]: mean 4,
    variance (4 + 0 + 4) / (3 - 1) = 4 (Bessel), std 2, so A gets [-1, 0] and B [1] (zero on padding).
    `all_sum` adds the other process's [sum x, sum x^2, count]: B's is [6, 36, 1], A's [6, 4 + 16, 2].
    Whitening A alone would give [-0.71, 0.71]: the mean and std must be the global batch's (Hu 2025)."""
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    shard_a = torch.tensor([[2.0, 4.0, 100.0]])
    shard_b = torch.tensor([[6.0, 100.0, 100.0]])
    mask_b = torch.tensor([[1, 0, 0]], dtype=torch.bool)
    b_stats, a_stats = torch.tensor([6.0, 36.0, 1.0]), torch.tensor([6.0, 20.0, 2.0])
    close(global_masked_whiten(shard_a, mask, lambda stats: stats + b_stats.double()), [[-1.0, 0.0, 0.0]], atol=1e-4)
    close(global_masked_whiten(shard_b, mask_b, lambda stats: stats + a_stats.double()), [[1.0, 0.0, 0.0]], atol=1e-4)
    close(global_masked_whiten(shard_a, mask)[mask], [-(0.5**0.5), 0.5**0.5], atol=1e-4)


def test_global_whitening_on_one_process_is_masked_whitening() -> None:
    """One process: the one-pass float64 statistics give masked_whiten's numbers (mean 0, std 1 over real
    tokens), padding set to 0."""
    generator = torch.Generator().manual_seed(0)
    values = torch.randn(6, 9, generator=generator) * 3 + 1
    mask = torch.rand(6, 9, generator=generator) > 0.3
    close(global_masked_whiten(values, mask), (masked_whiten(values, mask) * mask).tolist(), atol=1e-5)


# --- advantage normalisation on and off (Xu et al. 2024), for both estimators ------------------------------

# Two responses, rewards [0, 1] and [3 | 7 on padding], values 0, gamma = lambda = 1: each token's advantage is its
# rewards to go, [1, 1] and [3 | 0], and so is its return.
REWARDS = torch.tensor([[0.0, 1.0], [3.0, 7.0]])
VALUES = torch.zeros(2, 2)
MASK = torch.tensor([[1, 1], [1, 0]], dtype=torch.bool)


@pytest.mark.parametrize("estimator", ["gae", "reinforce++"])
def test_advantages_without_normalisation_are_the_raw_ones(estimator: str) -> None:
    """normalize_advantages=False: A = [[1, 1], [3, 0]] as computed, GAE's (values 0) and REINFORCE++'s alike.
    On (the default): mean 5/3 over the 3 real tokens, variance ((2/3)^2 + (2/3)^2 + (4/3)^2) / (3 - 1) = 4/3
    (Bessel), std 1.1547: [[-0.57735, -0.57735], [1.1547, 0]]. The returns (the critic's targets) are never
    whitened."""
    values = VALUES if estimator == "gae" else None
    config = PPOConfig(advantage_estimator=estimator, gae_lambda=1.0)
    raw, raw_returns = advantages_and_returns(
        REWARDS, values, MASK, dataclasses.replace(config, normalize_advantages=False)
    )
    close(raw, [[1.0, 1.0], [3.0, 0.0]])
    close(raw_returns, [[1.0, 1.0], [3.0, 0.0]])
    whitened, returns = advantages_and_returns(REWARDS, values, MASK, config)
    third = 1 / math.sqrt(3)
    close(whitened, [[-third, -third], [2 * third, 0.0]], atol=1e-5)
    close(returns, raw_returns)


def test_default_advantages_are_bit_for_bit_what_ppo_always_computed() -> None:
    """The default must keep every cached PPO stage's numbers: GAE, then masked_whiten * mask, exactly."""
    generator = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    mask = torch.rand(5, 7, generator=generator) > 0.3
    advantages, returns = advantages_and_returns(rewards, values, mask, PPOConfig())
    expected, expected_returns = gae(rewards, values, mask, 1.0, 0.95)
    assert torch.equal(advantages, masked_whiten(expected, mask) * mask)
    assert torch.equal(returns, expected_returns)
    reinforce, _ = advantages_and_returns(rewards, None, mask, PPOConfig(advantage_estimator="reinforce++"))
    assert torch.equal(reinforce, global_masked_whiten(reinforce_returns(rewards, mask), mask))


# --- the EMA reference (Xu et al. 2024) -------------------------------------------------------------------


def test_the_ema_reference_moves_one_minus_ema_of_the_way_to_the_policy_per_update() -> None:
    """ref_ema 0.75, reference weights 0, policy weights 1 (and bias -2): after one update the reference is
    0.75 * 0 + 0.25 * 1 = 0.25 (bias -0.5); after a second, 0.75 * 0.25 + 0.25 = 0.4375 = 1 - 0.75^2 (bias
    -0.875). Exact in binary floating point. The policy is not touched; ref_ema 0 copies it."""
    reference, policy = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        reference.weight.fill_(0.0), reference.bias.fill_(0.0)
        policy.weight.fill_(1.0), policy.bias.fill_(-2.0)
    update_reference(reference, policy, 0.75)
    assert reference.weight.tolist() == [[0.25, 0.25]] and reference.bias.tolist() == [-0.5]
    update_reference(reference, policy, 0.75)
    assert reference.weight.tolist() == [[0.4375, 0.4375]] and reference.bias.tolist() == [-0.875]
    assert policy.weight.tolist() == [[1.0, 1.0]] and policy.bias.tolist() == [-2.0]
    update_reference(reference, policy, 0.0)
    assert torch.equal(reference.weight, policy.weight) and torch.equal(reference.bias, policy.bias)


def test_the_ema_reference_refuses_a_policy_of_another_shape() -> None:
    with pytest.raises(ValueError, match="reference weight"):
        update_reference(torch.nn.Linear(2, 1), torch.nn.Linear(3, 1), 0.9)


# --- clipped losses ---------------------------------------------------------------------------------------


def clipped(ratio: float, advantage: float, clip_coef: float = 0.2) -> tuple[float, float, float, float]:
    """(pg_loss, clipfrac, approx_kl, d pg_loss / d logprob) for one token with this ratio and advantage."""
    old = torch.tensor([[math.log(0.5)]])
    new = (old + math.log(ratio)).requires_grad_(True)
    pg_loss, clipfrac, approx_kl = policy_loss(new, old, torch.tensor([[advantage]]), torch.ones(1, 1), clip_coef)
    pg_loss.backward()
    return float(pg_loss.detach()), float(clipfrac), float(approx_kl), float(new.grad)


@pytest.mark.parametrize(
    ("ratio", "advantage", "loss", "clipfrac", "grad"),
    [
        # A > 0: max(-A r, -A clip(r)); inside [0.8, 1.2] the ratio itself counts: -1.1, gradient -A r = -1.1
        (1.1, 1.0, -1.1, 0.0, -1.1),
        # either side of the boundary 1 + e = 1.2: just inside, unclipped; just beyond, clipped to -1.2
        (1.19, 1.0, -1.19, 0.0, -1.19),
        (1.21, 1.0, -1.2, 1.0, 0.0),
        # beyond it: max(-1.5, -1.2) = -1.2, clipped: no gradient pushes the ratio further up
        (1.5, 1.0, -1.2, 1.0, 0.0),
        # A > 0 and r below 1 - e: max(-0.5, -0.8) = -0.5, the pessimistic unclipped term keeps its gradient
        (0.5, 1.0, -0.5, 0.0, -0.5),
        # A < 0: max(-A r, -A clip(r)) = max(r, clip(r)); r = 0.9 inside: 0.9, gradient 0.9
        (0.9, -1.0, 0.9, 0.0, 0.9),
        # either side of the boundary 1 - e = 0.8
        (0.81, -1.0, 0.81, 0.0, 0.81),
        (0.79, -1.0, 0.8, 1.0, 0.0),
        # beyond it: max(0.5, 0.8) = 0.8, clipped: no gradient pushes the ratio further down
        (0.5, -1.0, 0.8, 1.0, 0.0),
        # A < 0 and r above 1 + e: max(1.5, 1.2) = 1.5, unclipped, gradient 1.5
        (1.5, -1.0, 1.5, 0.0, 1.5),
    ],
)
def test_clipped_policy_loss(ratio: float, advantage: float, loss: float, clipfrac: float, grad: float) -> None:
    pg_loss, frac, approx_kl, gradient = clipped(ratio, advantage)
    assert pg_loss == pytest.approx(loss)
    assert frac == clipfrac
    assert gradient == pytest.approx(grad, abs=1e-6)
    assert approx_kl == pytest.approx((ratio - 1) - math.log(ratio), abs=1e-6)  # k3 of KL(old || new)


def test_policy_loss_is_a_masked_mean() -> None:
    """Ratios [1.1, 1.5 | pad], A = 1: (-1.1 + -1.2) / 2 = -1.15; half the real tokens clipped."""
    old = torch.zeros(1, 3)
    new = torch.log(torch.tensor([[1.1, 1.5, 3.0]]))
    mask = torch.tensor([[1, 1, 0]], dtype=torch.bool)
    pg_loss, clipfrac, _ = policy_loss(new, old, torch.ones(1, 3), mask, clip_coef=0.2)
    close(pg_loss, -1.15)
    close(clipfrac, 0.5)


def test_clipped_value_loss() -> None:
    """V_old = .5, R = 1, cliprange .2, so the clipped prediction stays in [.3, .7]:
    V = .6: (.6 - 1)^2 = .16 either way                      -> .16, not clipped
    V = 1.0: unclipped 0, clipped .7 gives .09 (larger)      -> .09, clipped
    V = 0.0: unclipped 1, clipped .3 gives .49               -> 1.0, not clipped
    v_loss = 0.5 * mean(.16, .09, 1.0) = 0.5 * 1.25 / 3; a padded 4th entry is ignored; clipfrac 1/3."""
    old = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    returns = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    new = torch.tensor([[0.6, 1.0, 0.0, 42.0]])
    mask = torch.tensor([[1, 1, 1, 0]], dtype=torch.bool)
    v_loss, clipfrac = value_loss(new, old, returns, mask, cliprange_value=0.2)
    close(v_loss, 0.5 * 1.25 / 3)
    close(clipfrac, 1 / 3)


# --- adaptive KL controller -------------------------------------------------------------------------------


def test_adaptive_kl_controller_follows_ziegler_et_al() -> None:
    """beta .1, target 6, horizon 10000, 64 episodes per batch: e = clip(KL / 6 - 1, -.2, .2),
    beta <- beta (1 + 64 e / 10000).
    KL 9 -> e = .5 clipped to .2 -> .1 * 1.00128;  KL 3 -> e = -.2 -> .1 * .99872;  KL 6.6 -> e = .1 -> .1 * 1.00064.
    Not adaptive: beta stays .1."""
    for kl, expected in ((9.0, 0.100128), (3.0, 0.099872), (6.6, 0.100064)):
        controller = KLController(0.1, adaptive=True, target=6.0, horizon=10_000)
        controller.update(kl, episodes=64)
        assert controller.value == pytest.approx(expected)
    fixed = KLController(0.1)
    fixed.update(100.0, episodes=64)
    assert fixed.value == 0.1


# --- rollout: the KV-cached sampling loop ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm() -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=12, n_positions=32, n_layer=2, n_embd=16, n_head=2, bos_token_id=1, eos_token_id=2)
    return GPT2LMHeadModel(config).eval()


def test_sampling_logprobs_equal_a_full_forward_pass(tiny_lm) -> None:
    """The cached loop over left-padded prompts and one forward pass over prompt + response (what the update
    uses) give the same logprobs at temperature 0.7: positions skip the padding in both (Huang et al. 2024)."""
    queries = torch.tensor([[0, 0, 1, 5], [1, 6, 7, 8]])
    query_mask = queries != 0
    generator = torch.Generator().manual_seed(0)
    raw, sampled_logprobs = sample_responses(tiny_lm, queries, query_mask, 10, 0.7, EOS, PAD, generator)
    responses, mask, _ = truncate_after_eos(raw, EOS, PAD)
    input_ids = torch.cat([queries, responses], dim=1)
    attention_mask = torch.cat([query_mask, mask], dim=1).long()
    with torch.no_grad():
        logits = response_logits(tiny_lm, input_ids, attention_mask, queries.shape[1])
    recomputed = logprobs_from_logits(logits, responses, 0.7)
    close(recomputed[mask], sampled_logprobs[mask].tolist(), atol=1e-4)


def test_sampling_is_seeded_and_pads_after_eos(tiny_lm) -> None:
    queries = torch.tensor([[1, 5], [1, 6]])
    first, _ = sample_responses(tiny_lm, queries, queries != 0, 30, 1.0, EOS, PAD, torch.Generator().manual_seed(3))
    again, _ = sample_responses(tiny_lm, queries, queries != 0, 30, 1.0, EOS, PAD, torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    for row in first.tolist():
        if EOS in row:
            assert set(row[row.index(EOS) + 1 :]) <= {PAD}
