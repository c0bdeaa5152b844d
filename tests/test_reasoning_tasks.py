"""task=gsm8k and task=math: small local copies written in the datasets' real schemas (GSM8K's question / answer with
`#### 1,000`; MATH's problem / solution / level / type; MATH-500's problem / solution / answer / subject / level),
read through the task configs as the CLI composes them, rendered with a chat model's template, and checked: equal
answers in any spelling score 1, wrong or missing ones 0, from any thread."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
from harness.runner import build_plugin
from plugins.tasks import math_answers


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub, and the datasets cache of local files kept inside the test's own folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.fixture
def task(compose) -> Callable[..., Any]:
    """`task(name, *overrides)` -> the task plugin `harness task=<name> <overrides>` builds."""
    from harness.app import apply_smoke

    def make(name: str, *overrides: str) -> Any:
        cfg = compose([f"task={name}", *overrides])
        apply_smoke(cfg)
        return build_plugin(cfg.task)

    return make


@pytest.fixture
def build(task, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`build(name, *overrides)` -> the splits the task writes."""
    from datasets import load_from_disk

    def run(name: str, *overrides: str) -> Any:
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        out.mkdir()
        metrics = task(name, *overrides).build_datasets(out)
        splits = load_from_disk(str(out))
        splits.metrics = metrics
        return splits

    yield run


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def gsm8k_rows(n: int, start: int = 0) -> list[dict[str, str]]:
    """openai/gsm8k: the worked solution, with calculator annotations, ends in `#### <number>` (commas allowed)."""
    return [
        {
            "question": f"Ann has {i} boxes of 250 pens and buys 1,000 more pens. How many pens does she have?",
            "answer": f"The boxes hold {i}*250 = <<{i}*250={i * 250}>>{i * 250} pens.\n"
            f"She has {i * 250}+1000 = <<{i * 250}+1000={i * 250 + 1000}>>{i * 250 + 1000} pens.\n"
            f"#### {i * 250 + 1000:,}",
        }
        for i in range(start, start + n)
    ]


def math_rows(n: int) -> list[dict[str, str]]:
    """DigitalLearningGmbH/MATH-lighteval (MATH's own columns): no answer column, `Level k`, `type`."""
    return [
        {
            "problem": f"What is $\\frac{{{i}}}{{{2 * i}}}$ of {i + 1}?",
            "level": f"Level {i % 5 + 1}",
            "type": "Prealgebra",
            "solution": f"It is $\\frac{{1}}{{2}} \\cdot {i + 1} = \\boxed{{\\frac{{{i + 1}}}{{2}}}}$.",
        }
        for i in range(1, n + 1)
    ]


def math500_rows(n: int) -> list[dict[str, Any]]:
    """HuggingFaceH4/MATH-500: an `answer` column, `subject`, `level` as a number, `unique_id`."""
    return [
        {
            "problem": f"Simplify $\\sqrt{{{4 * k * k}}}$.",
            "solution": f"$\\sqrt{{{4 * k * k}}} = \\boxed{{{2 * k}}}$.",
            "answer": str(2 * k),
            "subject": "Algebra",
            "level": 2,
            "unique_id": f"test/algebra/{k}.json",
        }
        for k in range(1, n + 1)
    ]


def user_text(prompt: list[dict[str, str]]) -> str:
    assert [m["role"] for m in prompt] == ["user"], prompt
    return prompt[0]["content"]


def questions(split: Any) -> set[str]:
    return {user_text(p).split("\n")[0] for p in split["prompt"]}


# ------------------------------------------------------------------------------------------------ loading
def test_gsm8k_from_train_and_test_files(build, tmp_path: Path) -> None:
    """30 training problems (3 held out for validation, 10%), 8 test problems; answers are the numbers after
    `####` without commas; SFT replies are the solutions without calculator notes."""
    train = write_jsonl(tmp_path / "train.jsonl", gsm8k_rows(30))
    test = write_jsonl(tmp_path / "test.jsonl", gsm8k_rows(8, start=100))
    splits = build("gsm8k", f"task.path={train}", f"task.eval_path={test}")
    assert {name: len(split) for name, split in splits.items()} == {
        "prompts": 27, "validation_prompts": 3, "eval_prompts": 8, "sft": 27, "pretrain": 27, "pretrain_heldout": 8,
    }  # fmt: skip
    assert splits["prompts"].column_names == ["prompt", "answer"]
    row = splits["eval_prompts"][0]
    question = user_text(row["prompt"])
    assert question.startswith("Ann has 100 boxes") and question.endswith("in the form '#### <number>'.")
    assert row["answer"] == "26000"  # `#### 26,000`
    assert set(splits["prompts"]["answer"]) <= {str(i * 250 + 1000) for i in range(30)}
    one = splits["sft"][0]
    reply = one["completion"][0]["content"]
    assert one["completion"][0]["role"] == "assistant" and "<<" not in reply
    assert reply.splitlines()[-1].startswith("#### ") and "*250 = " in reply
    trained = questions(splits["prompts"])
    assert not trained & questions(splits["eval_prompts"]) and not trained & questions(splits["validation_prompts"])
    assert splits.metrics["training_rows_also_in_eval"] == 0


def test_gsm8k_from_a_clone_of_the_hub_repository(build, tmp_path: Path) -> None:
    """openai/gsm8k's layout: main/{train,test}-*.parquet named by its README's configs; a training problem that is
    also a test problem is dropped from training."""
    import pandas

    clone = tmp_path / "gsm8k"
    (clone / "main").mkdir(parents=True)
    (clone / "README.md").write_text(
        textwrap.dedent("""\
        ---
        configs:
        - config_name: main
          data_files:
          - split: train
            path: main/train-*
          - split: test
            path: main/test-*
        ---
        """)
    )
    pandas.DataFrame(gsm8k_rows(20)).to_parquet(clone / "main" / "train-00000-of-00001.parquet")
    pandas.DataFrame(gsm8k_rows(5, start=18)).to_parquet(clone / "main" / "test-00000-of-00001.parquet")
    splits = build("gsm8k", f"task.path={clone}")
    assert len(splits["eval_prompts"]) == 5 and splits.metrics["training_rows_also_in_eval"] == 2
    assert len(splits["prompts"]) + len(splits["validation_prompts"]) == 18


def test_math_trains_on_math_and_tests_on_math500(build, tmp_path: Path) -> None:
    """MATH's answer is its solution's last \\boxed{} (braces nested); MATH-500's is its answer column; levels are
    numbers, MATH's `type` is the subject."""
    train = write_jsonl(tmp_path / "math_train.jsonl", math_rows(20))
    test = write_jsonl(tmp_path / "math500.jsonl", math500_rows(6))
    splits = build("math", f"task.path={train}", f"task.eval_path={test}", "task.system_prompt=Think first.")
    assert splits["eval_prompts"].column_names == ["prompt", "answer", "level", "subject"]
    assert (len(splits["prompts"]), len(splits["validation_prompts"]), len(splits["eval_prompts"])) == (18, 2, 6)
    row = splits["eval_prompts"][2]
    assert row["prompt"][0] == {"role": "system", "content": "Think first."}
    assert row["prompt"][1]["content"] == (
        "Simplify $\\sqrt{36}$.\nPlease reason step by step, and put your final answer within \\boxed{}."
    )
    assert (row["answer"], row["level"], row["subject"]) == ("6", "2", "Algebra")
    trained = {row["answer"]: row for row in splits["prompts"]}
    assert set(trained) <= {f"\\frac{{{i + 1}}}{{2}}" for i in range(1, 21)}
    assert {row["subject"] for row in trained.values()} == {"Prealgebra"}
    assert {row["level"] for row in trained.values()} <= set("12345")
    reply = splits["sft"][0]["completion"][0]["content"]
    assert reply.startswith("It is $\\frac{1}{2}") and reply.endswith("}$.")


def test_one_file_holds_its_own_test_problems_out_with_eval_split_null(build, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "gsm8k.jsonl", gsm8k_rows(40))
    splits = build("gsm8k", f"task.path={path}", "task.eval_split=null", "task.eval_fraction=0.1")
    sizes = [len(splits[s]) for s in ("prompts", "validation_prompts", "eval_prompts")]
    assert sizes == [32, 4, 4]
    assert not questions(splits["prompts"]) & questions(splits["eval_prompts"])


def test_the_test_files_version_is_in_the_data_stage_key(task, tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", gsm8k_rows(5))
    test = write_jsonl(tmp_path / "test.jsonl", gsm8k_rows(2, start=9))
    before = task("gsm8k", f"task.path={train}", f"task.eval_path={test}").fingerprint()
    write_jsonl(test, gsm8k_rows(3, start=9))
    after = task("gsm8k", f"task.path={train}", f"task.eval_path={test}").fingerprint()
    assert before["train"] == after["train"] and before["eval"] != after["eval"]
    assert task("gsm8k").fingerprint() is None and task("math").fingerprint() is None  # Hub names: the config is key


# ------------------------------------------------------------------------------------------------ checking
HALF = "\\frac{1}{2}"
MATH_CASES = [
    # (completion, verify, format_reward, final_answer)
    ("So $x = \\boxed{\\frac{1}{2}}$.", 1.0, 1.0, "1/2"),
    ("The answer is $\\boxed{0.5}$", 1.0, 1.0, "1/2"),
    ("\\boxed{1/2}", 1.0, 1.0, "1/2"),
    ("\\boxed{\\dfrac12}", 1.0, 1.0, "1/2"),
    ("\\boxed{0.6}", 0.0, 1.0, "3/5"),
    ("First 0.5, but no: \\boxed{0.6}", 0.0, 1.0, "3/5"),  # the boxed answer is the answer, not a number on the way
    ("The final answer is $\\frac{1}{2}$.", 1.0, 0.0, "1/2"),  # right, but not in the form asked for
    ("I do not know.", 0.0, 0.0, None),
]


@pytest.mark.parametrize(("completion", "right", "shaped", "answer"), MATH_CASES)
def test_math_answers_equal_in_any_spelling(task, completion: str, right: float, shaped: float, answer: str) -> None:
    math = task("math")
    problem = {"prompt": [], "answer": HALF}
    assert math.verify(problem, completion) == right
    assert math.format_reward(problem, completion) == shaped
    assert math.final_answer(problem, completion) == answer


def test_math_references_math_verify_reads_and_one_it_cannot(task) -> None:
    math = task("math")
    assert math.verify({"answer": "2\\sqrt{2}"}, "so $\\boxed{\\sqrt{8}}$") == 1.0
    assert math.verify({"answer": "\\text{(C)}"}, "\\boxed{\\text{(C)}}") == 1.0
    assert math.verify({"answer": "\\text{(C)}"}, "\\boxed{\\text{(D)}}") == 0.0


GSM8K_CASES = [
    ("She has 26000 pens.\n#### 26,000", 1.0, 1.0, "26000"),
    ("#### 26000", 1.0, 1.0, "26000"),
    ("#### $26,000.00", 1.0, 1.0, "26000"),
    ("The answer is \\boxed{26000}.", 1.0, 0.0, "26000"),  # verify accepts a \boxed{}; the form asked is ####
    ("5 boxes, so 26,000 pens.", 1.0, 0.0, "26000"),  # else the last number
    ("#### 25,999", 0.0, 1.0, "25999"),
    ("She has 26000 pens.\n#### 2600", 0.0, 1.0, "2600"),  # the answer line decides, not the text before it
    ("Many pens.", 0.0, 0.0, None),
]


@pytest.mark.parametrize(("completion", "right", "shaped", "answer"), GSM8K_CASES)
def test_gsm8k_numbers_after_hashes(task, completion: str, right: float, shaped: float, answer: str) -> None:
    gsm8k = task("gsm8k")
    problem = {"prompt": [], "answer": "26000"}
    assert gsm8k.verify(problem, completion) == right
    assert gsm8k.format_reward(problem, completion) == shaped
    assert gsm8k.final_answer(problem, completion) == answer


def test_gsm8k_asked_for_a_boxed_answer(task, tmp_path: Path) -> None:
    gsm8k = task("gsm8k", "task.answer_form=boxed")
    problem = {"answer": "1000"}
    assert gsm8k.format_reward(problem, "\\boxed{1,000}") == 1.0 and gsm8k.verify(problem, "\\boxed{1,000}") == 1.0
    assert gsm8k.format_reward(problem, "#### 1000") == 0.0 and gsm8k.verify(problem, "#### 1000") == 1.0
    reply = gsm8k.demonstration({"solution": gsm8k_rows(1)[0]["answer"], "answer": "1000"})
    assert reply.endswith("\nThe final answer is $\\boxed{1000}$.") and "####" not in reply
    assert "within \\boxed{}" in user_text(gsm8k.messages("How many?"))


def test_answers_are_checked_off_the_main_thread(task) -> None:
    """math-verify's time limit is SIGALRM, which only the main thread may set: TRL's reward workers and thread
    pools check without it instead of failing (math-verify raises ValueError there when asked for a limit)."""
    math, gsm8k = task("math"), task("gsm8k")
    completions = [case[0] for case in MATH_CASES]

    def check(completion: str) -> tuple[float, str | None, int | None]:
        problem = {"answer": HALF}
        return math.verify(problem, completion), math.final_answer(problem, completion), math_answers.timeout()

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(check, completions))
    assert [(right, answer) for right, answer, _ in threaded] == [(case[1], case[3]) for case in MATH_CASES]
    assert {limit for _, _, limit in threaded} == {None} and math_answers.timeout() == math_answers.TIMEOUT_SECONDS
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(lambda c: gsm8k.verify({"answer": "26000"}, c), ["#### 26,000", "\\boxed{7}"])) == [1, 0]


# ------------------------------------------------------------------------------------------------ a run
def test_rendered_prompts_are_verified_through_the_run(compose, tmp_path: Path) -> None:
    """The data stage of a job with a chat model: its prompts rendered by the model's template, each found again by
    Run.verifier() with its reference answer; reward=verifier scores them, its format weight on top."""
    from chat_models import conversations, make_llama_chat

    from harness.app import apply_smoke
    from harness.runner import Run
    from plugins.rewards.verifier import VerifierReward

    model = make_llama_chat(tmp_path / "model", conversations(40), steps=0)
    train = write_jsonl(tmp_path / "train.jsonl", math_rows(12))
    test = write_jsonl(tmp_path / "test.jsonl", math500_rows(4))
    cfg = compose(
        ["task=math", f"task.path={train}", f"task.eval_path={test}", "model=hf", f"model.name_or_path={model}",
         f"cache_dir={tmp_path / 'cache'}", "logger=none", "device=cpu"]
    )  # fmt: skip
    apply_smoke(cfg)  # as the CLI does: without debug=smoke, it drops the `smoke:` blocks
    run = Run(cfg, tmp_path / "job", logger=None)
    evaluation = run.load_split("eval_prompts")
    prompts = list(evaluation["prompt"])
    assert all(p.startswith("<|im_start|>user\nSimplify") and p.endswith("<|im_end|>\n<|im_start|>assistant\n")
               for p in prompts)  # fmt: skip
    answers = [f"{2 * k}" for k in range(1, 5)]
    verifier = run.verifier()
    right = [f"The root is $\\boxed{{{answer}}}$." for answer in answers]
    assert verifier.verify(prompts, right) == [1.0] * 4
    assert verifier.verify(prompts, right[1:] + right[:1]) == [0.0] * 4  # each checked against its own problem
    assert verifier.format(prompts, ["\\boxed{2}", "2", "no", "\\boxed{}"]) == [1.0, 0.0, 0.0, 0.0]
    assert verifier.answers(prompts, [f"${a}$" for a in answers]) == answers
    training = list(run.load_split("prompts")["prompt"])
    assert verifier.verify(training[:1], ["\\boxed{0}"]) == [0.0]  # training prompts are problems too
    reward = VerifierReward(format_weight=0.5).load(run)
    assert reward.fn(prompts[:3], [right[0], "$4$", "nothing"]) == [1.5, 1.0, 0.0]


# ------------------------------------------------------------------------------------------------ bad input
def files(folder: Path, train: list[dict[str, Any]], test: list[dict[str, Any]] | None = None) -> list[str]:
    """Overrides reading `train` (and `test`, else holding training problems out) from files in `folder`."""
    overrides = [f"task.path={write_jsonl(folder / 'train.jsonl', train)}"]
    if test is None:
        return [*overrides, "task.eval_split=null"]
    return [*overrides, f"task.eval_path={write_jsonl(folder / 'test.jsonl', test)}"]


BAD: dict[str, tuple[str, Callable[[Path], list[str]], list[str]]] = {
    # case: (task, write the files -> overrides, what the one-line message must say)
    "gsm8k without its answer column": (
        "gsm8k",
        lambda d: files(d, [{"question": "q", "solution": "#### 1"}] * 3),
        ["train.jsonl", "column 'answer' is missing", "['question', 'solution']", "task.columns.solution=<name>"],
    ),
    "math test file without its problem column": (
        "math",
        lambda d: files(d, math_rows(5), [{"question": "q", "solution": "s"}]),
        ["task.eval_path=", "test.jsonl", "column 'problem' is missing", "task.columns.prompt=<name>"],
    ),
    "gsm8k solution without its answer line": (
        "gsm8k",
        lambda d: files(d, [*gsm8k_rows(3), {"question": "q", "answer": "It is 4."}]),
        ["row 3, column 'answer' does not end in '#### <number>'", "'It is 4.'"],
    ),
    "math solution without a boxed answer": (
        "math",
        lambda d: files(d, [*math_rows(2), {**math_rows(1)[0], "solution": "x"}]),
        ["row 2, column 'solution' has no \\boxed{} answer", "task.columns.answer=<name>"],
    ),
    "one file and a test split": (
        "gsm8k",
        lambda d: files(d, gsm8k_rows(3))[:1],
        ["is one file, so one split", "task.eval_path=<file>", "task.eval_split=null"],
    ),
    "a test split the directory lacks": (
        "gsm8k",
        lambda d: [*files(d, gsm8k_rows(3))[:1], f"task.eval_path={d}", "task.eval_split=validation"],
        ["task.eval_split='validation'"],
    ),
    "an answer form": ("gsm8k", lambda d: ["task.path=x.jsonl", "task.answer_form=latex"], ["answer_form='latex'"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_naming_it(task, tmp_path: Path, case: str) -> None:
    name, write, expected = BAD[case]
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(HarnessError) as error:
        task(name, *write(data)).build_datasets(tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message and message.strip() == message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
