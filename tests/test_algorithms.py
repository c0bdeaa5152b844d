"""DPO (and its TRL variants), GRPO, RLOO, best-of-n and the learned reward on a small testbed budget.

Each runs through the `harness` command in one shared results folder, so the base model and SFT are built
by the first job and reused by the rest, and each must show learning: a metric moves the right way and the
parameters change.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_harness

from plugins.algorithms.best_of_n import best_of_n_kl, pick_best
from plugins.rewards.learned import join_text
from plugins.tasks.testbed import Testbed as ReviewTask  # not `Test*`: pytest would collect it

BUDGET = [
    "task.num_pretrain=8000",
    "task.num_pretrain_heldout=500",
    "task.num_sft=1500",
    "task.num_prompts=1200",
    "task.num_eval_prompts=256",
    "model.n_layer=2",
    "model.n_embd=64",
    "model.n_head=2",
    "model.train.steps=400",
    "logger=none",
]


# -- small pure pieces ------------------------------------------------------------------------------------
def test_best_of_n_kl_matches_the_closed_form() -> None:
    """KL(best-of-n || base) = log n - (n-1)/n: 0 for n=1, log 2 - 1/2 = 0.1931 for n=2."""
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    assert best_of_n_kl(16) == pytest.approx(2.7726 - 0.9375, abs=1e-4)


def test_pick_best_takes_the_argmax_of_each_group() -> None:
    scores = [0.1, 0.9, 0.3, 0.5, 0.5, 0.2]
    assert pick_best(scores, 3) == [1, 3]  # ties go to the first
    assert pick_best(scores, 1) == list(range(6))


def test_join_text_adds_one_space_only_where_needed() -> None:
    assert join_text("the plot was", "great .") == "the plot was great ."
    assert join_text("the plot was", " great .") == "the plot was great ."
    assert join_text("the plot was ", "great .") == "the plot was great ."


def test_preference_labels_follow_bradley_terry() -> None:
    """With r_a - r_b fixed, the first completion must win with probability sigmoid(beta (r_a - r_b))."""
    task = ReviewTask(num_pretrain=10, preference_beta=4.0)
    gold = task.gold()
    good, bad = "i loved the acting .", "i hated the acting ."
    gap = gold.reward(["the plot was great ."], [good])[0] - gold.reward(["the plot was great ."], [bad])[0]
    n = 4000
    rows, info = task.label_pairs(["the plot was great ."] * n, [good] * n, [bad] * n)
    won = sum(row["chosen"].strip() == good for row in rows) / n
    expected = 1 / (1 + math.exp(-4.0 * gap))
    assert won == pytest.approx(expected, abs=0.03)
    assert info["label_agreement_with_gold"] == pytest.approx(won)
    assert task.label_pairs(["p"], ["same ."], ["same ."])[0] == []  # no preference between equals


# -- integration --------------------------------------------------------------------------------------------
def harness_job(root: Path, *args: str) -> dict:
    before = set(root.rglob("result.json"))
    result = run_harness(*args, f"results_dir={root}", *BUDGET)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = set(root.rglob("result.json")) - before
    return json.loads(path.read_text()) | {"dir": str(path.parent)}


def history(result: dict, stage: str) -> list[dict]:
    path = Path(result["stages"][stage]["path"]) / "log_history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("algorithms")


@pytest.fixture(scope="module")
def sft(root: Path) -> dict:
    return harness_job(root, "algorithm=sft")


@pytest.mark.slow
def test_dpo_learns_from_preferences(root: Path, sft: dict) -> None:
    dpo = harness_job(root, "algorithm=dpo", "algorithm.trainer.num_train_epochs=1")
    m = dpo["metrics"]
    assert dpo["stages"]["sft"]["key"] == sft["stages"]["sft"]["key"]  # the same SFT as algorithm=sft
    assert not dpo["stages"]["sft"]["built_now"]
    assert m["train/params_changed"] == 1.0
    assert m["train/loss"] < m["train/first_loss"]
    assert m["train/rewards/margins"] > m["train/first_rewards/margins"]
    assert m["eval/gold/reward"] > sft["metrics"]["eval/gold/reward"]
    labels = dpo["stages"]["preferences"]["metrics"]
    assert 0.6 < labels["label_agreement_with_gold"] < 1.0  # noisy labels, but informative


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["ipo", "rdpo"])
def test_trl_preference_losses_are_reachable(root: Path, sft: dict, variant: str) -> None:
    result = harness_job(root, f"algorithm={variant}", "algorithm.trainer.max_steps=10")
    assert result["config"]["algorithm"]["trainer"]["loss_type"] == [{"ipo": "ipo", "rdpo": "robust"}[variant]]
    assert result["metrics"]["train/params_changed"] == 1.0
    assert result["stages"]["preferences"]["key"]  # same pairs as DPO


@pytest.mark.slow
def test_learned_reward_model_ranks_held_out_pairs(root: Path, sft: dict) -> None:
    result = harness_job(root, "algorithm=best_of_n", "algorithm.n=8", "reward=learned", "reward.eval_fraction=0.2")
    rm = result["stages"]["reward_model"]["metrics"]
    assert rm["test_pairs"] > 200
    assert rm["accuracy"] > 0.6 and rm["gold_accuracy"] > 0.6  # chance is 0.5; about 3 standard errors above
    assert rm["loss"] < rm["first_loss"]
    # best-of-n by the learned reward beats plain SFT sampling on the gold reward, and reports its proxy
    assert result["metrics"]["eval/gold/reward"] > sft["metrics"]["eval/gold/reward"] + 0.05
    assert "eval/gold/proxy_reward" in result["metrics"]
    assert result["stages"]["sft"]["key"] == sft["stages"]["sft"]["key"]


# What each offline preference method's training log shows when it learns: the quantity its loss pushes up.
PREFERENCE_SIGNAL = {
    "kto": "rewards/margins",  # desirable above undesirable, relative to the reference
    "simpo": "rewards/margins",  # length-normalised log-likelihood margin
    "cpo": "rewards/margins",
    "orpo": "log_odds_ratio",  # log sigma(log odds(chosen) - log odds(rejected))
}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", list(PREFERENCE_SIGNAL))
def test_preference_methods_learn_from_the_same_pairs(root: Path, sft: dict, algorithm: str) -> None:
    result = harness_job(
        root, f"algorithm={algorithm}", "algorithm.trainer.max_steps=30", "algorithm.trainer.logging_steps=5"
    )
    m = result["metrics"]
    signal = PREFERENCE_SIGNAL[algorithm]
    assert m["train/params_changed"] == 1.0
    assert m["train/loss"] < m["train/first_loss"]
    assert m[f"train/{signal}"] > m[f"train/first_{signal}"]
    # the same preference pairs as DPO's, sampled from the run's one SFT policy
    assert result["stages"]["preferences"]["metrics"]["pairs"] > 500
    start = json.loads((Path(result["stages"][algorithm]["path"]) / "stage.json").read_text())["inputs"]["start"]
    if algorithm == "orpo":  # no SFT stage: it starts from the base model
        assert start == result["stages"]["base_model"]["key"]
    else:
        assert start == sft["stages"]["sft"]["key"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("algorithm", "reward_key"),
    [
        ("grpo", "reward"),
        ("rloo", "reward"),
        ("dr_grpo", "reward"),
        ("dapo", "reward"),
        # online DPO's judge scores its own fresh samples; over 40 tiny steps they are too noisy to show a climb
        # (0.59 0.54 0.60 0.59 0.58 0.55 0.59 0.57 in one run, whose eval gold rose 0.60 -> 0.65): judged at eval only
        ("online_dpo", None),
    ],
)
def test_online_rl_raises_the_gold_reward(root: Path, sft: dict, algorithm: str, reward_key: str | None) -> None:
    result = harness_job(
        root,
        f"algorithm={algorithm}",
        "reward=gold",
        "algorithm.trainer.max_steps=40",
        "algorithm.trainer.logging_steps=5",
    )
    m = result["metrics"]
    assert m["train/params_changed"] == 1.0
    if reward_key is not None:
        rewards = [row[reward_key] for row in history(result, algorithm) if reward_key in row]
        assert len(rewards) >= 6
        assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3  # the training reward climbs
    assert m["eval/gold/reward"] > sft["metrics"]["eval/gold/reward"]
