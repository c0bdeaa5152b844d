"""One beta: `kl_beta` and each trainer's own KL knob, derived in this one place.

`kl_beta` is beta in the objective every KL-regularised method optimises (Ziegler et al. 2019; Rafailov et al. 2023,
eq. 3), with the KL of whole completions, in nats:

    max_pi  E_x E_{y ~ pi} [ r(x, y) ]  -  kl_beta * KL( pi(.|x) || pi_ref(.|x) ),   KL = sum over y's tokens.

Each trainer takes its coefficient in its own units. What each one multiplies (TRL 1.16, read in its code):

    method (trainer)                    knob      kind       native value
    DPO, rDPO, hinge, NCA (DPOTrainer)  beta      dpo        kl_beta
    IPO, sigmoid_norm (DPOTrainer)      beta      dpo        kl_beta * L
    KTO (KTOTrainer)                    beta      sequence   kl_beta
    online DPO (OnlineDPOTrainer)       beta      sequence   kl_beta
    RLOO (RLOOTrainer)                  beta      sequence   kl_beta
    PPO, REINFORCE++ (ppo/)             kl_coef   sequence   kl_beta   (ppo.yaml: `${default:${kl_beta},...}`)
    GRPO, DAPO (GRPOTrainer)            beta      grpo       kl_beta / sigma   (scale_rewards group or batch)
    Dr. GRPO (GRPOTrainer)              beta      grpo       kl_beta           (scale_rewards none)

An algorithm's YAML names its knob and its kind (`kl_knob: {field: beta, kind: grpo, kl_beta: "${kl_beta}"}`),
which TRLMethod reads; PPO's trainer is ours and takes kl_beta as it is. With kl_beta null every method keeps its
own default. An algorithm with no KL term (CPO, SimPO, ORPO, RAFT, best-of-n; base and SFT train none) declares
why in `kl_beta_ignored:`, and a job that sets kl_beta for it warns with that reason (harness/declarations.py).

Why:
- DPO: the loss is -log sigmoid(beta (rho_w - rho_l)) with rho the log-ratio summed over the completion: beta is
  eq. 3's. So are rDPO's, the hinge's and KTO's (beta (rho - z0), rho and z0 summed), and online DPO's (sums, for
  its sigmoid and ipo losses alike). NCA's (`nca_pair`) multiplies each completion's summed rho on its own, not the
  pair's difference: its reward model beta rho is DPO's, the optimum of eq. 3's objective (Chen et al. 2024).
- IPO in DPOTrainer: TRL divides each rho by its completion's length (confirmed with the IPO authors, says its
  comment), so the loss's target is rho_w / L_w - rho_l / L_l = 1 / (2 beta). With L_w = L_l = L that is
  rho_w - rho_l = L / (2 beta) = 1 / (2 tau), IPO's tau being the sequence-level KL coefficient (Azar et al. 2023,
  eq. 17): beta = tau * L. L is the mean length in tokens (EOS included) of the training pairs' completions,
  measured when the stage is built; pairs of unequal lengths make it approximate. `sigmoid_norm` likewise.
- RLOO: r - beta * sum_t k1_t, before the leave-one-out baseline and the optional advantage normalisation (which
  scales reward and KL alike): the sequence KL in the reward, as PPO's.
- PPO, REINFORCE++: r_t = -kl_coef KL_t at every token plus the score at the last; the returns (gamma 1) and GAE
  sum them, and whitening the advantages scales both terms alike: r - kl_coef * sum_t KL_t.
- GRPO family: below.

sigma and L are recorded in the stage's metrics (`train/kl_beta/...` in result.json), beside the native value.

GRPO. TRL's per-token loss is -A_i * ratio_t + beta * k3_t (k3 = pi_ref/pi - log(pi_ref/pi) - 1), summed over a
completion's tokens and divided by a normaliser: the completion's length (`loss_type=grpo`), the batch's token count
(dapo, bnpo) or a constant (dr_grpo). Both terms share the normaliser, so within a completion the trade-off is the
same for every loss type: the advantage, a sequence-level quantity broadcast to every token, against beta times the
KL summed over the tokens (on-policy, the sum of -A_i grad log pi(y_t) is -A_i grad log pi(y)). The length cancels;
beta is already per sequence. The normaliser only weighs completions against each other (grpo's 1/|y| favours
short ones: Liu et al. 2025), not reward against KL. What does change the units is `scale_rewards`: with `group`
(or `batch`), A = (r - mean) / sigma, so beta weighs the KL against r / sigma, and the coefficient of the KL in
units of r is beta * sigma. Hence beta = kl_beta / sigma, sigma the mean within-group standard deviation (TRL's
Bessel-corrected `nanstd`) of the starting policy's rewards, missing-EOS penalty included, over `num_generations`
samples of each of `MEASURED_PROMPTS` training prompts (the batch's standard deviation for `batch`). With
`scale_rewards=none` (Dr. GRPO) beta is kl_beta.

Caveats of the GRPO conversion (seed 0 on the testbed, learned reward, kl_beta 0.1):
- sigma is measured once, at the start. Each group's effective coefficient is beta * sigma_group, and the spread
  shrinks as the policy sharpens (TRL's logged reward std fell from 0.92 to 0.61 over 150 steps), so the effective
  coefficient falls during training.
- `loss_type=grpo` weighs each completion by 1 / its length, which favours long completions (Liu et al. 2025): a
  quarter of GRPO's samples ran to the length cap, and it landed at a KL of 3.8 nats against RLOO's 1.7 and PPO's
  2.3; the same beta with the token-level normaliser (loss_type=dapo) landed at 1.5. That is the loss's length
  bias, not its beta.
- The KL is a loss, not a reward: the gradient of k3 as a loss is, per token, the gradient of KL(pi_ref || pi) at
  the sampled prefix (Tang and Munos 2025, "On a few pitfalls in KL divergence gradient estimation for RL"); it
  ignores how the policy changes which prefixes are visited. PPO and RLOO put k1 in the reward, whose
  score-function gradient is that of the sequence KL(pi || pi_ref). The two agree to second order near pi_ref.

Missing-EOS penalty: one setting, `algorithm.missing_eos_penalty` (a number >= 0; 0 = off), subtracted from the score of
a completion that never emitted EOS in every method that samples (ppo.apply_missing_eos_penalty,
trl_method.as_trl_reward); with scale_rewards it is in sigma too.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.api import HarnessError

KINDS = ("sequence", "dpo", "grpo")
MEASURED_PROMPTS = 64  # training prompts sigma is measured on (x num_generations samples: 512 on the testbed)

# DPOTrainer losses (TRL 1.16 `_compute_loss`) whose beta multiplies the per-token mean log-ratio, and those that
# have no beta; every other loss type multiplies the summed (sequence) log-ratio.
TOKEN_MEAN_LOSSES = frozenset({"ipo", "sigmoid_norm"})
BETA_FREE_LOSSES = frozenset({"sft"})


def check_kind(kind: str) -> str:
    """`kind` if it is one of KINDS, else a one-line error naming it."""
    if kind not in KINDS:
        raise HarnessError(f"algorithm.kl_knob.kind={kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def loss_types(trainer: Mapping[str, Any]) -> list[str]:
    """DPOTrainer's `loss_type`, a name or a list of them (TRL 1.16 combines several), as a list."""
    value = trainer.get("loss_type", "sigmoid")
    return [value] if isinstance(value, str) else list(value)


def measurement(kind: str, trainer: Mapping[str, Any]) -> str | None:
    """What the conversion needs measured before training: `completion_tokens` (L), `reward_std` (sigma) or None."""
    if check_kind(kind) == "dpo":
        kinds = {loss in TOKEN_MEAN_LOSSES for loss in loss_types(trainer) if loss not in BETA_FREE_LOSSES}
        if len(kinds) > 1:
            raise HarnessError(
                f"algorithm.trainer.loss_type={loss_types(trainer)}: mixes losses on the summed and on the per-token "
                f"mean log-ratio ({', '.join(sorted(TOKEN_MEAN_LOSSES))}), so no one beta is kl_beta for both; "
                "expected losses of one kind"
            )
        return "completion_tokens" if kinds == {True} else None
    if kind == "grpo" and trainer.get("scale_rewards", "group") in ("group", "batch", True):
        return "reward_std"
    return None


def native_beta(
    kind: str,
    kl_beta: float,
    trainer: Mapping[str, Any],
    reward_std: float | None = None,
    completion_tokens: float | None = None,
) -> float:
    """The value of the trainer's knob that puts `kl_beta` on the sequence-level KL (the table above)."""
    needed = measurement(kind, trainer)
    if needed == "completion_tokens":
        if completion_tokens is None or completion_tokens <= 0:
            raise ValueError(f"completion_tokens={completion_tokens}: the token-mean conversion needs a length > 0")
        return kl_beta * completion_tokens
    if needed == "reward_std":
        if reward_std is None or reward_std <= 0:
            raise HarnessError(
                f"kl_beta={kl_beta}: the starting policy's rewards do not vary (std {reward_std}), so GRPO's "
                "advantages have no scale to convert beta into; expected scale_rewards=none, or no kl_beta"
            )
        return kl_beta / reward_std
    return kl_beta


def group_reward_std(rewards: Sequence[float], group_size: int, scale_rewards: str = "group") -> float:
    """The std GRPO divides advantages by (TRL's Bessel-corrected `nanstd`), averaged over the groups of
    `group_size` consecutive rewards for `group`; over all rewards for `batch`."""
    if group_size < 2 or len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards in groups of {group_size}: expected whole groups of 2 or more")
    if scale_rewards == "batch":
        return statistics.stdev(rewards)
    groups = [rewards[start : start + group_size] for start in range(0, len(rewards), group_size)]
    return statistics.fmean(statistics.stdev(group) for group in groups)


def mean_completion_tokens(completions: Sequence[str], tokenizer: Any) -> float:
    """Mean token count of completions as DPOTrainer sees them: EOS appended where missing."""
    eos = tokenizer.eos_token or ""
    counts = [
        len(tokenizer(text, add_special_tokens=False)["input_ids"]) + (0 if eos and text.endswith(eos) else 1)
        for text in completions
    ]
    return statistics.fmean(counts)


def measure_reward_std(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    reward_func: Callable[..., list[float]],
    trainer: Mapping[str, Any],
    seed: int,
) -> float:
    """sigma: the starting policy's rewards on `MEASURED_PROMPTS` training prompts, `num_generations` samples each,
    drawn with the trainer's sampling settings and scored by the reward TRL will see (`reward_func`, the
    missing-EOS penalty included)."""
    from harness.api import sample_completions

    group_size = int(trainer.get("num_generations", 8))
    chosen = list(prompts[:MEASURED_PROMPTS])
    expanded = [prompt for prompt in chosen for _ in range(group_size)]
    settings = {
        "max_new_tokens": int(trainer.get("max_completion_length", 256)),
        "temperature": float(trainer.get("temperature", 1.0)),
        "top_k": int(trainer.get("top_k") or 0),
        "top_p": float(trainer.get("top_p", 1.0)),
        "batch_size": 256,
        "seed": seed,
    }
    device = str(next(model.parameters()).device)
    samples = sample_completions(model, tokenizer, expanded, settings, device)
    rewards = reward_func(prompts=expanded, completions=samples.completions, completion_ids=samples.token_ids)
    return group_reward_std(rewards, group_size, str(trainer.get("scale_rewards", "group")))
