"""`algorithm=checkpoint`: no training; evaluate a model saved elsewhere with the same suites and prompts.

    harness algorithm=checkpoint algorithm.path=/models/my_policy algorithm.reference=/models/my_sft
    harness-eval /models/my_policy eval=[gold,kl,diversity]          (the same, shorter)

`reference` is what KL is measured against: a `save_pretrained` directory, `base` (the run's base model),
or null (no KL). `path` may hold a peft adapter (adapter_config.json, adapter_model.safetensors): it is loaded on the
model its `start.json` or `base_model_name_or_path` names, and a reference that is that model is the policy with its
adapter off.
"""

from __future__ import annotations

from pathlib import Path

from harness.api import ADAPTER_WEIGHTS, HarnessError, Policy, Run, adapter_start, is_adapter


def _model_dir(value: str, key: str) -> Path:
    path = Path(value).expanduser()
    if is_adapter(path):
        if not (path / ADAPTER_WEIGHTS).is_file():  # pickled weights can run code when loaded: never loaded here
            raise HarnessError(f"{key}={value!r}: an adapter without {ADAPTER_WEIGHTS}; re-save it with safetensors")
        _model_dir(str(adapter_start(path)), f"{key} (the model its adapter was trained on)")
        return path
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
