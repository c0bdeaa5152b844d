"""Policies along training (`snapshots=N`): saved by every kind of training stage, evaluated exactly as the final
policy, listed in result.json's `trajectory`; asked of the job's own stage only."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_harness

from harness.snapshots import RECORD, of_stage, targets

SMOKE = ("debug=smoke", "logger=none", "eval=[gold,kl]")


def test_snapshots_are_evenly_spaced_and_never_the_final_step() -> None:
    assert targets(12, 3) == {3: 0.25, 6: 0.5, 9: 0.75}
    assert targets(3, 2) == {1: 1 / 3, 2: 2 / 3}
    assert targets(2, 5) == {1: 0.5}  # fewer steps than snapshots: each step once, the last is the final policy
    assert targets(100, 0) == {}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("snapshots")


def job(results: Path, *args: str) -> dict:
    out = results / "runs" / "-".join(a.replace("=", "_") for a in args)
    done = run_harness(*args, *SMOKE, f"results_dir={results}", f"hydra.run.dir={out}")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.parametrize("algorithm", ["dpo", "ppo"])
def test_each_snapshot_is_evaluated_as_the_final_policy(results: Path, algorithm: str) -> None:
    result = job(results, f"algorithm={algorithm}", "snapshots=2")
    trajectory = result["trajectory"]
    assert [point["fraction"] for point in trajectory] == pytest.approx([1 / 3, 2 / 3], abs=1e-6)
    assert [point["step"] for point in trajectory] == sorted(point["step"] for point in trajectory)
    final = {key for key in result["metrics"] if key.startswith("eval/")}
    for point in trajectory:
        assert set(point["metrics"]) == final  # the same suites, the same metrics
    stage = Path(result["stages"][algorithm]["path"])
    saved = of_stage(stage)
    assert [snapshot.step for snapshot in saved] == [point["step"] for point in trajectory]
    assert all((snapshot.path / "tokenizer_config.json").exists() for snapshot in saved)
    assert result["cost"]["wall_s"]["eval/snapshots"] > 0


def test_without_snapshots_the_stage_is_the_plain_one_and_the_start_never_has_them(results: Path) -> None:
    """snapshots=2 made a DPO stage of its own (the key holds it); the SFT stage it started from has none, and a
    job without snapshots reuses that plain SFT and trains a DPO stage with no trajectory."""
    plain = job(results, "algorithm=dpo")
    assert plain["trajectory"] == []
    assert not (Path(plain["stages"]["dpo"]["path"]) / "snapshots").exists()
    assert not (Path(plain["stages"]["sft"]["path"]) / "snapshots").exists()
    with_snapshots = sorted((results / "cache" / "dpo").glob(f"*/snapshots/*/{RECORD}"))
    assert with_snapshots, "the snapshots=2 job's stage is gone"
    assert Path(plain["stages"]["dpo"]["path"]) not in {p.parent.parent.parent for p in with_snapshots}


def test_a_lora_snapshot_is_an_adapter_on_its_start(results: Path) -> None:
    result = job(results, "algorithm=dpo", "peft=lora", "snapshots=1")
    [point] = result["trajectory"]
    [snapshot] = of_stage(Path(result["stages"]["dpo"]["path"]))
    assert (snapshot.path / "adapter_model.safetensors").exists() and (snapshot.path / "start.json").exists()
    assert not (snapshot.path / "model.safetensors").exists()
    assert math.isfinite(point["metrics"]["eval/kl/seq_kl"]) and 0 <= point["metrics"]["eval/gold/reward"] <= 1


def test_best_of_n_traces_its_curve_at_smaller_n(results: Path) -> None:
    """No training to snapshot: the same procedure at smaller n, evenly spaced in log n, each with its exact KL."""
    from plugins.algorithms.best_of_n import best_of_n_kl, smaller_n

    assert smaller_n(64, 5) == [2, 4, 8, 16, 32]
    result = job(results, "algorithm=best_of_n", "snapshots=2")  # smoke n = 4: n = 2 and 3
    assert [point["step"] for point in result["trajectory"]] == smaller_n(4, 2) == [2, 3]
    for point in result["trajectory"]:
        assert point["metrics"]["eval/kl/seq_kl"] == pytest.approx(best_of_n_kl(point["step"]))
        assert point["fraction"] == pytest.approx(math.log(point["step"]) / math.log(4), abs=1e-6)
    assert result["metrics"]["eval/kl/seq_kl"] == pytest.approx(best_of_n_kl(4))
