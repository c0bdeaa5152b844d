"""`eval=win_rate`: how often the policy's completion beats a baseline policy's on the same prompt.

The baseline (default: the SFT policy of the same seed) is sampled on the same prompts with the same settings.
The judge is the task's gold reward where it has one, else the configured reward (`reward=learned`). Ties
count half, so a policy against itself scores 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.errors import HarnessError
from harness.protocols import EvalContext


def win_rate(policy_scores: Sequence[float], baseline_scores: Sequence[float]) -> tuple[float, float]:
    """Mean of 1 (win), 0.5 (tie), 0 (loss) per prompt, and its standard error."""
    outcomes = [1.0 if p > b else 0.5 if p == b else 0.0 for p, b in zip(policy_scores, baseline_scores, strict=True)]
    n = len(outcomes)
    mean = sum(outcomes) / n
    variance = sum((o - mean) ** 2 for o in outcomes) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(variance / n)


class WinRateEval:
    def __init__(self, name: str = "win_rate", baseline: Any = None) -> None:
        self.name = name
        self.baseline = baseline  # an algorithm (Hydra builds it from `baseline: sft`)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        from harness.generation import load_policy, sample_completions

        if context.run is None or self.baseline is None:
            raise HarnessError("eval.win_rate needs a baseline algorithm (eval.win_rate.baseline)")
        baseline = self.baseline.train(context.run)
        if baseline.sampler is not None:
            completions, _ = baseline.sampler(context.prompts, context.generation, context.device)
        else:
            model, tokenizer = load_policy(baseline.path, context.device)
            completions = sample_completions(
                model, tokenizer, context.prompts, context.generation, context.device
            ).completions
        if context.gold is not None:
            judge, judged_by = context.gold.reward, "gold"
        else:
            judge, judged_by = context.run.reward().fn, "reward"
        mine, theirs = judge(context.prompts, context.completions), judge(context.prompts, completions)
        context.annotate("baseline_completion", completions)
        rate, stderr = win_rate(mine, theirs)
        return {"rate": rate, "rate_stderr": stderr, "judged_by_gold": float(judged_by == "gold")}
