"""A policy along its training: snapshots evaluated exactly as the final policy, so a method traces a curve.

With `snapshots=N` the job's training stage keeps N snapshots of its policy, evenly spaced in its optimiser steps
(at i/(N+1) of them, i = 1..N; the final policy is the last point). The job evaluates each one as it evaluates the
final policy -- the same prompts, sampling and suites -- and `result.json` lists them under `trajectory`:

    "trajectory": [{"step": 40, "fraction": 0.25, "metrics": {"eval/gold/reward": 0.71, "eval/kl/seq_kl": 0.4}}]

Fractions, not steps, are what methods share: a DPO step, a PPO update and a GRPO step are different amounts of
work. The Rafailov et al. (2023, fig. 2) frontiers are drawn from such evaluations along training as well as
from a grid of betas.

A snapshot lives in `<stage>/snapshots/step-<n>/` (weights, or a LoRA adapter with its start, and the tokenizer);
`snapshot.json` is written last, so a folder without it (a killed build) is ignored and rebuilt on resume.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from harness import distributed
from harness.io import atomic_write_json, read_json
from harness.protocols import Snapshot

FOLDER = "snapshots"
RECORD = "snapshot.json"

# Who hears of a snapshot the moment it is saved (a tuning trial judges it then, and may stop the training by
# raising), and the policy the training stage started from (the reference its KL is measured to).
Watcher = Callable[[Snapshot, "Path | None"], None]
_watchers: list[Watcher] = []
_training_start: ContextVar[Path | None] = ContextVar("training_start", default=None)


@contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    """Call `watcher(snapshot, start)` after each snapshot is saved while this block runs. An exception it raises
    stops the training that saved the snapshot (a pruned trial)."""
    _watchers.append(watcher)
    try:
        yield
    finally:
        _watchers.remove(watcher)


@contextmanager
def training_from(start: Path) -> Iterator[None]:
    """The training stage inside this block starts from the policy saved in `start` (harness.train_stage)."""
    token = _training_start.set(Path(start))
    try:
        yield
    finally:
        _training_start.reset(token)


def requested(run: Any) -> int:
    """How many snapshots the job asks of its own training stage (`snapshots=N`; not of the stages it starts from)."""
    cfg = getattr(run, "cfg", None)
    return int((cfg.get("snapshots") if cfg is not None else 0) or 0)


def targets(total_steps: int, count: int) -> dict[int, float]:
    """Step -> fraction of training, for `count` snapshots evenly spaced within `total_steps` (final excluded)."""
    chosen: dict[int, float] = {}
    for index in range(1, count + 1):
        step = round(total_steps * index / (count + 1))
        if 0 < step < total_steps:
            chosen.setdefault(step, step / total_steps)
    return chosen


def targets_at(total_steps: int, fractions: Sequence[float]) -> dict[int, float]:
    """Step -> fraction of training, for snapshots at given `fractions` of `total_steps` (a stage that is one round of
    several keeps the snapshots that fall in it). A fraction that rounds to no step, or to the last, is left out."""
    chosen: dict[int, float] = {}
    for fraction in fractions:
        step = round(total_steps * fraction)
        if 0 < step < total_steps:
            chosen.setdefault(step, step / total_steps)
    return chosen


def save(model: Any, tokenizer: Any, stage_dir: Path, step: int, total_steps: int, start: Path | None = None) -> Path:
    """Write the policy as it is at `step` (an adapter, with the stage it sits on, if it is one)."""
    from harness import adapters

    folder = Path(stage_dir) / FOLDER / f"step-{step:07d}"
    folder.mkdir(parents=True, exist_ok=True)
    if adapters.is_peft_model(model):
        adapters.save_adapter(model, folder, start=start)
    else:
        model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    atomic_write_json(folder / RECORD, {"step": step, "total_steps": total_steps, "fraction": step / total_steps})
    snapshot = Snapshot(step=step, fraction=step / total_steps, path=folder)
    for watcher in list(_watchers):
        watcher(snapshot, _training_start.get())
    return folder


def of_stage(stage_dir: Path) -> list[Snapshot]:
    """A stage's whole snapshots, in training order."""
    found = []
    for record in sorted((Path(stage_dir) / FOLDER).glob(f"*/{RECORD}")):
        try:
            meta = read_json(record)
        except (OSError, ValueError):
            continue
        found.append(Snapshot(step=int(meta["step"]), fraction=float(meta["fraction"]), path=record.parent))
    return sorted(found, key=lambda snapshot: snapshot.step)


class SnapshotCallback(TrainerCallback):
    """Saves the trainer's model at the chosen steps (a transformers/TRL trainer; our PPO calls `save` itself)."""

    def __init__(
        self, stage_dir: Path, count: int, tokenizer: Any, start: Path | None = None, fractions: Sequence[float] = ()
    ) -> None:
        self.stage_dir = Path(stage_dir)
        self.count = count
        self.fractions = tuple(fractions)  # explicit fractions of training instead of `count` evenly spaced
        self.tokenizer = tokenizer
        self.start = start
        self.steps: dict[int, float] = {}

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if self.fractions:
            self.steps = targets_at(state.max_steps, self.fractions)
        else:
            self.steps = targets(state.max_steps, self.count)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        if state.global_step in self.steps and model is not None and distributed.is_main():
            save(model, self.tokenizer, self.stage_dir, state.global_step, state.max_steps, self.start)
