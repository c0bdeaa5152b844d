"""Glue between HF/TRL trainers and the harness: trainer arguments for this device, logs to the logger."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from harness.errors import HarnessError


def trainer_args(config_cls: type, fields: Mapping[str, Any], *, output_dir: Path, seed: int, device: str) -> Any:
    """Build a TRL/transformers config from `algorithm.trainer` fields, with what the harness owns set here.

    The harness owns where checkpoints go, the seed (the job's), and reporting (our logger, not TRL's).
    Mixed precision left unset (`bf16: null`) follows the device: bf16 on a GPU that has it, fp32 on CPU.
    """
    import torch

    values = dict(fields)
    values.update(output_dir=str(output_dir), seed=seed, report_to="none", disable_tqdm=False)
    if values.get("bf16") is None:
        values["bf16"] = device == "cuda" and torch.cuda.is_bf16_supported()
    if device == "cpu":
        values["use_cpu"] = True
    try:
        return config_cls(**values)
    except (TypeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise HarnessError(f"algorithm.trainer: {config_cls.__name__} rejected the settings: {first_line}") from error


class LogForwarder(TrainerCallback):
    """Streams a trainer's `on_log` records to the harness logger as `<namespace>/<name>` and keeps them.

    The kept history (`log_history.jsonl` in the stage directory) lets a job that reuses the cached stage
    show the same curves, and lets the report draw them.
    """

    def __init__(self, logger: Any, namespace: str, history_path: Path) -> None:
        self.logger = logger
        self.namespace = namespace
        self.history_path = history_path
        self.last: dict[str, float] = {}

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **_: Any) -> None:
        numbers = {
            key: float(value)
            for key, value in (logs or {}).items()
            if isinstance(value, int | float) and math.isfinite(float(value))
        }
        if not numbers:
            return
        self.last.update(numbers)
        self.logger.log({f"{self.namespace}/{key}": value for key, value in numbers.items()}, step=state.global_step)
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a") as handle:
            handle.write(json.dumps({"step": state.global_step, **numbers}) + "\n")
