"""Kill a job (SIGKILL) while it trains, run the same command again: it resumes from the stage's last checkpoint
(TRL's for SFT, our own for PPO, optimizer and RNG included) instead of starting over, finishes with the metrics
of an uninterrupted run, resumes the same W&B run, and leaves nothing corrupt behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import kill_when, results_by_algorithm, run_harness

from plugins.loggers.wandb import read_offline_run

pytestmark = pytest.mark.slow

# The resumed run replays the killed one's data order and random numbers, so it matches the uninterrupted one
# up to floating-point reduction order; gold reward (256 prompts... here 32) is allowed this much slack.
TOLERANCE = 0.02
COMMON = ("debug=smoke", "logger=wandb", "eval=[gold,kl]")
SFT = ("algorithm=sft", "sft.trainer.max_steps=80", "sft.trainer.save_steps=20")
PPO = ("algorithm=ppo", "algorithm.trainer.total_episodes=768", "algorithm.trainer.save_every=4")


def _curve(path: Path, key: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [(row["step"], row[key]) for row in rows if key in row]


def _resume_and_compare(tmp_path: Path, args: tuple[str, ...], stage: str, checkpoint_glob: str, curve: str) -> dict:
    killed_root, clean_root = tmp_path / "killed", tmp_path / "clean"
    stage_dir = killed_root / "cache" / stage
    kill_when((*args, *COMMON, f"results_dir={killed_root}"), lambda: any(stage_dir.glob(checkpoint_glob)))
    assert not list((killed_root / "cache" / stage).glob("*/COMPLETE")), "a killed build must not be complete"

    again = run_harness(*args, *COMMON, f"results_dir={killed_root}")
    assert again.returncode == 0, again.stderr[-3000:]
    clean = run_harness(*args, *COMMON, f"results_dir={clean_root}")
    assert clean.returncode == 0, clean.stderr[-3000:]

    resumed = results_by_algorithm(killed_root / "runs")[args[0].split("=")[1]]
    uninterrupted = results_by_algorithm(clean_root / "runs")[args[0].split("=")[1]]
    assert resumed["resumed"] is True and uninterrupted["resumed"] is False
    assert resumed["resumed_from"][stage] > 0
    for key in ("eval/gold/reward", "eval/kl/seq_kl"):
        assert resumed["metrics"][key] == pytest.approx(uninterrupted["metrics"][key], abs=TOLERANCE), key
    # the curve has every step once (cut back to the checkpoint, then continued) and retraces the clean run's
    steps, clean_steps = (_curve(Path(r["dir"]) / "train_log.jsonl", curve) for r in (resumed, uninterrupted))
    assert [s for s, _ in steps] == sorted({s for s, _ in steps}) == [s for s, _ in clean_steps]
    assert [v for _, v in steps] == pytest.approx([v for _, v in clean_steps], rel=1e-3, abs=1e-4)
    # the same W&B run: the killed job's id (its folder's suffix; its file may end mid-record) is reused
    folders = sorted((killed_root / "wandb").glob("offline-run-*"))
    # (an attempt made while the killed job's W&B service still held the id may leave a folder of its own)
    assert len(folders) >= 2 and len({folder.name.rsplit("-", 1)[1] for folder in folders}) == 1
    assert read_offline_run(folders[-1])["job_type"] == args[0].split("=")[1]
    assert not list((killed_root / "wandb" / "pending").glob("*.id"))  # finished: nothing left to resume
    return resumed


def test_sft_resumes_from_its_trainer_checkpoint(tmp_path: Path) -> None:
    resumed = _resume_and_compare(tmp_path, SFT, "sft", "*/checkpoints/checkpoint-*/trainer_state.json", "loss")
    assert resumed["resumed_from"]["sft"] % 20 == 0


def test_ppo_resumes_from_its_own_state(tmp_path: Path) -> None:
    resumed = _resume_and_compare(tmp_path, PPO, "ppo", "*/checkpoints/ppo-rank0/state.pt", "objective/kl")
    assert resumed["resumed_from"]["ppo"] % 4 == 0
    assert resumed["metrics"]["train/updates"] == 24 and resumed["metrics"]["train/episodes"] == 768


def test_a_sweep_rerun_skips_complete_jobs(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    args = ("-m", "algorithm=base", "seed=0,1", "debug=smoke", "logger=none", "eval=[gold]", f"results_dir={tmp_path}")
    first = run_harness(*args, f"hydra.sweep.dir={sweep_dir}")
    assert first.returncode == 0, first.stderr[-2000:]
    written = {p: p.stat().st_mtime_ns for p in sweep_dir.glob("*/result.json")}
    (sweep_dir / "1_base_seed1" / "result.json").unlink()  # as if job 1 had been killed
    second = run_harness(*args, f"hydra.sweep.dir={sweep_dir}")
    assert second.returncode == 0, second.stderr[-2000:]
    kept = sweep_dir / "0_base_seed0" / "result.json"
    assert kept.stat().st_mtime_ns == written[kept]  # not run again
    assert json.loads((sweep_dir / "1_base_seed1" / "result.json").read_text())["status"] == "complete"
