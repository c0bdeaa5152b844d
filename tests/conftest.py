"""Shared test setup: never reach a hub or a W&B server; compose configs the way the CLI does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    WANDB_MODE="offline",
    WANDB_SILENT="true",
    TOKENIZERS_PARALLELISM="false",
)

REPO = Path(__file__).resolve().parent.parent
HARNESS = Path(sys.executable).parent / "harness"


@pytest.fixture
def compose() -> Iterator:
    """`compose(overrides)` -> the composed config, as `harness <overrides>` would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.app import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield lambda overrides=(): hydra_compose("config", overrides=list(overrides), return_hydra_config=True)
    GlobalHydra.instance().clear()


def run_harness(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `harness` console script as a user would, from the repository root."""
    return subprocess.run(
        [str(HARNESS), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def results_by_algorithm(root: Path) -> dict[str, dict]:
    """Every result.json under `root` (read as the report reads them), keyed by algorithm."""
    from harness.results import read_results

    return {result["algorithm"]: result | {"dir": Path(result["dir"])} for result in read_results(root)}
