"""`eval=diversity`: does the policy still say different things? Distinct-n over all samples (Li et al.
2016), mean length, and the mean per-token entropy of the policy along its samples.

Per prompt and across prompts (Kirk et al. 2024, sec. 5): `per_prompt_distinct_n` is the distinct-n of K samples
of one prompt, averaged over P prompts (does the policy answer one input in different ways?); `across_prompt_distinct_n`
is the distinct-n of K samples of K different prompts, one each, averaged over as many such groups (does it answer
different inputs differently?). Both read the same P x K samples in groups of the same size, so the two are
comparable with each other, which distinct-n over sets of different sizes is not. `distinct_1`/`distinct_2` stay
what they were: one sample per evaluation prompt, all pooled.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from harness.api import EvalContext, HarnessError


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Unique n-grams / all n-grams, over the words of every text (0 when there are none)."""
    grams = [tuple(words[i : i + n]) for words in (t.split() for t in texts) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def per_and_across_prompt(samples: Sequence[Sequence[str]], n: int) -> tuple[float, float]:
    """`samples[p][k]`: the k-th of K samples of prompt p. Per prompt: mean distinct-n of each row (K samples of one
    prompt). Across prompts: mean distinct-n of groups of K samples of K different prompts (column k of K consecutive
    rows), so both average over groups of K texts; prompts past the last whole group of K are left out there."""
    k = len(samples[0])
    if any(len(row) != k for row in samples) or k < 2:
        raise ValueError("every prompt needs the same number of samples, at least 2")
    per_prompt = statistics.fmean(distinct_n(row, n) for row in samples)
    groups = [
        [samples[p][column] for p in range(start, start + k)]
        for start in range(0, len(samples) - k + 1, k)
        for column in range(k)
    ]
    across = statistics.fmean(distinct_n(group, n) for group in groups) if groups else float("nan")
    return per_prompt, across


class DiversityEval:
    def __init__(self, name: str = "diversity", per_prompt: Mapping[str, int] | None = None) -> None:
        self.name = name
        # {prompts: P, samples: K}: K more samples of each of the first P evaluation prompts; None: not measured
        self.per_prompt = dict(per_prompt) if per_prompt else None

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
        if self.per_prompt:
            metrics.update(self._per_prompt(context))
        return metrics

    def _per_prompt(self, context: EvalContext) -> dict[str, float]:
        """Samples K times each of the first P prompts with the evaluation's settings (the policy's own procedure for
        best-of-n), and compares distinct-n within a prompt's samples and across prompts."""
        assert self.per_prompt is not None
        count, k = int(self.per_prompt["prompts"]), int(self.per_prompt["samples"])  # ranges: in its YAML
        prompts = context.prompts[:count]
        expanded = [prompt for prompt in prompts for _ in range(k)]
        completions = self._sample(context, expanded)
        samples = [completions[i * k : (i + 1) * k] for i in range(len(prompts))]
        metrics: dict[str, float] = {}
        for n in (1, 2):
            per_prompt, across = per_and_across_prompt(samples, n)
            metrics[f"per_prompt_distinct_{n}"] = per_prompt
            if len(prompts) >= k:
                metrics[f"across_prompt_distinct_{n}"] = across
        return metrics

    @staticmethod
    def _sample(context: EvalContext, prompts: list[str]) -> list[str]:
        from harness.api import sample_completions

        if context.policy.sampler is not None:  # a procedure (best-of-n): draw each sample the way it draws them
            return context.policy.sampler(prompts, context.generation, context.device)[0]
        if context.model is None:
            raise HarnessError("eval diversity: no policy model to sample per-prompt diversity from")
        return sample_completions(
            context.model, context.tokenizer, prompts, context.generation, context.device
        ).completions
