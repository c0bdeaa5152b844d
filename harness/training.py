"""Glue between HF/TRL trainers and the harness: trainer arguments for this device, logs to the logger."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
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


class MetricsRecorder:
    """Streams training metrics to the logger as `<namespace>/<name>` and keeps them in the stage directory.

    The kept history (`log_history.jsonl`) lets a job that reuses the cached stage show the same curves, and
    lets the report draw them. Non-finite and non-numeric values are dropped.
    """

    def __init__(self, logger: Any, namespace: str, history_path: Path) -> None:
        self.logger = logger
        self.namespace = namespace
        self.history_path = history_path
        self.last: dict[str, float] = {}
        self.first: dict[str, float] = {}

    def record(self, metrics: Mapping[str, Any], step: int) -> None:
        numbers = {
            key: float(value)
            for key, value in metrics.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value))
        }
        if not numbers:
            return
        for key, value in numbers.items():
            self.first.setdefault(key, value)
        self.last.update(numbers)
        self.logger.log({f"{self.namespace}/{key}": value for key, value in numbers.items()}, step=step)
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        with self.history_path.open("a") as handle:
            handle.write(json.dumps({"step": step, **numbers}) + "\n")


class LogForwarder(TrainerCallback):
    """A transformers `TrainerCallback` that hands every `on_log` record to a `MetricsRecorder`."""

    def __init__(self, recorder: MetricsRecorder) -> None:
        self.recorder = recorder

    @property
    def last(self) -> dict[str, float]:
        return self.recorder.last

    @property
    def first(self) -> dict[str, float]:
        return self.recorder.first

    def on_log(self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **_: Any) -> None:
        self.recorder.record(logs or {}, step=state.global_step)


@dataclass
class Fitted:
    """What a TRL trainer run leaves: first and last logged values, and the facts every stage reports."""

    first: dict[str, float]
    last: dict[str, float]
    global_step: int
    runtime_s: float
    tokens_trained: int
    params_changed: float  # fraction of parameter tensors that differ from where training started

    def summary(self, *logged: str) -> dict[str, float]:
        """The stage metrics: the common facts, plus the last (and first) value of each `logged` name."""
        nan = float("nan")
        values = {name: self.last.get(name, nan) for name in logged}
        values.update({f"first_{name}": self.first.get(name, nan) for name in logged})
        return {
            **values,
            "global_step": self.global_step,
            "train_runtime_s": self.runtime_s,
            "tokens_trained": self.tokens_trained,
            "params_changed": self.params_changed,
        }


def fit(
    trainer_cls: type,
    config_cls: type,
    fields: Mapping[str, Any],
    *,
    run: Any,
    model: Any,
    tokenizer: Any,
    out_dir: Path,
    namespace: str = "train",
    **trainer_kwargs: Any,
) -> Fitted:
    """Train `model` with a TRL trainer as a stage: harness-owned arguments, curves streamed to the logger,
    weights (safetensors) and tokenizer saved in `out_dir`. TRL is wrapped, never subclassed."""
    before = [p.detach().clone() for p in model.parameters()]
    args = trainer_args(config_cls, fields, output_dir=out_dir / "checkpoints", seed=run.seed, device=run.device)
    forwarder = run.trainer_callback(namespace, out_dir)
    trainer = trainer_cls(model=model, args=args, processing_class=tokenizer, callbacks=[forwarder], **trainer_kwargs)
    outcome = trainer.train()
    trainer.save_model(str(out_dir))
    tokenizer.save_pretrained(out_dir)
    changed = sum(not a.equal(b) for a, b in zip(before, model.parameters(), strict=True)) / len(before)
    return Fitted(
        first=dict(forwarder.first),
        last=dict(forwarder.last),
        global_step=outcome.global_step,
        runtime_s=outcome.metrics.get("train_runtime", float("nan")),
        tokens_trained=int(trainer.state.num_input_tokens_seen or forwarder.last.get("num_tokens", 0)),
        params_changed=changed,
    )
