"""Sweeps through Hydra's other launchers and sweepers: submitit (local, the stand-in for SLURM) and Optuna.

Each needs its Hydra plugin (hydra-submitit-launcher, hydra-optuna-sweeper) and skips, saying so, without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import run_harness

from harness.app import CONFIG_DIR
from harness.objective import objective_value
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


def test_the_optuna_search_composes_as_a_dpo_search_at_a_kl_budget(compose) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    cfg = compose(["hparams_search=dpo_optuna"])
    assert cfg.algorithm.name == "dpo" and cfg.objective == GOLD and cfg.kl_budget > 0
    assert "kl" in cfg.eval and "gold" in cfg.eval  # what the objective and the budget read
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "maximize"
    assert sorted(sweeper.params) == ["algorithm.trainer.beta", "algorithm.trainer.learning_rate"]


@pytest.mark.slow
def test_an_optuna_search_gets_each_trial_objective_at_the_kl_budget(tmp_path: Path) -> None:
    """Two smoke trials with a budget of 0 nats: the best value Optuna records is the best trial's gold reward,
    penalised exactly as harness/objective.py says when its KL is over the budget."""
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="hydra-optuna-sweeper is not installed")
    result = run_harness(
        "-m",
        "hparams_search=dpo_optuna",
        "hydra.sweeper.n_trials=2",
        "kl_budget=0.0",
        "debug=smoke",
        "logger=none",
        f"results_dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path / "sweeps")
    assert len(results) == 2 and all(r["status"] == "complete" and r["algorithm"] == "dpo" for r in results)
    trials = {
        (r["config"]["algorithm"]["trainer"]["beta"], r["config"]["algorithm"]["trainer"]["learning_rate"]): r
        for r in results
    }
    assert len(trials) == 2, "the two trials got the same hyperparameters"
    kl_metric = "eval/kl/seq_kl"
    values = {params: objective_value(r["metrics"], GOLD, 0.0, kl_key=kl_metric) for params, r in trials.items()}
    best = yaml.safe_load((sweep_dir(results) / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(max(values.values()))
    chosen = best["best_params"]
    assert values[(chosen["algorithm.trainer.beta"], chosen["algorithm.trainer.learning_rate"])] == max(values.values())
    # penalised below zero exactly when every trial drifted from SFT at all (a sample KL estimate can be <= 0)
    assert (best["best_value"] < 0) == all(r["metrics"]["eval/kl/seq_kl"] > 0 for r in results)
    assert (sweep_dir(results) / "comparison.csv").exists()  # the report follows an Optuna sweep too
