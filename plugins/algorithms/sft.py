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
        return run.stage(self.name, config, {"data": data, "base": base}, lambda out: self._train(run, base, out))

    def train(self, run: Run) -> Policy:
        stage = self.stage(run)
        run.replay_history("train", stage)
        metrics = {f"train/{k}": v for k, v in stage.metrics.items() if isinstance(v, int | float)}
        return Policy(path=stage.path, reference_path=run.base_model().path, stages=[stage], metrics=metrics)

    def _train(self, run: Run, base: StageOutput, out_dir: Path) -> dict[str, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from trl import SFTConfig, SFTTrainer

        from harness.training import trainer_args

        tokenizer = AutoTokenizer.from_pretrained(base.path)
        model = AutoModelForCausalLM.from_pretrained(base.path)
        before = [p.detach().clone() for p in model.parameters()]
        args = trainer_args(
            SFTConfig, self.trainer, output_dir=out_dir / "checkpoints", seed=run.seed, device=run.device
        )
        forwarder = run.trainer_callback("train", out_dir)
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=run.load_split("sft"),
            processing_class=tokenizer,
            callbacks=[forwarder],
        )
        outcome = trainer.train()
        trainer.save_model(str(out_dir))
        tokenizer.save_pretrained(out_dir)
        changed = sum(not a.equal(b) for a, b in zip(before, model.parameters(), strict=True)) / len(before)
        return {
            "loss": forwarder.last.get("loss", float("nan")),
            "first_loss": forwarder.first.get("loss", float("nan")),
            "global_step": outcome.global_step,
            "tokens_trained": int(trainer.state.num_input_tokens_seen or forwarder.last.get("num_tokens", 0)),
            "params_changed": changed,
            "train_runtime_s": outcome.metrics.get("train_runtime", float("nan")),
        }
