"""Glue between HF/TRL trainers and the harness: trainer arguments for this device, logs to the logger."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from harness import distributed, progress
from harness.errors import HarnessError
from harness.guards import StopOnNonFiniteLoss, saved_checkpoints
from harness.io import atomic_write_text
from harness.results import is_secret

log = logging.getLogger("harness")


def trainer_args(
    config_cls: type,
    fields: Mapping[str, Any],
    *,
    output_dir: Path | str,
    seed: int,
    device: str,
    setting: str = "algorithm.trainer",
    check_only: bool = False,
) -> Any:
    """Build a TRL/transformers config from `algorithm.trainer` fields, with what the harness owns set here.

    The harness owns where checkpoints go, the seed (the job's), and reporting (our logger, not TRL's).
    Mixed precision left unset (`bf16: null`) follows the device: bf16 on a GPU that has it, fp32 on CPU.
    `setting` names the fields' node in an error; `check_only`: built ahead of training to check the settings
    (harness.ranges), so its warnings wait for the real build.
    """
    import warnings

    import torch

    values = dict(fields)
    for key in [key for key, value in values.items() if is_secret(key) and value]:
        # TRL pickles its arguments into every checkpoint (training_args.bin): no credential goes in there
        if not check_only:
            log.warning("%s.%s: not passed to the trainer (set HF_TOKEN in the environment instead)", setting, key)
        del values[key]
    values.update(output_dir=str(output_dir), seed=seed, report_to="none", disable_tqdm=False)
    values.setdefault("ddp_find_unused_parameters", False)  # multi-process: every parameter of our models is used
    if values.get("bf16") is None:
        values["bf16"] = device == "cuda" and torch.cuda.is_bf16_supported()
    if device == "cpu":
        values["use_cpu"] = True
    try:
        with warnings.catch_warnings():
            if check_only:
                warnings.simplefilter("ignore")
            return config_cls(**values)
    except (TypeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise HarnessError(f"{setting}: {config_cls.__name__} rejected the settings: {first_line}") from error


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
        if not distributed.is_main():  # in a multi-process job, one process logs and keeps the curve
            self.last.update(numbers)
            return
        for key, value in numbers.items():
            self.first.setdefault(key, value)
        self.last.update(numbers)
        self.logger.log({f"{self.namespace}/{key}": value for key, value in numbers.items()}, step=step)
        progress.step(step)  # a training loop that logs its steps shows them in a sweep's view
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

    # a sweep's view shows every trainer's steps (harness.progress; nothing happens outside a sweep)
    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        progress.steps("train", total=state.max_steps, done=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        progress.step(state.global_step)


@dataclass
class Fitted:
    """What a TRL trainer run leaves: first and last logged values, and the facts every stage reports."""

    first: dict[str, float]
    last: dict[str, float]
    global_step: int
    runtime_s: float
    tokens_trained: int | None  # None: the trainer counts none (TRL's ORPO and CPO trainers)
    params_changed: float  # fraction of trainable parameter tensors that differ from where training started
    resumed_from_step: int = 0  # the checkpoint a killed build of this stage was resumed from (0: not resumed)

    def summary(self, *logged: str) -> dict[str, float]:
        """The stage metrics: the common facts, plus the last (and first) value of each `logged` name."""
        nan = float("nan")
        values = {name: self.last.get(name, nan) for name in logged}
        values.update({f"first_{name}": self.first.get(name, nan) for name in logged})
        return {
            **values,
            "global_step": self.global_step,
            "train_runtime_s": self.runtime_s,
            **({"tokens_trained": self.tokens_trained} if self.tokens_trained is not None else {}),
            "params_changed": self.params_changed,
            **({"resumed_from_step": self.resumed_from_step} if self.resumed_from_step else {}),
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
    snapshots: int = 0,
    start: Path | None = None,
    snapshot_fractions: Sequence[float] = (),
    **trainer_kwargs: Any,
) -> Fitted:
    """Train `model` with a TRL trainer as a stage: harness-owned arguments, curves streamed to the logger,
    weights (safetensors) and tokenizer saved in `out_dir`. TRL is wrapped, never subclassed.
    `snapshots`: keep that many snapshots of the policy along training (harness.snapshots; `start`: the stage a
    LoRA adapter sits on), or `snapshot_fractions`: at those fractions of it."""
    args = trainer_args(config_cls, fields, output_dir=out_dir / "checkpoints", seed=run.seed, device=run.device)
    forwarder = run.trainer_callback(namespace, out_dir)
    resumed_from, checkpoint = latest_checkpoint(out_dir / "checkpoints") or (0, None)
    if checkpoint is not None:  # a killed build of this stage: go on from its last checkpoint
        forwarder.recorder.first.update(truncate_history(out_dir / "log_history.jsonl", resumed_from))
        log.info("resuming from %s (step %d)", checkpoint, resumed_from)
    guard = StopOnNonFiniteLoss(out_dir)
    callbacks = [forwarder, guard]
    if snapshots or snapshot_fractions:
        from harness.snapshots import SnapshotCallback

        callbacks.append(SnapshotCallback(out_dir, snapshots, tokenizer, start, fractions=snapshot_fractions))
    trainer = trainer_cls(model=model, args=args, processing_class=tokenizer, callbacks=callbacks, **trainer_kwargs)
    # what training may change, as the trainer holds it (with a `peft_config`, TRL has just added the adapter)
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters() if p.requires_grad}
    outcome = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    guard.check()  # a diverged run fails its stage: never saved, never marked complete
    trainer.save_model(str(out_dir))  # the main process writes, the others wait (transformers)
    if distributed.is_main():
        tokenizer.save_pretrained(out_dir)
    distributed.barrier()  # the saved model is whole before any process reads it back (e.g. to score pairs)
    after = dict(trainer.model.named_parameters())
    changed = sum(not value.equal(after[name]) for name, value in before.items()) / max(1, len(before))
    return Fitted(
        first=dict(forwarder.first),
        last=dict(forwarder.last),
        global_step=outcome.global_step,
        runtime_s=outcome.metrics.get("train_runtime", float("nan")),
        tokens_trained=int(trainer.state.num_input_tokens_seen or forwarder.last.get("num_tokens", 0)) or None,
        params_changed=changed,
        resumed_from_step=resumed_from,
    )


def latest_checkpoint(folder: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest whole checkpoint a transformers Trainer left in `folder`, if any."""
    saved = saved_checkpoints(folder)
    return (max(saved), saved[max(saved)]) if saved else None


def truncate_history(path: Path, step: int) -> dict[str, float]:
    """Cut a stage's training curve back to `step` (what a resumed build starts from, so no step is logged twice);
    returns the first value of each metric, as the recorder would have kept it."""
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [row for row in rows if row.get("step", 0) <= step]
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
    first: dict[str, float] = {}
    for row in rows:
        for key, value in row.items():
            if key != "step":
                first.setdefault(key, value)
    return first
