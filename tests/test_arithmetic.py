"""task=arithmetic, the reasoning testbed: its exact verifier and format reward worked by hand, the splits it writes
(correct demonstrations, held-out problems that appear nowhere else, chains that stay in range, a noisy corpus),
the chat form, verifier-labelled pairs, and a bad difficulty setting. No model: the checks are on text.

Every expected answer here is computed by `running_totals`, written apart from the task's own code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.errors import HarnessError
from plugins.tasks.arithmetic import Arithmetic

TASK_YAML = Path(__file__).resolve().parent.parent / "conf" / "task" / "arithmetic.yaml"
SMALL = {
    "num_pretrain": 300,
    "num_pretrain_heldout": 200,
    "num_sft": 64,
    "num_prompts": 64,
    "num_eval_prompts": 32,
    "num_hard_prompts": 32,
    "num_validation_prompts": 32,
}
HELD_OUT = ("eval_prompts", "hard_prompts", "validation_prompts")


def task_settings(**changes: Any) -> dict[str, Any]:
    """conf/task/arithmetic.yaml's settings as the task's constructor takes them, with small sizes and `changes`."""
    node = yaml.safe_load(TASK_YAML.read_text())
    for key in ("_target_", "smoke", "ranges"):
        node.pop(key)
    return {**node, **SMALL, **changes}


def running_totals(prompt: str) -> list[int]:
    """The true chain of `compute 14 + 7 - 9 :`: [14, 21, 12] (its last value is the answer)."""
    tokens = prompt.removeprefix("compute ").removesuffix(":").split()
    totals = [int(tokens[0])]
    for op, value in zip(tokens[1::2], tokens[2::2], strict=True):
        assert op in "+-", prompt
        totals.append(totals[-1] + int(value) if op == "+" else totals[-1] - int(value))
    return totals


def problem_of(text: str) -> str:
    """A pretraining text's problem: `compute 14 + 7 - 9 :` of `compute 14 + 7 - 9 : 14 + 7 = 21 , ...`."""
    return text[: text.index(":") + 1]


def build(tmp_path: Path, name: str, **changes: Any) -> tuple[Any, dict[str, Any]]:
    from datasets import load_from_disk

    out = tmp_path / name
    metrics = Arithmetic(**task_settings(**changes)).build_datasets(out)
    return load_from_disk(str(out)), metrics


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, dict[str, Any]]:
    """The splits (and the build's metrics) at the YAML's settings, small sizes."""
    return build(tmp_path_factory.mktemp("arithmetic"), "text")


# -- the verifier, the format reward, the final answer ------------------------------------------------------------
TASK = Arithmetic(**task_settings())
TWELVE = {"answer": 12}


@pytest.mark.parametrize(
    ("completion", "right"),
    [
        ("14 + 7 = 21 , 21 - 9 = 12 , answer 12", 1.0),
        ("14 + 7 = 21 , 21 - 9 = 11 , answer 11", 0.0),  # wrong
        ("answer 11 , answer 12", 1.0),  # the last answer counts
        ("answer 12 , answer 11", 0.0),
        ("14 + 7 = 21 , 21 - 9 = 12", 0.0),  # no answer line: the 12 in the working is not an answer
        ("", 0.0),
        ("answer 120", 0.0),  # a longer number is another number
        ("answer12", 0.0),  # `answer` and its number are apart
    ],
)
def test_the_verifier_reads_the_last_answer_exactly(completion: str, right: float) -> None:
    assert TASK.verify(TWELVE, completion) == right
    assert TASK.verify(TWELVE, [{"role": "assistant", "content": completion}]) == right  # a chat completion


def test_the_verifier_reads_negative_answers() -> None:
    assert TASK.verify({"answer": -3}, "2 - 5 = -3 , answer -3") == 1.0
    assert TASK.verify({"answer": -3}, "answer 3") == 0.0
    assert TASK.verify({"answer": 3}, "answer -3") == 0.0
    assert TASK.final_answer({"answer": -3}, "answer -3") == "-3"


def test_the_verifier_reads_a_whole_number_only() -> None:
    assert TASK.verify(TWELVE, "answer 12.5") == 0.0
    assert TASK.verify(TWELVE, "answer 12abc") == 0.0


@pytest.mark.parametrize(
    ("completion", "shaped"),
    [
        ("14 + 7 = 21 , 21 - 9 = 12 , answer 12", 1.0),
        ("14 + 7 = 21 , 21 - 9 = 11 , answer 11", 1.0),  # shape, not correctness
        ("answer 12", 1.0),
        (" 14 + 7 = 21 , answer 21 \n", 1.0),  # surrounding whitespace is no text
        ("14 + 7 = 21 , answer 21 , answer 12", 0.0),  # two answer lines
        ("14 + 7 = 21 , answer 21 and then some", 0.0),  # text after the answer
        ("answer 12 .", 0.0),
        ("14 + 7 = 21 , 21 - 9 = 12", 0.0),  # no answer line
        ("the answer 12", 0.0),  # an answer line starts the completion or follows a comma
        ("", 0.0),
    ],
)
def test_the_format_reward_wants_one_final_answer_line(completion: str, shaped: float) -> None:
    assert TASK.format_reward(TWELVE, completion) == shaped
    assert TASK.format_reward(TWELVE, [{"role": "assistant", "content": completion}]) == shaped


def test_final_answer_is_the_last_number_given_as_text() -> None:
    assert TASK.final_answer(TWELVE, "answer 11 , answer 12") == "12"
    assert TASK.final_answer(TWELVE, "14 + 7 = 21") is None
    assert TASK.final_answer(TWELVE, [{"role": "assistant", "content": "answer 7"}]) == "7"


# -- the splits ---------------------------------------------------------------------------------------------------
def test_every_demonstration_is_a_correct_well_formed_worked_solution(built) -> None:
    """Each step `a op b = c` is right and continues from the step before; the answer line verifies and has
    format 1; the completion continues the prompt after a space (the pretraining corpus's form)."""
    splits, _ = built
    assert len(splits["sft"]) == SMALL["num_sft"]
    for row in splits["sft"]:
        totals, completion = running_totals(row["prompt"]), row["completion"]
        assert completion.startswith(" ")
        steps, operations = completion.strip().split(" , "), row["prompt"].split()[2:-1]  # ["+", "7", "-", "9"]
        assert steps[-1] == f"answer {totals[-1]}" and len(steps) - 1 == len(operations) // 2, completion
        for number, step in enumerate(steps[:-1], start=1):
            expected = [str(totals[number - 1]), *operations[2 * number - 2 : 2 * number], "=", str(totals[number])]
            assert step.split() == expected, completion
        problem = {"answer": totals[-1]}
        assert TASK.verify(problem, completion) == 1.0
        assert TASK.format_reward(problem, completion) == 1.0


def test_held_out_problems_appear_in_no_other_split_nor_in_pretraining(built) -> None:
    splits, _ = built
    problems = {name: set(splits[name]["prompt"]) for name in (*HELD_OUT, "prompts", "sft")}
    for name in HELD_OUT:
        assert len(problems[name]) == len(splits[name]) == SMALL[f"num_{name}"]  # no problem twice in a split
    pretrain = {problem_of(text) for split in ("pretrain", "pretrain_heldout") for text in splits[split]["text"]}
    for name in HELD_OUT:
        others = set().union(*(p for other, p in problems.items() if other != name))
        assert not problems[name] & others, name
        assert not problems[name] & pretrain, name


def test_difficulty_answers_and_range_of_every_problem(built) -> None:
    """Test problems take `steps` operations, hard ones `hard_steps`; the recorded answer is the chain's end; every
    running value of the true chain stays in [0, max_value]."""
    splits, _ = built
    settings = task_settings()
    lengths = {"eval_prompts": set(settings["steps"]), "validation_prompts": set(settings["steps"]),
               "prompts": set(settings["steps"]), "hard_prompts": {settings["hard_steps"]}}  # fmt: skip
    for name, allowed in lengths.items():
        for row in splits[name]:
            totals = running_totals(row["prompt"])
            assert len(totals) - 1 == row["steps"] and row["steps"] in allowed, (name, row)
            assert totals[-1] == row["answer"], row
            assert all(0 <= value <= settings["max_value"] for value in totals), row
            operands = [int(v) for v in row["prompt"].split()[1::2]]
            assert all(1 <= v <= settings["max_operand"] for v in operands), row


def test_the_pretraining_corpus_is_noisy_and_clean_without_noise(built, tmp_path: Path) -> None:
    """At p_step_error 0.3 and p_no_answer 0.1 a share of the corpus is right, not all of it (chains of s steps are
    all right with probability 0.7^s, and 1 in 10 has no answer); at 0 and 0 every corpus text is right, and every
    step of it holds."""
    _, metrics = built
    assert 0.0 < metrics["pretrain_correct"] < 1.0
    splits, clean = build(tmp_path, "clean", p_step_error=0.0, p_no_answer=0.0)
    assert clean["pretrain_correct"] == 1.0
    for text in splits["pretrain_heldout"]["text"][:50]:
        problem, solution = problem_of(text), text[len(problem_of(text)) :]
        assert TASK.verify({"answer": running_totals(problem)[-1]}, solution) == 1.0, text
        assert TASK.format_reward({}, solution) == 1.0, text
    steps = {len(running_totals(problem_of(text))) - 1 for text in splits["pretrain"]["text"]}
    assert steps == set(range(1, task_settings()["max_steps"] + 1))  # chains of 1 to max_steps


def test_chat_form_has_the_same_problems_as_conversations(built, tmp_path: Path) -> None:
    splits, _ = built
    chat, _ = build(tmp_path, "chat", chat=True, system_prompt="Show your working.")
    for name in (*HELD_OUT, "prompts", "sft"):
        prompts = chat[name]["prompt"]
        assert all([m["role"] for m in prompt] == ["system", "user"] for prompt in prompts), name
        assert all(prompt[0]["content"] == "Show your working." for prompt in prompts), name
        assert [prompt[1]["content"] for prompt in prompts] == splits[name]["prompt"], name
    for text_row, chat_row in zip(splits["sft"], chat["sft"], strict=True):
        assert chat_row["completion"] == [{"role": "assistant", "content": text_row["completion"].strip()}]
    assert chat["pretrain"]["text"] == splits["pretrain"]["text"]  # the base model's corpus is text either way


# -- verifier-labelled pairs --------------------------------------------------------------------------------------
RIGHT, WRONG = "2 + 3 = 5 , answer 5", "2 + 3 = 6 , answer 6"


@pytest.mark.parametrize("chat", [False, True])
def test_label_pairs_choose_the_right_over_the_wrong_and_drop_the_rest(chat: bool) -> None:
    """Four samples pairs of `compute 2 + 3 :` (answer 5): right/wrong and wrong/right -> the right one chosen both
    times; right/right and wrong/wrong say nothing -> dropped. pairs_kept 2/4, both_right 1/4, both_wrong 1/4."""
    task = Arithmetic(**task_settings(chat=chat, system_prompt="Be exact." if chat else None))
    prompt = task._form("compute 2 + 3 :")
    first, second = [RIGHT, WRONG, RIGHT, WRONG], [WRONG, RIGHT, RIGHT, WRONG]
    rows, info = task.label_pairs([prompt] * 4, first, second)
    assert info == {"pairs_kept": 0.5, "both_right": 0.25, "both_wrong": 0.25}
    reply = (lambda text: [{"role": "assistant", "content": text}]) if chat else (lambda text: " " + text)
    assert rows == [{"prompt": prompt, "chosen": reply(RIGHT), "rejected": reply(WRONG)}] * 2
    if chat:
        assert prompt[0] == {"role": "system", "content": "Be exact."}


# -- a bad setting ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("task.steps=[6]", "task.steps=[6]"),
        ("task.hard_steps=6", "task.hard_steps=6"),
        ("task.steps=[]", "task.steps=[]"),
    ],
)
def test_a_chain_longer_than_pretraining_is_one_line(compose, override: str, named: str) -> None:
    """As the CLI builds the task (its `smoke:` block settled, then Hydra's instantiate): one line naming the value
    and task.max_steps."""
    from harness.app import apply_smoke
    from harness.declarations import build_plugin

    cfg = compose(["task=arithmetic", override])
    apply_smoke(cfg)
    with pytest.raises(HarnessError) as error:
        build_plugin(cfg.task)
    message = str(error.value)
    assert "\n" not in message and named in message and "task.max_steps=5" in message, message


def test_settings_that_cannot_be_met_are_one_line_errors(tmp_path: Path) -> None:
    """Fewer distinct problems exist than a split asks for, or no first operand fits under max_value: one line each,
    never a loop without end or an IndexError from inside the draw."""
    with pytest.raises(HarnessError, match=r"task.num_eval_prompts=16: only \d+ distinct problems") as error:
        Arithmetic(steps=[1], hard_steps=1, max_operand=2, num_eval_prompts=16).build_datasets(tmp_path / "d")
    assert "\n" not in str(error.value)
    with pytest.raises(HarnessError, match=r"task.max_operand=9 > task.max_value=3"):
        Arithmetic(max_value=3, max_operand=9)
