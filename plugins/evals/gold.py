"""`eval=gold`: the task's exact judge on the shared samples: mean gold reward and grammaticality."""

from __future__ import annotations

import logging
import math
import statistics

from harness.api import EvalContext

log = logging.getLogger(__name__)


class GoldEval:
    def __init__(self, name: str = "gold") -> None:
        self.name = name

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        if context.gold is None:
            log.warning("eval gold: this task has no gold reward; eval/gold is skipped")
            return {}
        rewards = context.gold.reward(context.prompts, context.completions)
        grammatical = context.gold.grammatical(context.prompts, context.completions)
        context.annotate("gold_reward", rewards)
        context.annotate("grammatical", grammatical)
        metrics = {}
        if context.proxy_reward is not None:  # what a learned reward model believed, beside the truth
            proxy = context.proxy_reward(context.prompts, context.completions)
            context.annotate("proxy_reward", proxy)
            metrics["proxy_reward"] = statistics.fmean(proxy)
        return {
            **metrics,
            "reward": statistics.fmean(rewards),
            "reward_stderr": statistics.stdev(rewards) / math.sqrt(len(rewards)) if len(rewards) > 1 else 0.0,
            "grammatical": statistics.fmean(float(g) for g in grammatical),
        }
