"""`algorithm=dpo` (and `ipo`, `rdpo`): Direct Preference Optimization with TRL's `DPOTrainer`.

Starts from the SFT policy, which is also the frozen reference (Rafailov et al. 2023), and trains on the
task's preference pairs (on the testbed: SFT samples labelled by the gold reward with Bradley-Terry noise).
`algorithm.trainer.loss_type` reaches every TRL preference loss; `beta` is the KL strength.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.protocols import Policy
from harness.runner import Run, plain
from harness.stages import StageOutput


class DPO:
    def __init__(self, name: str = "dpo", init: Any = None, trainer: Mapping[str, Any] | None = None) -> None:
        self.name = name
        self.init = init  # the SFT algorithm (Hydra builds it from `init: sft`)
        self.trainer = dict(trainer or {})

    def train(self, run: Run) -> Policy:
        sft = self.init.stage(run)
        preferences = run.preferences(sft)
        config = {"algorithm": self.name, "trainer": plain(self.trainer), "seed": run.seed}
        stage = run.stage(
            self.name,
            config,
            {"sft": sft, "preferences": preferences},
            lambda out: self._train(run, sft, preferences, out),
            collective=True,  # a trainer: every process of a multi-process job takes part
        )
        return Policy(path=stage.path, reference_path=sft.path, metrics=run.training_metrics(stage))

    def _train(self, run: Run, sft: StageOutput, preferences: StageOutput, out_dir: Path) -> dict[str, Any]:
        from datasets import load_from_disk
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        from harness.training import fit

        pairs = load_from_disk(str(preferences.path))["preferences"].select_columns(["prompt", "chosen", "rejected"])
        fitted = fit(
            DPOTrainer,
            DPOConfig,
            self.trainer,
            run=run,
            model=AutoModelForCausalLM.from_pretrained(sft.path, use_safetensors=True),
            tokenizer=AutoTokenizer.from_pretrained(sft.path),
            out_dir=out_dir,
            ref_model=AutoModelForCausalLM.from_pretrained(sft.path, use_safetensors=True),
            train_dataset=pairs,
        )
        return {**fitted.summary("loss", "rewards/accuracies", "rewards/margins"), "pairs": len(pairs)}
