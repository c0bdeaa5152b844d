"""End to end on the testbed: base model built once, SFT learns, results and W&B runs written, cache reused.

The budget is small (a 2-layer model, a few hundred steps) but real: SFT must beat the base model on the
gold reward by a clear margin, as it does at full size.
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
from conftest import results_by_algorithm, run_harness

from plugins.loggers.wandb import read_offline_run

pytestmark = pytest.mark.slow

BUDGET = [
    "task.num_pretrain=8000",
    "task.num_pretrain_heldout=500",
    "task.num_sft=1500",
    "task.num_eval_prompts=256",
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.train.steps=400",
]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    root = tmp_path_factory.mktemp("results")
    result = run_harness("-m", "algorithm=base,sft", "seed=0", f"results_dir={root}", *BUDGET)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, results_by_algorithm(root / "sweeps")


def test_every_job_writes_a_complete_result(sweep) -> None:
    _, results = sweep
    assert sorted(results) == ["base", "sft"]
    for name, result in results.items():
        assert result["status"] == "complete" and result["error"] is None
        assert result["schema_version"] == 1 and result["seed"] == 0
        assert {"eval/gold/reward", "eval/gold/grammatical"} <= set(result["metrics"])
        assert 0.0 <= result["metrics"]["eval/gold/reward"] <= 1.0
        assert result["versions"]["trl"] and result["versions"]["torch"]
        assert result["cost"]["tokens_generated"] > 0 and result["cost"]["peak_memory_mb"] > 0
        samples = (result["dir"] / "samples.jsonl").read_text().splitlines()
        assert len(samples) == 256
        row = json.loads(samples[0])
        assert {"prompt", "completion", "gold_reward", "grammatical"} <= set(row)
        assert name in result["name"]


def test_cost_says_where_the_time_went(sweep) -> None:
    _, results = sweep
    for result in results.values():
        wall = result["cost"]["wall_s"]
        suites = [f"eval/{suite}" for suite in result["config"]["eval"]]
        parts = {"logger", "train_job", "eval", "eval/sampling", *suites}
        assert parts <= set(wall) and all(wall[part] >= 0 for part in parts)
        # a stage a suite built (win_rate's SFT for `base`) is charged to that stage, not to the suite
        assert wall["eval/sampling"] + sum(wall[suite] for suite in suites) <= wall["eval"] + 1e-3
    # the basic launcher runs both jobs in one process: its start-up is charged to the first job only
    assert results["base"]["cost"]["wall_s"]["startup"] > 0
    assert "startup" not in results["sft"]["cost"]["wall_s"]


def test_the_base_model_is_shared_by_every_algorithm(sweep) -> None:
    _, results = sweep
    base_keys = {r["stages"]["base_model"]["key"] for r in results.values()}
    assert len(base_keys) == 1
    # the sweep built it in its first job; the second job found it complete
    assert [r["stages"]["base_model"]["built_now"] for r in (results["base"], results["sft"])] == [True, False]


def test_base_model_learns_the_language(sweep) -> None:
    _, results = sweep
    data = results["base"]["stages"]["data"]["metrics"]
    base = results["base"]["stages"]["base_model"]["metrics"]
    # A uniform guess over the vocabulary costs log(56) = 4.0 nats; the grammar itself needs ~1.48.
    assert base["heldout_loss"] < 2.0
    assert base["heldout_loss"] > data["entropy_per_word"] - 0.02  # nothing beats the true distribution
    assert results["base"]["metrics"]["eval/gold/grammatical"] > 0.6


def test_sft_learns_from_the_demonstrations(sweep) -> None:
    _, results = sweep
    sft, base = results["sft"]["metrics"], results["base"]["metrics"]
    assert sft["train/loss"] < sft["train/first_loss"]
    assert sft["train/params_changed"] == 1.0
    assert sft["train/tokens_trained"] > 0
    # positive demonstrations move the policy: gold reward clearly up, grammar kept
    # (a difference of three standard errors of the difference, and never less than 0.08)
    margin = 3 * math.hypot(sft["eval/gold/reward_stderr"], base["eval/gold/reward_stderr"])
    assert sft["eval/gold/reward"] > base["eval/gold/reward"] + max(margin, 0.08)
    assert sft["eval/gold/grammatical"] > 0.6


def test_wandb_offline_run_holds_config_and_summary(sweep) -> None:
    root, results = sweep
    runs = {read_offline_run(d)["job_type"]: read_offline_run(d) for d in (root / "wandb").glob("offline-run-*")}
    assert sorted(runs) == ["base", "comparison", "sft"]  # a run per job, and the sweep's comparison
    sft = runs["sft"]
    assert sft["config"]["algorithm"]["name"] == "sft" and sft["config"]["seed"] == 0
    assert sft["summary"]["eval/gold/reward"] == pytest.approx(results["sft"]["metrics"]["eval/gold/reward"])
    assert runs["base"]["group"] == sft["group"] == runs["comparison"]["group"] and sft["group"].startswith("default-")
    # the SFT curve streamed during training, on its own step axis
    losses = [row for row in sft["history"] if "train/loss" in row]
    assert len(losses) >= 3 and all("train/step" in row for row in losses)


def test_a_second_run_reuses_every_stage_and_reproduces_the_metrics(sweep) -> None:
    root, results = sweep
    rerun = run_harness("algorithm=sft", "seed=0", f"results_dir={root}", "logger=none", *BUDGET)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    (again,) = results_by_algorithm(root / "runs").values()
    assert not any(again["cost"]["built_now"].values())
    assert again["stages"]["sft"]["key"] == results["sft"]["stages"]["sft"]["key"]
    # same weights, same prompts, same sampling seed: the same numbers
    assert again["metrics"] == results["sft"]["metrics"]


def test_harness_eval_scores_a_saved_checkpoint_like_the_job_that_trained_it(sweep) -> None:
    root, results = sweep
    from conftest import HARNESS

    sft_dir = results["sft"]["stages"]["sft"]["path"]
    evaluated = subprocess.run(
        [
            str(HARNESS.parent / "harness-eval"),
            sft_dir,
            "eval=[gold,kl]",
            "algorithm.reference=base",
            f"results_dir={root / 'external'}",
            "logger=none",
            *BUDGET,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    (path,) = (root / "external").rglob("result.json")
    result = json.loads(path.read_text())
    assert result["algorithm"] == "checkpoint"
    # same prompts, same sampling seed, same weights: the very numbers the SFT job reported
    assert result["metrics"]["eval/gold/reward"] == results["sft"]["metrics"]["eval/gold/reward"]
    assert result["metrics"]["eval/kl/seq_kl"] > 0.0  # SFT moved away from the base model


def test_harness_eval_rejects_a_directory_without_a_model(tmp_path) -> None:
    from conftest import HARNESS

    evaluated = subprocess.run(
        [str(HARNESS.parent / "harness-eval"), str(tmp_path), "logger=none", f"results_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert evaluated.returncode == 2
    assert evaluated.stderr.strip().splitlines()[-1] == (
        f"error: algorithm.path='{tmp_path}': not a saved model directory (no config.json there)"
    )
