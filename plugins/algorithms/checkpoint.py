"""`algorithm=checkpoint`: no training; evaluate a model saved elsewhere with the same suites and prompts.

    harness algorithm=checkpoint algorithm.path=/models/my_policy algorithm.reference=/models/my_sft
    harness-eval /models/my_policy eval=[gold,kl,diversity]          (the same, shorter)

`reference` is what KL is measured against: a `save_pretrained` directory, `base` (the run's base model),
or null (no KL).
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import HarnessError
from harness.protocols import Policy, Run


def _model_dir(value: str, key: str) -> Path:
    path = Path(value).expanduser()
    if not (path / "config.json").is_file():
        raise HarnessError(f"{key}={value!r}: not a saved model directory (no config.json there)")
    if not any(path.glob("*.safetensors")):  # pickled weights can run code when loaded: never loaded here
        raise HarnessError(
            f"{key}={value!r}: no *.safetensors weights there; re-save the model with save_pretrained (transformers"
            " >= 4.35 writes safetensors)"
        )
    return path


class Checkpoint:
    def __init__(self, name: str = "checkpoint", path: str | None = None, reference: str | None = None) -> None:
        self.name = name
        self.path = path
        self.reference = reference

    def train(self, run: Run) -> Policy:
        if not self.path:
            raise HarnessError("algorithm.path is not set; expected the directory of a saved model")
        policy = _model_dir(self.path, "algorithm.path")
        if self.reference is None:
            reference = None
        elif self.reference == "base":
            reference = run.base_model().path
        else:
            reference = _model_dir(self.reference, "algorithm.reference")
        return Policy(path=policy, reference_path=reference)
