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
        )
        run.replay_history("train", stage)
        metrics = {f"train/{k}": v for k, v in stage.metrics.items() if isinstance(v, int | float)}
        return Policy(path=stage.path, reference_path=sft.path, stages=[sft, preferences, stage], metrics=metrics)

    def _train(self, run: Run, sft: StageOutput, preferences: StageOutput, out_dir: Path) -> dict[str, Any]:
        from datasets import load_from_disk
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import DPOConfig, DPOTrainer

        from harness.training import trainer_args

        pairs = load_from_disk(str(preferences.path))["preferences"].select_columns(["prompt", "chosen", "rejected"])
        tokenizer = AutoTokenizer.from_pretrained(sft.path)
        model = AutoModelForCausalLM.from_pretrained(sft.path)
        reference = AutoModelForCausalLM.from_pretrained(sft.path)
        before = [p.detach().clone() for p in model.parameters()]
        args = trainer_args(
            DPOConfig, self.trainer, output_dir=out_dir / "checkpoints", seed=run.seed, device=run.device
        )
        forwarder = run.trainer_callback("train", out_dir)
        trainer = DPOTrainer(
            model=model,
            ref_model=reference,
            args=args,
            train_dataset=pairs,
            processing_class=tokenizer,
            callbacks=[forwarder],
        )
        outcome = trainer.train()
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(out_dir)
        changed = sum(not a.equal(b) for a, b in zip(before, model.parameters(), strict=True)) / len(before)
        last, first = forwarder.last, forwarder.first
        return {
            "loss": last.get("loss", float("nan")),
            "first_loss": first.get("loss", float("nan")),
            "rewards/accuracies": last.get("rewards/accuracies", float("nan")),
            "rewards/margins": last.get("rewards/margins", float("nan")),
            "first_rewards/margins": first.get("rewards/margins", float("nan")),
            "global_step": outcome.global_step,
            "tokens_trained": int(last.get("num_tokens", 0)),
            "params_changed": changed,
            "pairs": len(pairs),
        }
