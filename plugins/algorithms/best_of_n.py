"""`algorithm=best_of_n`: no training. Sample n completions from the SFT policy, keep the one the reward
ranks highest. The classic baseline every RL method must beat for its cost; its KL to the SFT policy is
known in closed form, log n - (n - 1) / n (Stiennon et al. 2020; Beirami et al. 2024 show it is an upper
bound for the actual KL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.protocols import Policy, Run


def best_of_n_kl(n: int) -> float:
    """The analytic KL(best-of-n || base) = log n - (n - 1) / n."""
    return math.log(n) - (n - 1) / n


def pick_best(scores: Sequence[float], n: int) -> list[int]:
    """Index of the highest score in each consecutive group of n (the first one on ties)."""
    return [start + max(range(n), key=lambda i: scores[start + i]) for start in range(0, len(scores), n)]


class BestOfN:
    def __init__(self, name: str = "best_of_n", init: Any = None, n: int = 16) -> None:
        self.name = name
        self.init = init  # the SFT method (Hydra builds it from `init: ${sft}`)
        self.n = n

    def train(self, run: Run) -> Policy:
        from harness.errors import HarnessError
        from harness.generation import load_policy, sample_completions

        if not isinstance(self.n, int) or self.n < 1:
            raise HarnessError(f"algorithm.n={self.n!r}: expected a positive number of samples")
        sft = self.init.stage(run)
        reward = run.reward()
        n = self.n
        model, tokenizer = load_policy(sft.path, run.device, merge=True)  # only sampled: an adapter merged is faster

        def sampler(prompts: Sequence[str], settings: Mapping[str, Any], device: str) -> tuple[list[str], list[int]]:
            """n samples per prompt; keep the best. A sample's token count is what it cost: all n draws."""
            expanded = [prompt for prompt in prompts for _ in range(n)]
            samples = sample_completions(model, tokenizer, expanded, settings, device)
            completions, lengths = samples.completions, samples.lengths
            best = pick_best(reward.fn(expanded, completions), n)
            spent = [sum(lengths[i - i % n : i - i % n + n]) for i in best]
            return [completions[i] for i in best], spent

        return Policy(
            path=sft.path,
            reference_path=sft.path,
            metrics={**reward.metrics, "train/n": float(n)},
            sampler=sampler,
            analytic_kl=best_of_n_kl(n),
            proxy_reward=None if reward.is_gold else reward.fn,
        )
