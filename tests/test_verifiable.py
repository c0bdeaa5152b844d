"""The core's side of verifiable tasks (harness/verifiable.py): a plugin that gives only problems and verify() gets
its datasets written, and the Verifier finds each rendered prompt's problem, refusing what it cannot check in one
line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset, load_from_disk

from harness.errors import HarnessError
from harness.verifiable import ProblemSet, Verifier, is_problem_set, problem_table


class Echo:
    """Only problems and a check: answer with the number in the prompt."""

    name = "echo"

    def problems(self, split: str) -> list[dict[str, Any]]:
        if split.startswith("pretrain"):
            return [{"text": f"say {i} : {i}"} for i in range(4)]
        if split == "sft":
            return [{"prompt": "say 7 :", "completion": " 7"}]
        return [{"prompt": f"say {i} :", "answer": i} for i in range(3)] if split == "eval_prompts" else []

    def verify(self, problem: dict[str, Any], completion: str) -> float:
        return float(completion.strip() == str(problem["answer"]))


def test_a_problem_set_becomes_a_task(tmp_path: Path) -> None:
    assert is_problem_set(Echo())
    task = ProblemSet(Echo())
    assert task.name == "echo" and task.gold() is None
    metrics = task.build_datasets(tmp_path / "data")
    splits = load_from_disk(str(tmp_path / "data"))
    assert sorted(splits) == ["eval_prompts", "pretrain", "pretrain_heldout", "sft"]  # empty splits are left out
    assert metrics["size_eval_prompts"] == 3 and splits["eval_prompts"][2] == {"prompt": "say 2 :", "answer": 2}


def test_a_problem_set_without_test_problems_or_prompts_is_refused(tmp_path: Path) -> None:
    class NoTest(Echo):
        def problems(self, split: str) -> list[dict[str, Any]]:
            return [] if split == "eval_prompts" else super().problems(split)

    with pytest.raises(HarnessError, match=r"problems\('eval_prompts'\) gave no problems"):
        ProblemSet(NoTest()).build_datasets(tmp_path / "a")

    class NoPrompt(Echo):
        def problems(self, split: str) -> list[dict[str, Any]]:
            return [{"question": "say 1"}] if split == "eval_prompts" else []

    with pytest.raises(HarnessError, match=r"its 'eval_prompts' problems has no 'prompt'.*got keys \['question'\]"):
        ProblemSet(NoPrompt()).build_datasets(tmp_path / "b")


def test_the_verifier_checks_rendered_prompts_against_their_problems() -> None:
    splits = {
        "sft": Dataset.from_list([{"prompt": "say 1 :", "completion": " 1"}]),  # no answer: never the problem row
        "eval_prompts": Dataset.from_list([{"prompt": "say 1 :", "answer": 1}, {"prompt": "say 2 :", "answer": 2}]),
    }
    table = problem_table(splits, render=lambda prompt: f"<user>{prompt}")
    assert table["<user>say 1 :"]["answer"] == 1  # the prompt split's row wins over the demonstration's
    verifier = Verifier(Echo(), table)
    assert verifier.verify(["<user>say 1 :", "<user>say 2 :"], ["1", "1"]) == [1.0, 0.0]
    assert verifier.format(["<user>say 1 :"], ["1"]) is None and verifier.answers(["<user>say 1 :"], ["1"]) is None
    with pytest.raises(HarnessError, match=r"prompt 'say 3 :' is not one of the problems of task 'echo'"):
        verifier.verify(["say 3 :"], ["3"])


def test_what_cannot_be_checked_is_refused_in_one_line() -> None:
    class Generous(Echo):
        def verify(self, problem: dict[str, Any], completion: str) -> float:
            return 2.0

    table = {"p": {"prompt": "p", "answer": 1}}
    with pytest.raises(HarnessError, match=r"verify returned 2.0; expected a value in \[0, 1\]"):
        Verifier(Generous(), table).verify(["p"], ["1"])

    class Unverifiable:
        name = "testbed"

    with pytest.raises(HarnessError, match=r"task 'testbed' has no verify\(problem, completion\)") as error:
        Verifier(Unverifiable(), table)
    assert "\n" not in str(error.value)
