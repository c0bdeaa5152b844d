"""RL with verifiable rewards on task=arithmetic through the CLI, one shared smoke run of the new and changed methods:
the GRPO family (GRPO, GSPO, CISPO, SAPO) with each batch of samples used for two optimiser steps, rejection-sampling
fine-tuning (algorithm=rft: RAFT with min_reward 1.0) and DPO on verifier-labelled pairs. Each job completes with
pass@1; each trainer received the settings that define its method; GSPO's sequence clip acts once a batch is reused;
RFT trains on right answers only; DPO's pairs are the task's `label_pairs`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO, results_by_algorithm, run_harness

from plugins.tasks.arithmetic import Arithmetic

FAMILY = ("grpo", "gspo", "cispo", "sapo")
COMMON = ("debug=smoke", "task=arithmetic", "reward=verifier", "eval=[pass_at_k]", "cpu_threads=1")
# What tells each method apart, as its trainer must receive it (conf/algorithm/<name>.yaml; GRPO's clip is TRL's)
DEFINING: dict[str, dict[str, Any]] = {
    "grpo": {"loss_type": "grpo", "importance_sampling_level": "token", "epsilon": 0.2},
    "gspo": {"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4},
    "cispo": {"loss_type": "cispo", "importance_sampling_level": "token", "epsilon_high": 5.0},
    "sapo": {"loss_type": "sapo", "sapo_temperature_pos": 1.0, "sapo_temperature_neg": 1.05},
}


@dataclass(frozen=True)
class Jobs:
    results: dict[str, dict[str, Any]]  # result.json by algorithm
    cache: Path
    family_stderr: str


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Jobs:
    """Two sweeps on one stage cache (the second reuses the data, base model and SFT policy). The family's: smoke
    budgets, 4 steps, a batch serving 2 steps (steps 1-2 share one batch, 3-4 the next), so at step 4 the ratios
    have moved. `++`: in a sweep Hydra first composes the default algorithm (sft), which has no trainer."""
    root = tmp_path_factory.mktemp("rlvr")
    where = (f"results_dir={root / 'results'}", f"cache_dir={root / 'cache'}")
    family = run_harness(
        "-m", f"algorithm={','.join(FAMILY)}", "+algorithm.trainer.steps_per_generation=2",
        "++algorithm.trainer.max_steps=4", *COMMON, *where,
    )  # fmt: skip
    assert family.returncode == 0, family.stderr[-3000:]
    others = run_harness("-m", "algorithm=rft,dpo", "+hydra.callbacks.report.enabled=false", *COMMON, *where)
    assert others.returncode == 0, others.stderr[-3000:]
    return Jobs(results_by_algorithm(root / "results"), root / "cache", family.stderr)


def stage_dir(result: dict[str, Any], name: str) -> Path:
    return Path(result["stages"][name]["path"])


def training_log(result: dict[str, Any]) -> dict[int, dict[str, float]]:
    """Step -> what the trainer logged at that step (the final summary row left out)."""
    rows = (json.loads(line) for line in (stage_dir(result, result["algorithm"]) / "log_history.jsonl").open())
    return {row["step"]: row for row in rows if "loss" in row}


def true_answer(prompt: str) -> int:
    """`compute 14 + 7 - 9 :` -> 12, worked here rather than by the task."""
    tokens = prompt.removeprefix("compute ").removesuffix(":").split()
    total = int(tokens[0])
    for op, value in zip(tokens[1::2], tokens[2::2], strict=True):
        total += int(value) if op == "+" else -int(value)
    return total


def test_every_method_completes_trains_and_reports_pass_at_1(jobs: Jobs) -> None:
    assert set(jobs.results) == {*FAMILY, "rft", "dpo"}
    for algorithm, result in jobs.results.items():
        assert result["status"] == "complete", (algorithm, result["error"])
        m = result["metrics"]
        assert 0.0 <= m["eval/pass_at_k/pass_at_1"] <= m["eval/pass_at_k/solved"] <= 1.0, algorithm
        assert m["eval/pass_at_k/problems"] == 16 and m["eval/pass_at_k/samples_per_problem"] == 4
        assert math.isfinite(m["train/loss"]) and m["train/params_changed"] == 1.0, algorithm


def test_the_family_sweep_report_compares_pass_at_1(jobs: Jobs) -> None:
    (comparison,) = (jobs.cache.parent / "results").rglob("comparison.md")  # the second sweep makes none
    header = next(line for line in comparison.read_text().splitlines() if line.startswith("| algorithm"))
    assert "| pass@1 |" in header
    rows = {line.split("|")[1].strip() for line in comparison.read_text().splitlines() if line.startswith("| ")}
    assert set(FAMILY) <= rows
    assert "on_multirun_end raised" not in jobs.family_stderr  # a failed report is only a warning from Hydra


def test_each_grpo_variant_trainer_received_its_defining_settings(jobs: Jobs) -> None:
    """Read from the TRL config the trainer saved with the policy (training_args.bin), not from our YAML: the
    method's own settings, every field its YAML sets under `trainer:`, and the command line's."""
    import torch

    for algorithm in FAMILY:
        path = stage_dir(jobs.results[algorithm], algorithm) / "training_args.bin"
        args = torch.load(path, weights_only=False)  # a TRL GRPOConfig this test's own job wrote
        received = {field: getattr(args, field) for field in DEFINING[algorithm]}
        assert received == pytest.approx(DEFINING[algorithm]), algorithm
        assert (args.steps_per_generation, args.max_steps) == (2, 4), algorithm
        if algorithm != "grpo":  # the variants' YAMLs hold literal values (grpo.yaml's interpolate)
            own = yaml.safe_load((REPO / "conf" / "algorithm" / f"{algorithm}.yaml").read_text())["trainer"]
            assert {field: getattr(args, field) for field in own} == own, algorithm


def test_gspo_clips_sequences_once_a_batch_is_reused_and_grpo_does_not(jobs: Jobs) -> None:
    """Steps 1 and 3 open a fresh batch (every ratio 1: nothing clips, the KL to SFT is still 0 at step 1). Step 4
    reuses step 3's batch after step 3's update: GSPO's sequence ratio has left its 3e-4 range for some
    sequences, while no token ratio of GRPO's has left 0.2; the policy has moved from SFT (KL > 0)."""
    logs = {algorithm: training_log(jobs.results[algorithm]) for algorithm in ("grpo", "gspo")}
    assert logs["gspo"][3]["grad_norm"] > 0, "no reward spread in step 3's batch: the smoke run cannot show a clip"
    for algorithm, log in logs.items():
        assert sorted(log) == [1, 2, 3, 4], algorithm
        assert log[1]["clip_ratio/region_mean"] == log[3]["clip_ratio/region_mean"] == 0.0, algorithm
        assert log[4]["kl"] > 0.0, algorithm
    assert logs["gspo"][4]["clip_ratio/region_mean"] > 0.0
    assert logs["grpo"][4]["clip_ratio/region_mean"] == 0.0


def test_rft_trains_on_right_answers_only(jobs: Jobs) -> None:
    """Each round's stage was keyed with min_reward 1.0, and kept only samples the verifier marked right: fewer
    than one per prompt, since the smoke policy is mostly wrong."""
    result = jobs.results["rft"]
    rounds = json.loads((stage_dir(result, "rft") / "stage.json").read_text())["inputs"]
    assert sorted(rounds) == ["round1", "round2"]
    for number in (1, 2):
        stage = json.loads((jobs.cache / f"rft_round{number}" / rounds[f"round{number}"] / "stage.json").read_text())
        assert stage["config"]["min_reward"] == 1.0 and stage["config"]["reward"] == "verifier"
        m = stage["metrics"]
        assert m["kept_reward"] == 1.0 and m["sample_reward"] < 1.0, m
        assert 0 < m["kept_samples"] < m["prompts"], m
        assert result["metrics"][f"train/round{number}/kept_samples"] == m["kept_samples"]


def test_dpo_trains_on_pairs_the_verifier_labelled(jobs: Jobs) -> None:
    """The preferences stage: two SFT samples of each of the 64 training problems, labelled by the task's
    label_pairs; every chosen completion is right and every rejected one wrong; the pairs both right or both wrong
    were dropped and counted, and DPO trained on exactly the pairs kept."""
    from datasets import load_from_disk

    result = jobs.results["dpo"]
    metrics = result["stages"]["preferences"]["metrics"]
    pairs = load_from_disk(str(stage_dir(result, "preferences")))["preferences"]
    assert len(pairs) == metrics["pairs"] == round(metrics["pairs_kept"] * 64) > 0
    assert metrics["pairs_kept"] + metrics["both_right"] + metrics["both_wrong"] == pytest.approx(1.0)
    task = Arithmetic()
    for row in pairs:
        problem = {"answer": true_answer(row["prompt"])}
        assert task.verify(problem, row["chosen"]) == 1.0 and task.verify(problem, row["rejected"]) == 0.0, row
    assert result["metrics"]["train/pairs"] == len(pairs)
