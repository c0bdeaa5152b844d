"""RAFT / ReST (rejection-sampling fine-tuning): the selection rule, and two rounds on a smoke budget that learn."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_harness

from plugins.algorithms.raft import choose_best, ended_with_eos


# -- selection ------------------------------------------------------------------------------------------------
def test_choose_best_keeps_the_best_ended_sample_of_each_prompt() -> None:
    """Three prompts, n=3 samples each (indexes 0-2, 3-5, 6-8).

    Prompt 1: scores 0.2, 0.9, 0.9, all ended -> the tie at 0.9 goes to the first, index 1.
    Prompt 2: scores 0.5, 0.8, 0.1, but index 4 (0.8) never emitted EOS -> the best that ended, index 3 (0.5).
    Prompt 3: no sample ended -> nothing kept, however high its scores (0.99).
    """
    scores = [0.2, 0.9, 0.9, 0.5, 0.8, 0.1, 0.99, 0.99, 0.99]
    ended = [True, True, True, True, False, True, False, False, False]
    assert choose_best(scores, ended, n=3) == [1, 3]
    assert choose_best(scores, [True] * 9, n=1) == list(range(9))  # n=1: every sample is its prompt's best


def test_choose_best_top_fraction_keeps_the_prompts_with_the_highest_best() -> None:
    """Bests per prompt (n=2): 0.4 (index 1), 0.7 (index 2), 0.7 (index 5), 0.1 (index 6).

    top_fraction=0.5 -> ceil(0.5 * 4) = 2 prompts: the two 0.7s (indexes 2 and 5).
    top_fraction=0.3 -> ceil(0.3 * 4) = 2 as well; 0.2 -> ceil(0.8) = 1: the tie at 0.7 goes to the earlier, 2.
    A tiny fraction still keeps one prompt.
    """
    scores = [0.3, 0.4, 0.7, 0.1, 0.2, 0.7, 0.1, 0.0]
    ended = [True] * 8
    assert choose_best(scores, ended, n=2, top_fraction=0.5) == [2, 5]
    assert choose_best(scores, ended, n=2, top_fraction=0.3) == [2, 5]
    assert choose_best(scores, ended, n=2, top_fraction=0.2) == [2]
    assert choose_best(scores, ended, n=2, top_fraction=1e-9) == [2]
    assert choose_best(scores, ended, n=2, top_fraction=1.0) == [1, 2, 5, 6]
    with pytest.raises(ValueError):
        choose_best(scores[:7], ended[:7], n=2)


def test_choose_best_min_reward_drops_prompts_whose_best_falls_short_before_top_fraction() -> None:
    """Five prompts, n=2 (indexes 0-1, 2-3, 4-5, 6-7, 8-9), min_reward=0.5.

    Prompt 1: best 0.9 (index 0). Prompt 2: best 0.6 (index 3). Prompt 3: best 0.5 (index 4: equal to min_reward
    is enough). Prompt 4: best 0.4 -> nothing. Prompt 5: 0.95 never emitted EOS, and the one that did (0.2) falls
    short -> nothing. Kept: [0, 3, 4].
    top_fraction=0.5 then applies to the 3 prompts left, not the 5: ceil(0.5 * 3) = 2 -> the 0.9 and the 0.6
    (over all 5 it would be ceil(2.5) = 3, all of them). Every best short of min_reward: nothing at all.
    """
    scores = [0.9, 0.1, 0.3, 0.6, 0.5, 0.5, 0.4, 0.0, 0.95, 0.2]
    ended = [True] * 8 + [False, True]
    assert choose_best(scores, ended, n=2, min_reward=0.5) == [0, 3, 4]
    assert choose_best(scores, ended, n=2, top_fraction=0.5, min_reward=0.5) == [0, 3]
    assert choose_best(scores, ended, n=2, top_fraction=1e-9, min_reward=0.5) == [0]
    assert choose_best(scores, ended, n=2, min_reward=1.0) == []  # a verifier's 1.0: no right answer, nothing kept
    assert choose_best([0.0, 1.0, 0.0, 0.0], [True] * 4, n=2, min_reward=1.0) == [1]


def test_ended_with_eos_reads_the_last_sampled_token() -> None:
    eos = 2
    assert ended_with_eos([[5, 6, eos], [5, 6, 7], [], [eos]], eos) == [True, False, False, True]


# -- two rounds through the CLI -------------------------------------------------------------------------------
def test_raft_rounds_learn_and_chain(tmp_path: Path) -> None:
    """Each round keeps samples better than it drew; round 2 starts from round 1's weights (its stage is keyed
    on it, and it draws better samples than round 1 drew from SFT); parameters change; the cost covers both."""
    result = run_harness(
        "debug=smoke",
        "algorithm=raft",
        "reward=gold",
        "eval=[gold]",
        "algorithm.n=8",
        "algorithm.trainer.max_steps=12",
        "algorithm.trainer.learning_rate=1e-3",
        f"results_dir={tmp_path}",
        "cpu_threads=1",
        "snapshots=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = tmp_path.rglob("result.json")
    job = json.loads(path.read_text())
    m = job["metrics"]

    # snapshots=2 through the shared training stage: the policy at 1/3 (in round 1) and 2/3 (in round 2) of all the
    # rounds' optimiser steps, each evaluated as the final policy (a trajectory, as every trained method has)
    trajectory = job["trajectory"]
    assert len(trajectory) == 2, trajectory
    steps = [point["step"] for point in trajectory]
    assert steps == sorted(steps) and 0 < steps[0] < m["train/global_step"]
    assert [round(point["fraction"], 2) for point in trajectory] == [0.33, 0.67]
    assert all("eval/gold/reward" in point["metrics"] for point in trajectory)
    for number in (1, 2):
        assert m[f"train/round{number}/kept_reward"] > m[f"train/round{number}/sample_reward"]
        assert m[f"train/round{number}/params_changed"] == 1.0
        assert m[f"train/round{number}/ended_fraction"] > 0.5
    assert m["train/round2/sample_reward"] > m["train/round1/sample_reward"]  # sampled from the trained policy

    # the chain: round 2's stage is keyed on round 1's, and the algorithm's stage on both
    final = Path(job["stages"]["raft"]["path"])
    rounds = json.loads((final / "stage.json").read_text())["inputs"]
    cache = final.parent.parent
    round2 = json.loads((cache / "raft_round2" / rounds["round2"] / "stage.json").read_text())
    assert round2["inputs"]["policy"] == rounds["round1"]
    assert (final / "model.safetensors").exists()  # the policy lives in the algorithm's stage, like any other

    # cost: train seconds and tokens cover both rounds, counted once
    assert "raft_round1" not in job["stages"] and "raft_round2" not in job["stages"]
    seconds = m["train/round1/seconds"] + m["train/round2/seconds"]
    assert job["cost"]["wall_s"]["raft"] >= seconds > 0
    assert job["cost"]["tokens_trained"]["raft"] == m["train/tokens_trained"] > 0

    # one training curve: steps run on from round 1 into round 2, the loss is logged
    curve = [json.loads(line) for line in (path.parent / "train_log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in curve] == sorted(row["step"] for row in curve)
    assert {row["round"] for row in curve} == {1, 2}
    assert any("loss" in row for row in curve if row["round"] == 2)
    assert sum("kept_reward" in row for row in curve) == 2
