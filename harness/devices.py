"""Where a job computes: the device, and how many CPU threads torch may use for a block."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from harness.errors import HarnessError


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested not in ("cpu", "cuda"):
        raise HarnessError(f"device={requested!r} is not a device; expected auto, cpu or cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise HarnessError("device=cuda but torch sees no CUDA device; use device=auto or device=cpu")
    return requested


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on `threads` torch threads (None: leave them), then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
