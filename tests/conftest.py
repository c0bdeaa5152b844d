"""Shared test setup: never reach a hub or a W&B server; compose configs the way the CLI does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
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


def job_env() -> dict[str, str]:
    """The environment for a job a test starts. Without WANDB_SERVICE: an in-process `wandb.init` (the report
    tests) exports it, and jobs that inherit it share that one W&B service, where a killed job's run stays
    "in use" for good; each job must have its own service, as it does from a shell."""
    return {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}


def run_harness(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the `harness` console script as a user would, from the repository root."""
    return subprocess.run(
        [str(HARNESS), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=job_env()
    )


def kill_when(args: Sequence[str], ready: Callable[[], bool], timeout: float = 300) -> int:
    """Start `harness args` in its own session, wait until `ready()`, then SIGKILL every process it started.
    Returns the job's exit status (-SIGKILL when it was killed)."""
    job = subprocess.Popen(
        [str(HARNESS), *args], cwd=REPO, env=job_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job never got to the point where it is killed"
            time.sleep(0.05)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    return job.returncode


def results_by_algorithm(root: Path) -> dict[str, dict]:
    """Every result.json under `root` (read as the report reads them), keyed by algorithm."""
    from harness.results import read_results

    return {result["algorithm"]: result | {"dir": Path(result["dir"])} for result in read_results(root)}


def logged_comparison_offline(report, folder: Path) -> tuple[Path, dict]:
    """Log `report` as the W&B comparison run, offline under `folder`, and read the run back once W&B's service has
    written its history: (the run's folder, what plugins.loggers.wandb.read_offline_run reads)."""
    from harness.report.publish import log_comparison
    from plugins.loggers.wandb import read_offline_run

    log_comparison(report, {"_target_": "plugins.loggers.wandb.WandbLogger", "dir": str(folder), "mode": "offline"})
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    deadline = time.monotonic() + 30
    while not run["history"] and time.monotonic() < deadline:  # W&B's service may still be writing the file
        time.sleep(0.5)
        run = read_offline_run(run_dir)
    return run_dir, run
