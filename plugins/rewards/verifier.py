"""`reward=verifier`: RL rewarded by the task's own check of each answer (1 right, 0 wrong), the reward of RL with
verifiable rewards. `format_weight` adds the task's format reward (an answer line, a \\boxed{}) on top; at 0 (the
default) the reward is correctness alone and the format is only reported (eval=pass_at_k)."""

from __future__ import annotations

from collections.abc import Sequence

from harness.api import HarnessError, Reward, Run


class VerifierReward:
    def __init__(self, name: str = "verifier", format_weight: float = 0.0) -> None:
        self.name = name
        self.format_weight = float(format_weight)

    def load(self, run: Run) -> Reward:
        verifier = run.verifier()  # a one-line error for a task that cannot check its answers
        if self.format_weight and not verifier.has_format:
            raise HarnessError(
                f"reward.format_weight={self.format_weight}: task {run.task.name!r} has no format_reward; expected 0"
            )
        weight = self.format_weight

        def score(prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
            correct = verifier.verify(prompts, completions)
            if not weight:
                return correct
            shape = verifier.format(prompts, completions)  # the task has one: load refused a weight without it
            return [c + weight * f for c, f in zip(correct, shape, strict=True)]

        return Reward(name=self.name, fn=score, is_gold=True)
