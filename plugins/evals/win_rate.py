"""`eval=win_rate`: how often the policy's completion beats a baseline policy's on the same prompt.

The baseline (default: the SFT policy of the same seed) is sampled on the same prompts with the same settings,
once per job whichever suites ask for it (`eval=judge` reads the same samples). The judge is the task's gold
reward where it has one, else the configured reward (`reward=learned`); the suite reports which
(`judged_by_gold`), and whether that judge is the reward the policy itself optimised
(`judged_by_optimised_reward`: best-of-n, PPO, GRPO on a learned reward), so the report can say so beside the
number. Ties count half, so a policy against itself scores 0.5. The interval is Wilson's, inside [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.api import EvalContext, HarnessError

Z_95 = 1.959963984540054  # the standard normal's 0.975 quantile


def win_rate(policy_scores: Sequence[float], baseline_scores: Sequence[float]) -> tuple[float, float]:
    """Mean of 1 (win), 0.5 (tie), 0 (loss) per prompt, and its standard error."""
    return mean_and_stderr(pairwise_outcomes(policy_scores, baseline_scores))


def mean_and_stderr(outcomes: Sequence[float]) -> tuple[float, float]:
    n = len(outcomes)
    mean = sum(outcomes) / n
    variance = sum((o - mean) ** 2 for o in outcomes) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(variance / n)


def pairwise_outcomes(
    policy_scores: Sequence[float], baseline_scores: Sequence[float], same: Sequence[bool] | None = None
) -> list[float]:
    """1 (the policy's score is higher), 0.5 (equal, or `same` completion text), 0 (lower) per prompt. `same`
    makes identical completions a tie whatever float noise a batched model adds to their two scores."""
    same = same or [False] * len(policy_scores)
    return [
        0.5 if tie or p == b else 1.0 if p > b else 0.0
        for p, b, tie in zip(policy_scores, baseline_scores, same, strict=True)
    ]


def wilson_interval(rate: float, n: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson's score interval for a proportion (Wilson 1927): inside [0, 1] even at 0 or 1, unlike rate ± z·se.

    With ties counted as half a win the outcomes vary less than coin flips, so the interval is conservative."""
    if n <= 0:
        return math.nan, math.nan
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def rate_metrics(outcomes: Sequence[float], prefix: str = "") -> dict[str, float]:
    """`<prefix>rate` (ties half), its Wilson 95% interval (`_low`, `_high`) and the fraction of ties."""
    n = len(outcomes)
    rate = sum(outcomes) / n
    low, high = wilson_interval(rate, n)
    ties = sum(o == 0.5 for o in outcomes) / n
    return {f"{prefix}rate": rate, f"{prefix}rate_low": low, f"{prefix}rate_high": high, f"{prefix}ties": ties}


def baseline_completions(context: EvalContext, baseline: Any, suite: str) -> list[str]:
    """The `baseline` algorithm's completions on the evaluation prompts, sampled with the evaluation's settings,
    once per job: `eval=[win_rate,judge]` with the same baseline samples it once."""
    from harness.api import load_policy, sample_completions

    if context.run is None or baseline is None:
        raise HarnessError(f"eval.{suite} needs a baseline algorithm (eval.{suite}.baseline)")
    policy = baseline.train(context.run)  # a cached stage: asking twice costs nothing

    def sample() -> list[str]:
        if policy.sampler is not None:
            return policy.sampler(context.prompts, context.generation, context.device)[0]
        model, tokenizer = load_policy(policy.path, context.device)
        return sample_completions(model, tokenizer, context.prompts, context.generation, context.device).completions

    key = f"baseline/{getattr(baseline, 'name', type(baseline).__name__)}/{policy.path}/{policy.sampler is not None}"
    completions = context.shared(key, sample)
    context.annotate("baseline_completion", completions)
    return completions


class WinRateEval:
    def __init__(self, name: str = "win_rate", baseline: Any = None) -> None:
        self.name = name
        self.baseline = baseline  # an algorithm (Hydra builds it from `baseline: sft`)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        completions = baseline_completions(context, self.baseline, self.name)
        assert context.run is not None  # baseline_completions said so otherwise
        if context.gold is not None:
            judge, by_gold = context.gold.reward, True
        else:
            judge, by_gold = context.run.reward().fn, False
        # the judge is the reward the policy was optimised against: the report labels the rate so
        optimised = not by_gold and context.policy.proxy_reward is not None
        mine, theirs = judge(context.prompts, context.completions), judge(context.prompts, completions)
        same = [a == b for a, b in zip(context.completions, completions, strict=True)]
        outcomes = pairwise_outcomes(mine, theirs, same)
        context.annotate("win_rate_outcome", outcomes)
        return {
            **rate_metrics(outcomes),
            "rate_stderr": mean_and_stderr(outcomes)[1],
            "judged_by_gold": float(by_gold),
            "judged_by_optimised_reward": float(optimised),
        }
