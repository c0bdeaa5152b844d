"""The shared stage cache under concurrency and kills: parallel jobs build a shared stage once, and a job killed
mid-build leaves nothing that passes for a finished stage.

Checked through the cache (which job says it built what, which stage directories are complete), not by timing.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from conftest import kill_when, run_harness
from smoke_sweep import ALGORITHMS, shared_smoke_sweep

from harness.results import read_results
from harness.stages import MARKER
from harness.training import latest_checkpoint

pytestmark = pytest.mark.slow


def complete_stages(cache: Path, name: str) -> list[Path]:
    return sorted(path.parent for path in (cache / name).glob(f"*/{MARKER}"))


def test_a_parallel_sweep_builds_the_shared_sft_stage_once(tmp_path_factory) -> None:
    """The shared smoke sweep (tests/smoke_sweep.py): base, sft and dpo at once through the parallel launcher. Every
    one needs seed 0's SFT policy: sft trains it, dpo starts from it, and base is compared with it by the win_rate
    suite (a default suite); all three need the data and the base model."""
    sweep = shared_smoke_sweep(tmp_path_factory)
    cache = sweep.cache
    results = read_results(sweep.dir)
    assert sorted(r["algorithm"] for r in results) == sorted(ALGORITHMS)
    assert all(r["status"] == "complete" for r in results)
    # the jobs really overlapped in time, so they met at the stage locks (not one after another)
    started = max(datetime.fromisoformat(r["started_at"]) for r in results)
    finished = min(datetime.fromisoformat(r["finished_at"]) for r in results)
    assert started < finished, "the joblib jobs ran one after another"

    # (other tests later reuse this cache: only what the sweep's own jobs name is looked at)
    for shared in ("data", "base_model", "sft"):
        (key,) = {r["stages"][shared]["key"] for r in results}  # one stage for all three
        assert (cache / shared / key) in complete_stages(cache, shared), shared
        builders = [r["algorithm"] for r in results if r["cost"]["built_now"][shared]]
        assert len(builders) == 1, f"jobs that say they built {shared}: {builders}"
    assert all((d / MARKER).exists() for d in (cache / "sft").iterdir() if d.is_dir()), "a half-built sft stage"


# Killed after a checkpoint, the next run resumes from it: tests/test_resume.py covers that case in depth.
KILL_POINTS: dict[str, Callable[[Path], bool]] = {
    "at_start": lambda cache: any(cache.glob("*/")),
}


@pytest.mark.parametrize("kill_point", list(KILL_POINTS))
def test_a_job_killed_mid_build_leaves_no_complete_stage_and_the_next_run_finishes_it(
    tmp_path: Path, kill_point: str
) -> None:
    # Long enough to still be training when killed; the trainer checkpoints every 50 steps. eval=[gold] keeps
    # win_rate's baseline SFT (another stage of the same name) out of the picture.
    args = [
        "algorithm=sft",
        "sft.trainer.max_steps=200",
        "sft.trainer.save_steps=50",
        "eval=[gold]",
        "debug=smoke",
        "cpu_threads=1",
        "logger=none",
        f"results_dir={tmp_path}",
    ]
    cache = tmp_path / "cache" / "sft"
    status = kill_when(args, lambda: KILL_POINTS[kill_point](cache))
    assert status == -signal.SIGKILL
    (stage_dir,) = [path for path in cache.iterdir() if path.is_dir()]
    assert not list(cache.rglob(MARKER)), "a killed build left a stage that passes for complete"
    checkpoint = latest_checkpoint(stage_dir / "checkpoints")  # what the next build may resume from
    assert (checkpoint is not None) == (kill_point == "after_a_checkpoint")

    # the lock file the killed job held is still there; the kernel released its flock, so it blocks nobody
    rerun = run_harness(*args, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (result,) = read_results(tmp_path / "runs")
    assert result["status"] == "complete"
    assert result["cost"]["built_now"]["sft"] is True
    assert result["stages"]["sft"]["key"] == stage_dir.name
    assert complete_stages(tmp_path / "cache", "sft") == [stage_dir]
    assert result["metrics"]["train/global_step"] == 200  # trained to the end, not stopped at the kill
    resumed = {"sft": checkpoint[0]} if checkpoint else {}
    assert result["resumed_from"] == resumed
