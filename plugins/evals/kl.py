"""`eval=kl`: how far the policy moved from its reference (SFT; the base model for `sft` and `base`).

Sequence-level KL(policy || reference) estimated on the policy's own samples as the mean over samples of
the summed per-token log-ratio, sum_t log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t) (the k1
estimator: unbiased, per-sample values can be negative). A policy with a closed form (best-of-n) reports it.
"""

from __future__ import annotations

import logging
import math
import statistics

from harness.api import EvalContext

log = logging.getLogger(__name__)


def sequence_kl(policy_logprobs: list[list[float]], reference_logprobs: list[list[float]]) -> list[float]:
    """Per-sample summed log-ratio log pi(y|x) - log pi_ref(y|x)."""
    return [sum(p) - sum(r) for p, r in zip(policy_logprobs, reference_logprobs, strict=True)]


class KLEval:
    def __init__(self, name: str = "kl") -> None:
        self.name = name

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        if context.policy.reference_path is None:
            log.warning("eval kl: this policy has no reference model (algorithm.reference); eval/kl is skipped")
            return {}
        if context.policy.analytic_kl is not None:
            return {"seq_kl": context.policy.analytic_kl, "seq_kl_stderr": 0.0, "analytic": 1.0}
        policy, _ = context.policy_logprobs()
        per_sample = sequence_kl(policy, context.reference_logprobs())
        context.annotate("seq_kl", per_sample)
        tokens = sum(len(p) for p in policy)
        n = len(per_sample)
        return {
            "seq_kl": statistics.fmean(per_sample),
            "seq_kl_stderr": statistics.stdev(per_sample) / math.sqrt(n) if n > 1 else 0.0,
            "token_kl": sum(per_sample) / tokens if tokens else 0.0,
            "analytic": 0.0,
        }
