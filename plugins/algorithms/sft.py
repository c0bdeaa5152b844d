"""`algorithm=sft`: supervised fine-tuning on the task's demonstrations with TRL's `SFTTrainer`.

The loss is on completion tokens only (TRL's default for prompt/completion data); every `SFTConfig` field
can be set as `algorithm.trainer.<field>=...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.protocols import Policy
from harness.runner import Run, plain
from harness.stages import StageOutput


class SFT:
    def __init__(self, name: str = "sft", trainer: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.trainer = dict(trainer or {})

    def stage(self, run: Run) -> StageOutput:
        """The SFT policy as a cached stage; other algorithms start from it through this method too."""
        data, base = run.datasets(), run.base_model()
        config = {"algorithm": self.name, "trainer": plain(self.trainer), "seed": run.seed}
        inputs = {"data": data, "base": base}
        return run.stage(self.name, config, inputs, lambda out: self._train(run, base, out), collective=True)

    def train(self, run: Run) -> Policy:
        stage = self.stage(run)
        return Policy(path=stage.path, reference_path=run.base_model().path, metrics=run.training_metrics(stage))

    def _train(self, run: Run, base: StageOutput, out_dir: Path) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTConfig, SFTTrainer

        from harness.training import fit

        fitted = fit(
            SFTTrainer,
            SFTConfig,
            self.trainer,
            run=run,
            model=AutoModelForCausalLM.from_pretrained(base.path, use_safetensors=True),
            tokenizer=AutoTokenizer.from_pretrained(base.path),
            out_dir=out_dir,
            train_dataset=run.load_split("sft"),
        )
        return fitted.summary("loss", "mean_token_accuracy")
