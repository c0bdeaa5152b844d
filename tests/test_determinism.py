"""Determinism on CPU: the same command with the same seed gives the same metrics and the same stage keys.

Each run gets its own fresh `results_dir`, so nothing is shared through the stage cache: both build the data,
the base model, SFT, preference pairs, the reward model and every algorithm from scratch. Comparisons are
exact (bit-for-bit floats); only metrics that measure wall-clock time are left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from conftest import results_by_algorithm, run_harness

pytestmark = pytest.mark.slow  # three smoke commands that train every stage: about a minute and a half

ALGORITHMS = ("sft", "dpo", "ppo")
# Metrics that time the run (`train/train_runtime_s`, `train/episodes_per_second`), not what it learned.
WALL_CLOCK_SUFFIXES = ("_runtime_s", "_per_second")


def smoke(results_dir: Path, *overrides: str) -> dict[str, dict]:
    """One `debug=smoke` command into `results_dir`; its results by algorithm, every job complete."""
    done = run_harness(*overrides, "debug=smoke", "logger=none", f"results_dir={results_dir}")
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_by_algorithm(results_dir)
    assert all(result["status"] == "complete" for result in results.values()), results
    return results


def learned(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if not key.endswith(WALL_CLOCK_SUFFIXES)}


def same(a: Any, b: Any) -> bool:
    """Exact equality, with NaN equal to NaN (a metric with nothing to average is NaN in both runs)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def differences(first: dict[str, Any], second: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {key: (first.get(key), second.get(key)) for key in first.keys() | second.keys()
            if not same(first.get(key), second.get(key))}


def stage_keys(result: dict) -> dict[str, str]:
    return {name: stage["key"] for name, stage in result["stages"].items()}


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict], dict[str, dict]]:
    """`harness -m algorithm=sft,dpo,ppo debug=smoke` twice, each into a fresh results_dir."""
    command = ("-m", f"algorithm={','.join(ALGORITHMS)}", "seed=0")
    roots = tmp_path_factory.mktemp("first"), tmp_path_factory.mktemp("second")
    sweeps = smoke(roots[0], *command), smoke(roots[1], *command)
    for root, results in zip(roots, sweeps, strict=True):  # else the tests below would compare a cache with itself
        assert set(results) == set(ALGORITHMS)
        for result in results.values():
            assert all(Path(stage["path"]).is_relative_to(root) for stage in result["stages"].values())
    return sweeps


def test_same_command_gives_the_same_metrics(two_sweeps) -> None:
    first, second = two_sweeps
    for algorithm in ALGORITHMS:
        metrics = learned(first[algorithm]["metrics"])
        assert any(key.startswith("eval/") for key in metrics) and any(key.startswith("train/") for key in metrics)
        assert differences(metrics, learned(second[algorithm]["metrics"])) == {}, algorithm


def test_same_command_gives_the_same_stage_keys(two_sweeps) -> None:
    first, second = two_sweeps
    for algorithm in ALGORITHMS:
        assert stage_keys(first[algorithm]) == stage_keys(second[algorithm]), algorithm


def test_a_job_does_not_depend_on_the_jobs_run_before_it(two_sweeps, tmp_path: Path) -> None:
    """PPO alone (which builds SFT, the preference pairs and the reward model itself) equals PPO as the third job
    of a sweep (which reuses SFT from the first job and the pairs from the second, in the same process).

    This failed while the reward model's new scalar head was drawn from torch's global generator unseeded: its
    initial weights then depended on how much randomness the earlier jobs of the process had used."""
    alone = smoke(tmp_path, "algorithm=ppo", "seed=0")["ppo"]
    in_sweep = two_sweeps[0]["ppo"]
    assert stage_keys(alone) == stage_keys(in_sweep)
    assert differences(learned(alone["metrics"]), learned(in_sweep["metrics"])) == {}
