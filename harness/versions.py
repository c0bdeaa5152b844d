"""Versions of the stack, recorded in every result and mixed into every stage key."""

from __future__ import annotations

import functools
import platform
from importlib import metadata

STACK = (
    "alignment-harness",
    "torch",
    "transformers",
    "trl",
    "datasets",
    "accelerate",
    "hydra-core",
    "wandb",
    "lm_eval",
)


@functools.cache
def stack_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in STACK:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions
