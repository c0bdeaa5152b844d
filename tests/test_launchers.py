"""Sweeps through Hydra's other launchers: submitit (local, the stand-in for SLURM).

Each needs its Hydra plugin (hydra-submitit-launcher) and skips, saying so, without it. The tuning sweeper:
tests/test_tuning.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_harness

from harness.app import CONFIG_DIR
from harness.results import read_results

GOLD = "eval/gold/reward"


def sweep_dir(results: list[dict]) -> Path:
    (folder,) = {Path(r["dir"]).parent for r in results}
    return folder


@pytest.mark.slow
def test_submitit_local_runs_the_sweep_and_the_report_follows(tmp_path: Path) -> None:
    pytest.importorskip(
        "hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed (pip install it)"
    )
    result = run_harness(
        "-m",
        "hydra/launcher=submitit_local",
        "algorithm=base,sft",
        "seed=0",
        "debug=smoke",
        "cpu_threads=1",  # submitit_local starts every job at once
        "logger=none",
        f"results_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path / "sweeps")
    assert sorted(r["algorithm"] for r in results) == ["base", "sft"]
    assert all(r["status"] == "complete" and GOLD in r["metrics"] for r in results)
    folder = sweep_dir(results)
    assert list((folder / ".submitit").glob("*/*_result.pkl")), "the jobs did not go through submitit"
    # the report callback ran in the launching process, from the folders the submitit jobs wrote
    rows = (folder / "comparison.csv").read_text().splitlines()
    assert sorted(row.split(",")[0] for row in rows[1:]) == ["base", "sft"]


@pytest.mark.parametrize("experiment", sorted(path.stem for path in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")))
def test_every_experiment_takes_any_launcher_from_the_command_line(compose, experiment: str) -> None:
    """An experiment's own launcher (joblib, two at a time) gives way whole to a submitit one, without handing it
    joblib's keys (submitit's structured config would reject `n_jobs`)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    default = compose([f"experiment={experiment}"]).hydra.launcher
    source = (Path(CONFIG_DIR) / "experiment" / f"{experiment}.yaml").read_text()
    declared = "override /hydra/launcher: parallel" in source
    if declared:  # the experiment's own choice wins over the default (conf/sweep_view/live.yaml)
        assert default._target_ == "hydra_plugins.harness_launcher.LiveJoblibLauncher" and default.n_jobs == 2
    else:
        assert default._target_ == "hydra_plugins.harness_launcher.LiveBasicLauncher"
    for launcher in ("submitit_local", "submitit_slurm"):
        chosen = compose([f"experiment={experiment}", f"hydra/launcher={launcher}"]).hydra.launcher
        assert "n_jobs" not in chosen and chosen.timeout_min > 0
