"""`algorithm=sft`: the SFT policy every method starts from (the run's top-level `sft` node), evaluated as a method.

Training it is the TRL adapter's work (conf/sft/default.yaml: TRL's SFTTrainer on the task's demonstrations);
this plugin only hands that one stage to evaluation, with the base model as its KL reference.
"""

from __future__ import annotations

from typing import Any

from harness.api import HarnessError, Policy, Run


class StartingPolicy:
    def __init__(self, name: str = "sft", init: Any = None) -> None:
        if init is None:
            raise HarnessError(f"algorithm {name!r}: `init` is not set; expected the policy to evaluate (${{sft}})")
        self.name = name
        self.init = init

    def train(self, run: Run) -> Policy:
        stage = self.init.stage(run)
        return Policy(path=stage.path, reference_path=run.base_model().path, metrics=run.training_metrics(stage))
