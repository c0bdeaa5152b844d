"""`algorithm=best_of_n`: no training. Sample n completions from the SFT policy, keep the one the reward
ranks highest. The classic baseline every RL method must beat for its cost; its KL to the SFT policy is
known in closed form, log n - (n - 1) / n (Stiennon et al. 2020; Beirami et al. 2024 show it is an upper
bound for the actual KL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from harness.api import Policy, Run, Sampled, Snapshot, snapshots_requested


def best_of_n_kl(n: int) -> float:
    """The analytic KL(best-of-n || base) = log n - (n - 1) / n."""
    return math.log(n) - (n - 1) / n


def pick_best(scores: Sequence[float], n: int) -> list[int]:
    """Index of the highest score in each consecutive group of n (the first one on ties)."""
    return [start + max(range(n), key=lambda i: scores[start + i]) for start in range(0, len(scores), n)]


def smaller_n(n: int, count: int) -> list[int]:
    """`count` values of n below `n`, evenly spaced in log n (rounded, each once; 1 is the starting policy itself)."""
    chosen = {round(n ** (index / (count + 1))) for index in range(1, count + 1)} if n > 1 else set()
    return sorted(k for k in chosen if 1 <= k < n)


class BestOfN:
    def __init__(self, name: str = "best_of_n", init: Any = None, n: int = 16) -> None:
        self.name = name
        self.init = init  # the SFT method (Hydra builds it from `init: ${sft}`)
        self.n = n

    def train(self, run: Run) -> Policy:
        from harness.api import HarnessError, load_policy, sample_completions

        if not isinstance(self.n, int) or self.n < 1:
            raise HarnessError(f"algorithm.n={self.n!r}: expected a positive number of samples")
        sft = self.init.stage(run)
        reward = run.reward()
        model, tokenizer = load_policy(sft.path, run.device, merge=True)  # only sampled: an adapter merged is faster

        def best_of(n: int) -> Any:
            def sampler(prompts: Sequence[str], settings: Mapping[str, Any], device: str) -> Sampled:
                """n samples per prompt; keep the best. Its length is the kept draw's; what it cost is all n draws."""
                expanded = [prompt for prompt in prompts for _ in range(n)]
                samples = sample_completions(model, tokenizer, expanded, settings, device)
                completions, lengths = samples.completions, samples.lengths
                best = pick_best(reward.fn(expanded, completions), n)
                return Sampled(
                    completions=[completions[i] for i in best],
                    lengths=[lengths[i] for i in best],
                    tokens_generated=[sum(lengths[i - i % n : i - i % n + n]) for i in best],
                )

            return sampler

        # `snapshots=K`: the same procedure at K smaller n, evenly spaced in log n (its KL grows as log n), so one
        # job traces best-of-n's reward-vs-KL curve (Gao et al. 2022, fig. 1) as RL's snapshots trace theirs
        along = [
            Snapshot(step=n, fraction=math.log(n) / math.log(self.n), path=sft.path, sampler=best_of(n),
                     analytic_kl=best_of_n_kl(n))
            for n in smaller_n(self.n, snapshots_requested(run))
        ]
        return Policy(
            path=sft.path,
            reference_path=sft.path,
            metrics={**reward.metrics, "train/n": float(self.n)},
            sampler=best_of(self.n),
            analytic_kl=best_of_n_kl(self.n),
            proxy_reward=None if reward.is_gold else reward.fn,
            snapshots=along,
        )
