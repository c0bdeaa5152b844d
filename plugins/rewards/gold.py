"""`reward=gold`: RL optimises the task's exact reward (the DPO paper's "PPO-GT" setting)."""

from __future__ import annotations

from harness.api import HarnessError, Reward, Run, finite_reward


class GoldReward:
    def __init__(self, name: str = "gold") -> None:
        self.name = name

    def load(self, run: Run) -> Reward:
        gold = run.gold()
        if gold is None:
            raise HarnessError(f"reward=gold: task {run.task.name!r} has no gold reward; use reward=learned")
        return Reward(name=self.name, fn=finite_reward(self.name, gold.reward), is_gold=True)
