"""Several processes, one job: `torchrun --nproc_per_node 2 -m harness.app ...` (gloo on CPU) or
`accelerate launch -m harness.app ...` (DDP / DeepSpeed on GPUs).

Every process runs the same job. Trainer stages (SFT, DPO, reward model, GRPO/RLOO, PPO) are built by all
processes together; the other stages (data, base model, preference pairs) by the main process while the others
wait. Only the main process logs, writes files and the result; the others evaluate too (a suite may need a
stage, and stages are built together) but keep quiet.
"""

from __future__ import annotations

import os
from typing import Any

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    return rank() == 0


def _group() -> None:
    """Join the process group on first use, with the backend the trainers would pick: nccl on GPUs, gloo else."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def barrier() -> None:
    """Wait for every process of the job (no-op in a single process)."""
    if not is_distributed():
        return
    import torch.distributed as dist

    _group()
    dist.barrier()


def main_value(value: Any) -> Any:
    """The main process's `value`, in every process: decisions that must be the same everywhere (is a stage
    already complete?) are taken once, or a process that looked a moment later would take another path."""
    if not is_distributed():
        return value
    import torch.distributed as dist

    _group()
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
