"""Kirk et al. 2024 in miniature: the testbed's out-of-distribution split, eval=ood, and diversity per prompt vs
across prompts (experiment=kirk)."""

from __future__ import annotations

import hashlib
import json
import math
import random
from pathlib import Path

import pytest
from conftest import run_harness

from harness.errors import HarnessError
from harness.protocols import EvalContext, Policy
from harness.results import read_results
from plugins.evals.diversity import DiversityEval, per_and_across_prompt
from plugins.tasks.testbed import OOD_RULES
from plugins.tasks.testbed import Testbed as ReviewTask  # not `Test*`: pytest would collect it

SMOKE = {
    "num_pretrain": 3000,
    "num_pretrain_heldout": 200,
    "num_sft": 256,
    "num_prompts": 64,
    "num_eval_prompts": 32,
    "num_judge_prompts": 32,
}
TRAINING_SPLITS = ("sft", "prompts", "judge_prompts", "eval_prompts")  # eval_prompts: the in-distribution test

# sha256 (first 16 hex digits) of each split's rows, as json with sorted keys, and of build_datasets' metrics,
# computed from the code before `ood` existed: with ood off, every split must stay byte for byte what it was
BEFORE_OOD = {
    "smoke": {
        "eval_prompts": "eaaef23f287c2d24", "judge_prompts": "1cf7925f97bbdb4d", "pretrain": "3da9717cf1b03779",
        "pretrain_heldout": "c2c3e6891fa117b4", "prompts": "b657b363bdc3f45a", "sft": "fc812f5cb42039d3",
        "_info": "ea32c17b98decfdc",
    },
    "smoke_chat": {
        "eval_prompts": "48ad3b4e450b50fb", "judge_prompts": "a0ba19c7bcfcfba5", "pretrain": "3da9717cf1b03779",
        "pretrain_heldout": "c2c3e6891fa117b4", "prompts": "f1b916c40fdc6097", "sft": "1498b6b1a2f4741f",
        "_info": "ea32c17b98decfdc",
    },
    "default": {
        "eval_prompts": "4d53646ede490df2", "judge_prompts": "705ff8c6683b2da8", "pretrain": "2ea270b33dd7f6f7",
        "pretrain_heldout": "0cac473e14c0e411", "prompts": "3b904fb7622f8744", "sft": "47110793c4056a7e",
        "_info": "c2db41d90081bf9f",
    },
}  # fmt: skip
SETTINGS = {"smoke": SMOKE, "smoke_chat": {**SMOKE, "chat": True, "system_prompt": "be nice"}, "default": {}}


def build(task: ReviewTask, out: Path) -> tuple[dict, dict]:
    from datasets import load_from_disk

    info = task.build_datasets(out)
    return {name: split.to_list() for name, split in load_from_disk(str(out)).items()}, info


def digest(rows: object) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("setting", sorted(BEFORE_OOD))
def test_with_ood_off_every_split_is_what_it_was(tmp_path: Path, setting: str) -> None:
    splits, info = build(ReviewTask(**SETTINGS[setting], ood=None), tmp_path)
    # validation_prompts came later (equal-budget tuning), from its own stream: every split before it is unchanged
    validation = splits.pop("validation_prompts")
    info.pop("size_validation_prompts")
    assert {name: digest(rows) for name, rows in splits.items()} | {"_info": digest(info)} == BEFORE_OOD[setting]
    assert not {digest(row["prompt"]) for row in validation} & {digest(row["prompt"]) for row in splits["eval_prompts"]}


@pytest.mark.parametrize("rule", sorted(OOD_RULES))
def test_ood_openings_never_appear_in_a_training_split(tmp_path: Path, rule: str) -> None:
    task = ReviewTask(**SMOKE, ood=rule, num_ood_prompts=48)
    splits, _ = build(task, tmp_path / "on")
    for name in TRAINING_SPLITS:
        openings = [row["prompt"] for row in splits[name]]
        assert len(openings) == task.sizes[name]
        assert not any(task.is_ood(opening) for opening in openings), name
    held_out = [row["prompt"] for row in splits["ood_prompts"]]
    assert len(held_out) == 48 and all(task.is_ood(opening) for opening in held_out)
    assert not set(held_out) & {row["prompt"] for name in TRAINING_SPLITS for row in splits[name]}
    # the class is common in the unfiltered openings, so holding it out removes something
    off, _ = build(ReviewTask(**SMOKE), tmp_path / "off")
    assert sum(task.is_ood(row["prompt"]) for row in off["prompts"]) >= 3
    # pretraining keeps its corpus: out of distribution is relative to fine-tuning, not to the base model
    assert splits["pretrain"] == off["pretrain"] and splits["pretrain_heldout"] == off["pretrain_heldout"]


@pytest.mark.parametrize("rule", sorted(OOD_RULES))
def test_gold_reward_is_defined_on_ood_openings(rule: str) -> None:
    """Every held-out opening is a possible start of a review, and the grammar's own continuations of it parse and
    get a gold reward strictly inside (0, 1), positive and negative ones alike."""
    task = ReviewTask(**SMOKE, ood=rule)
    grammar, rng = task.grammar, random.Random(0)
    openings = task._prompts("ood_prompts")
    rewards = []
    for opening in openings:
        words = opening.split()
        assert grammar.prefix_log_prob(words) > -math.inf
        review = grammar.sample(rng, prefix=words)
        completion = " ".join(review[len(words) :])
        assert task.gold().grammatical([opening], [completion]) == [True]
        rewards.append(task.gold().reward([opening], [completion])[0])
    assert all(0 < r < 1 for r in rewards) and min(rewards) < 0.5 < max(rewards)


def test_an_unknown_ood_rule_is_refused_in_one_line() -> None:
    with pytest.raises(HarnessError, match=r"task.ood='plural': .* expected null or one of \['first_person'"):
        ReviewTask(ood="plural")


def test_per_prompt_and_across_prompt_distinct_n_by_hand() -> None:
    """Three prompts, K = 2 samples each.
    Per prompt, distinct-2 of each row: A ("good fun" twice) 1 unique / 2 bigrams = 0.5; B ("bad film", "dull plot")
    2/2 = 1.0; C ("a b c", "a b d": ab, bc, ab, bd) 3/4 = 0.75; mean (0.5 + 1.0 + 0.75) / 3 = 0.75.
    Across prompts, groups of K = 2 samples of 2 different prompts: column 0 of A, B ("good fun", "bad film") 2/2 and
    column 1 ("good fun", "dull plot") 2/2: 1.0; C is left over (no whole group of 2 prompts).
    Distinct-1 per prompt: A 2/4, B 4/4, C ("a b c a b d") 4/6: mean (0.5 + 1 + 2/3) / 3 = 13/18; across: 1.0."""
    samples = [["good fun", "good fun"], ["bad film", "dull plot"], ["a b c", "a b d"]]
    assert per_and_across_prompt(samples, 2) == pytest.approx((0.75, 1.0))
    assert per_and_across_prompt(samples, 1) == pytest.approx((13 / 18, 1.0))
    with pytest.raises(ValueError):
        per_and_across_prompt([["a b"], ["c d"]], 2)  # one sample per prompt has no per-prompt diversity


def test_diversity_samples_each_prompt_k_times_and_keeps_its_other_metrics() -> None:
    """A procedure that answers every prompt the same way: per prompt, K = 2 copies of one text ("p0 is fun" twice:
    2 unique bigrams / 4 = 0.5); across prompts, two prompts' texts share one bigram ("p0 is fun", "p1 is fun": p0 is,
    is fun, p1 is: 3 / 4 = 0.75). The pooled metrics are those of the shared samples, with or without the per-prompt
    samples."""
    calls: list[list[str]] = []

    def sampler(prompts, settings, device):
        calls.append(list(prompts))
        return [f"{p} is fun" for p in prompts], [3] * len(prompts)

    prompts = ["p0", "p1", "p2", "p3", "p4"]
    context = EvalContext(
        prompts=prompts,
        completions=["the movie was good .", "i liked it .", "the plot was dull .", "good .", "fun ."],
        completion_tokens=[5, 4, 5, 2, 2],
        policy=Policy(path=Path("unused"), reference_path=None, sampler=sampler),
        gold=None,
        device="cpu",
        generation={"seed": 0},
    )
    plain = DiversityEval().evaluate(context)
    metrics = DiversityEval(per_prompt={"prompts": 4, "samples": 2}).evaluate(context)
    assert calls == [["p0", "p0", "p1", "p1", "p2", "p2", "p3", "p3"]]
    assert metrics["per_prompt_distinct_2"] == pytest.approx(0.5)
    assert metrics["across_prompt_distinct_2"] == pytest.approx(0.75)
    assert {key: metrics[key] for key in plain} == plain


def test_kirk_smoke_job_evaluates_out_of_distribution(tmp_path: Path) -> None:
    """best-of-n (a procedure: both suites must draw through its sampler) on a smoke-size kirk task: eval/ood is
    reported, its gap is the in-distribution gold reward minus the OOD one, and the preference pairs the reward model
    was trained on hold no held-out opening."""
    from datasets import load_from_disk

    result = run_harness(
        "debug=smoke", "experiment=kirk", "algorithm=best_of_n", f"results_dir={tmp_path}", "cpu_threads=1"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (job,) = read_results(tmp_path)
    metrics = job["metrics"]
    assert metrics["eval/ood/prompts"] == 32  # the smoke task's num_ood_prompts
    assert 0 < metrics["eval/ood/reward"] < 1 and 0 <= metrics["eval/ood/grammatical"] <= 1
    assert metrics["eval/ood/reward_gap"] == pytest.approx(metrics["eval/gold/reward"] - metrics["eval/ood/reward"])
    for key in ("per_prompt_distinct_2", "across_prompt_distinct_2"):
        assert 0 < metrics[f"eval/diversity/{key}"] <= 1
    declared = {entry["key"] for entry in job["headline"]}
    assert {"eval/ood/reward", "eval/ood/reward_gap", "eval/diversity/per_prompt_distinct_2"} <= declared
    task = ReviewTask(ood="first_person")
    pairs = load_from_disk(job["stages"]["preferences"]["path"])["preferences"]
    assert len(pairs) > 0 and not any(task.is_ood(prompt) for prompt in pairs["prompt"])
