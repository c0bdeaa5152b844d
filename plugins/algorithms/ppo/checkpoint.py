"""PPO's checkpoints: everything the loop carries from one update to the next, so a killed build resumes exactly
(the same weights at the end as an uninterrupted run: tests/test_resume.py)."""

from __future__ import annotations

import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.api import HarnessError, is_peft_model
from plugins.algorithms.ppo.maths import KLController
from plugins.algorithms.ppo.models import trained_weights

log = logging.getLogger("harness")


@dataclass
class Trainables:
    """What the loop updates and a checkpoint must carry besides counters: weights, optimizer, RNG, KL beta."""

    policy: Any
    value_model: Any | None  # None: no critic (REINFORCE++)
    optimizer: Any
    scheduler: Any
    kl_controller: KLController
    generator: torch.Generator
    moving_reference: Any | None = None  # the EMA reference (ref_ema): every update moves it; None: frozen SFT


def save_state(
    state_dir: Path, update: int, parts: Trainables, episodes: int, tokens_trained: int, history: list[dict[str, float]]
) -> None:
    """Weights as safetensors; optimizer, scheduler, counters and every RNG in `state.pt` (tensors and plain
    Python only, so it loads with `weights_only=True`). Written beside, then swapped in: never half a state."""
    from safetensors.torch import save_file, save_model

    scratch = state_dir.with_name(state_dir.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    if is_peft_model(parts.policy):  # the adapters only: the frozen weights are the SFT stage's
        save_file(trained_weights(parts.policy), str(scratch / "policy.safetensors"))
    else:
        save_model(parts.policy, str(scratch / "policy.safetensors"))  # save_model: tied embeddings are stored once
    if parts.value_model is not None:
        save_model(parts.value_model, str(scratch / "value.safetensors"))
    if parts.moving_reference is not None:
        save_model(parts.moving_reference, str(scratch / "reference.safetensors"))
    numpy_state = np.random.get_state()
    torch.save(
        {
            "update": update,
            "episodes": episodes,
            "tokens_trained": tokens_trained,
            "history": history,
            "optimizer": parts.optimizer.state_dict(),
            "scheduler": parts.scheduler.state_dict(),
            "kl_coef": parts.kl_controller.value,
            "rng": {
                "torch": torch.get_rng_state(),
                "generator": parts.generator.get_state(),
                "python": random.getstate(),
                "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].copy()), *numpy_state[2:]],
            },
        },
        scratch / "state.pt",
    )
    previous = state_dir.with_name(state_dir.name + ".old")
    shutil.rmtree(previous, ignore_errors=True)
    if state_dir.exists():
        os.replace(state_dir, previous)  # a rename: state_dir is whole or absent, never half deleted
    os.replace(scratch, state_dir)
    shutil.rmtree(previous, ignore_errors=True)


def load_state(state_dir: Path) -> dict[str, Any] | None:
    if not (state_dir / "state.pt").exists():
        return None
    return torch.load(state_dir / "state.pt", weights_only=True)


def restore_state(
    state: dict[str, Any], state_dir: Path, parts: Trainables
) -> tuple[int, int, int, list[dict[str, float]]]:
    """Put a saved state back; returns (update, episodes, tokens_trained, history) to continue from."""
    from safetensors.torch import load_file, load_model

    if is_peft_model(parts.policy):
        saved = load_file(str(state_dir / "policy.safetensors"))
        weights = trained_weights(parts.policy)
        if saved.keys() != weights.keys():
            raise HarnessError(f"{state_dir}: its adapters are not this run's; delete the folder to start over")
        with torch.no_grad():
            for name, tensor in weights.items():
                tensor.copy_(saved[name])
    else:
        load_model(parts.policy, str(state_dir / "policy.safetensors"))
    if parts.value_model is not None:
        load_model(parts.value_model, str(state_dir / "value.safetensors"))
    if parts.moving_reference is not None:
        load_model(parts.moving_reference, str(state_dir / "reference.safetensors"))
    parts.optimizer.load_state_dict(state["optimizer"])
    parts.scheduler.load_state_dict(state["scheduler"])
    parts.kl_controller.value = state["kl_coef"]
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    parts.generator.set_state(rng["generator"])
    version, internal, gauss = rng["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))
    log.info("PPO: resuming from update %d (%s)", state["update"], state_dir)
    return state["update"], state["episodes"], state["tokens_trained"], list(state["history"])
