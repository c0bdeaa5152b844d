"""`eval=diversity`: does the policy still say different things? Distinct-n over all samples (Li et al.
2016), mean length, and the mean per-token entropy of the policy along its samples."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from harness.protocols import EvalContext


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams, over the words of every text (0 when there are none)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


class DiversityEval:
    def __init__(self, name: str = "diversity") -> None:
        self.name = name

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        texts = context.completions
        metrics = {
            "distinct_1": distinct_n(texts, 1),
            "distinct_2": distinct_n(texts, 2),
            "mean_words": statistics.fmean(len(t.split()) for t in texts) if texts else 0.0,
        }
        if context.completion_ids is not None:
            metrics["mean_tokens"] = statistics.fmean(len(ids) for ids in context.completion_ids)
            _, entropies = context.policy_logprobs()
            flat = [h for row in entropies for h in row]
            metrics["entropy"] = statistics.fmean(flat) if flat else 0.0
        return metrics
