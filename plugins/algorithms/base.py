"""`algorithm=base`: no training. The base model itself, evaluated like every other policy (the floor)."""

from __future__ import annotations

from harness.api import Policy, Run


class Base:
    def __init__(self, name: str = "base") -> None:
        self.name = name

    def train(self, run: Run) -> Policy:
        base = run.base_model()
        return Policy(path=base.path, reference_path=base.path)
