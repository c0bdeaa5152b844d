"""`task=hf_preferences`: local files of every supported form become the harness's splits; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.chat import render_plain
from harness.errors import HarnessError
from harness.runner import build_plugin
from plugins.tasks.hf_preferences import HFPreferences

REPO = Path(__file__).resolve().parent.parent
HARNESS = Path(sys.executable).parent / "harness"
SPLITS = {"preferences", "sft", "prompts", "eval_prompts", "pretrain", "pretrain_heldout"}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub, and the datasets cache of local files kept inside the test's own folder."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


def pairs(n: int) -> list[dict[str, str]]:
    return [
        {"prompt": f"question {i} is", "chosen": f"good answer {i}", "rejected": f"bad answer {i}"} for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def build(tmp_path: Path, path: Path | str, **settings: Any) -> tuple[dict[str, Any], Any]:
    """The task's splits; without a judge or a validation split unless `judge_fraction` or `validation_fraction`
    is given (each has tests of its own, and the sizes the other tests check are those of training and
    evaluation)."""
    from datasets import load_from_disk

    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    out.mkdir()
    settings = {"judge_fraction": 0, "validation_fraction": 0, **settings}
    metrics = HFPreferences(path=str(path), **settings).build_datasets(out)
    return metrics, load_from_disk(str(out))


def row_for(split: Any, prompt: str) -> dict[str, str]:
    return next(row for row in split if row["prompt"] == prompt)


def assert_twenty_pairs_split(metrics: dict[str, Any], splits: Any) -> None:
    """20 distinct prompts, eval_fraction 0.1: 2 held out, 18 to train on; pretraining sees both completions."""
    assert set(splits) == SPLITS
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {
        "preferences": 18,
        "sft": 18,
        "prompts": 18,
        "eval_prompts": 2,
        "pretrain": 36,
        "pretrain_heldout": 4,
    }
    assert metrics["rows"] == 20 and metrics["size_eval_prompts"] == 2 and metrics["size_pretrain"] == 36
    assert splits["preferences"].column_names == ["prompt", "chosen", "rejected"]
    assert splits["sft"].column_names == ["prompt", "completion"]
    assert splits["pretrain"].column_names == ["text"]
    held_out = set(splits["eval_prompts"]["prompt"])
    assert not held_out & set(splits["prompts"]["prompt"])
    assert held_out | set(splits["prompts"]["prompt"]) == {f"question {i} is" for i in range(20)}
    train_prompt = splits["prompts"][0]["prompt"]
    i = train_prompt.split()[1]
    assert row_for(splits["preferences"], train_prompt) == {
        "prompt": f"question {i} is",
        "chosen": f" good answer {i}",
        "rejected": f" bad answer {i}",
    }
    assert row_for(splits["sft"], train_prompt)["completion"] == f" good answer {i}"
    assert f"question {i} is good answer {i}" in splits["pretrain"]["text"]
    assert f"question {i} is bad answer {i}" in splits["pretrain"]["text"]
    held = splits["eval_prompts"][0]["prompt"]
    j = held.split()[1]
    assert f"question {j} is good answer {j}" in splits["pretrain_heldout"]["text"]


# ------------------------------------------------------------------------------------------- file formats
def test_jsonl_file_becomes_every_split(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "prefs.jsonl", pairs(20))
    metrics, splits = build(tmp_path, path, eval_fraction=0.1)
    assert_twenty_pairs_split(metrics, splits)


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps(pairs(20)))
    assert_twenty_pairs_split(*build(tmp_path, path, eval_fraction=0.1))


def test_csv_file(tmp_path: Path) -> None:
    import pandas

    path = tmp_path / "prefs.csv"
    pandas.DataFrame(pairs(20)).to_csv(path, index=False)
    assert_twenty_pairs_split(*build(tmp_path, path, eval_fraction=0.1))


def test_parquet_file(tmp_path: Path) -> None:
    import pandas

    path = tmp_path / "prefs.parquet"
    pandas.DataFrame(pairs(20)).to_parquet(path)
    assert_twenty_pairs_split(*build(tmp_path, path, eval_fraction=0.1))


def test_saved_dataset_directory_and_its_split(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(pairs(20)), "test": Dataset.from_list(pairs(3))}).save_to_disk(
        str(tmp_path / "saved")
    )
    assert_twenty_pairs_split(*build(tmp_path, tmp_path / "saved", eval_fraction=0.1))
    _, splits = build(tmp_path, tmp_path / "saved", split="test")
    assert len(splits["preferences"]) + len(splits["eval_prompts"]) == 3


def test_directory_of_data_files(tmp_path: Path) -> None:
    (tmp_path / "repo").mkdir()
    write_jsonl(tmp_path / "repo" / "train.jsonl", pairs(20))
    assert_twenty_pairs_split(*build(tmp_path, tmp_path / "repo", eval_fraction=0.1))


def test_columns_are_remapped(tmp_path: Path) -> None:
    rows = [{"question": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "id": 7} for r in pairs(20)]
    path = write_jsonl(tmp_path / "renamed.jsonl", rows)
    columns = {"prompt": "question", "chosen": "good", "rejected": "bad"}
    assert_twenty_pairs_split(*build(tmp_path, path, columns=columns, eval_fraction=0.1))


def test_completion_gets_a_space_only_where_the_words_would_fuse(tmp_path: Path) -> None:
    rows = [
        {"prompt": "Q: two plus two?\nA:", "chosen": "four", "rejected": "five"},
        {"prompt": "Q: the sky is\nA: ", "chosen": "blue", "rejected": "green"},
        {"prompt": "Q: one plus one?\nA:", "chosen": " two", "rejected": "\nthree"},
    ]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "p.jsonl", rows), eval_fraction=0.01, seed=0)
    every = {r["prompt"]: r for r in splits["preferences"]}
    expected = {
        "Q: two plus two?\nA:": (" four", " five"),
        "Q: the sky is\nA: ": ("blue", "green"),
        "Q: one plus one?\nA:": (" two", "\nthree"),
    }
    for prompt, row in every.items():
        assert (row["chosen"], row["rejected"]) == expected[prompt]
    assert len(every) == 2


def test_max_examples_keeps_the_first_rows(tmp_path: Path) -> None:
    metrics, splits = build(tmp_path, write_jsonl(tmp_path / "p.jsonl", pairs(50)), max_examples=20, eval_fraction=0.1)
    assert_twenty_pairs_split(metrics, splits)


def test_rows_sharing_a_prompt_stay_on_one_side(tmp_path: Path) -> None:
    rows = [{**row, "prompt": f"question {i % 10} is"} for i, row in enumerate(pairs(40))]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "p.jsonl", rows), eval_fraction=0.2)
    assert len(splits["eval_prompts"]) == 2 and len(splits["prompts"]) == 8
    assert len(splits["preferences"]) == 32 and len(splits["pretrain_heldout"]) == 16
    assert not set(splits["eval_prompts"]["prompt"]) & set(splits["preferences"]["prompt"])


# -------------------------------------------------------------------------------------- conversational forms
def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def reply(content: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": content}]


def dialogue_rows(n: int) -> list[dict[str, Any]]:
    """Whole conversations in chosen / rejected, no prompt column (e.g. trl-lib/ultrafeedback_binarized)."""
    context = lambda i: [user(f"hi {i}"), *reply("hello"), user("how are you?")]  # noqa: E731
    return [
        {"chosen": [*context(i), *reply(f"fine {i}, thanks")], "rejected": [*context(i), *reply("go away")]}
        for i in range(n)
    ]


def test_messages_without_a_prompt_column(tmp_path: Path) -> None:
    """The turns before the last assistant message are the prompt; the completions are that message alone."""
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", dialogue_rows(10)), eval_fraction=0.1)
    row = splits["preferences"][0]
    i = row["prompt"][0]["content"].split()[1]
    prompt = [user(f"hi {i}"), *reply("hello"), user("how are you?")]
    assert row == {"prompt": prompt, "chosen": reply(f"fine {i}, thanks"), "rejected": reply("go away")}
    assert row_for(splits["sft"], prompt) == {"prompt": prompt, "completion": reply(f"fine {i}, thanks")}
    assert prompt in splits["prompts"]["prompt"]
    [held] = splits["eval_prompts"]["prompt"]
    assert held[0]["content"].startswith("hi ") and held[-1] == user("how are you?")
    assert not any(message["role"] == "assistant" and "thanks" in message["content"] for message in held)


def test_plain_rendering_of_messages_is_the_hh_text(tmp_path: Path) -> None:
    """A model without a chat template reads the messages as the HH transcript the task used to write, and a model
    pretrained from scratch reads that same text."""
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", dialogue_rows(10)), eval_fraction=0.1)
    row = splits["preferences"][0]
    i = row["prompt"][0]["content"].split()[1]
    text = f"Human: hi {i}\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    assert render_plain(row["prompt"]) == text
    assert render_plain([*row["prompt"], *row["chosen"]], generation_prompt=False) == text + f" fine {i}, thanks"
    assert text + f" fine {i}, thanks" in splits["pretrain"]["text"]
    assert text + " go away" in splits["pretrain"]["text"]
    [held] = splits["eval_prompts"]["prompt"]
    assert render_plain(held) + " go away" in splits["pretrain_heldout"]["text"]


def test_messages_with_a_prompt_column(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [{"role": "system", "content": "be brief"}, user(f"name {i} colours")],
            "chosen": reply("red, blue"),
            "rejected": reply("no"),
        }
        for i in range(10)
    ]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", rows), eval_fraction=0.1)
    row = splits["sft"][0]
    i = row["prompt"][1]["content"].split()[1]
    prompt = [{"role": "system", "content": "be brief"}, user(f"name {i} colours")]
    assert row == {"prompt": prompt, "completion": reply("red, blue")}
    assert render_plain(prompt) == f"System: be brief\n\nHuman: name {i} colours\n\nAssistant:"


def test_text_prompt_column_before_conversations_is_a_user_turn(tmp_path: Path) -> None:
    """A text prompt column and conversations that go on from it: the prompt is the user's first turn."""
    rows = [
        {
            "prompt": f"hi {i}",
            "chosen": [*reply("hello"), user("a joke?"), *reply("a pun")],
            "rejected": [*reply("hello"), user("a joke?"), *reply("no")],
        }
        for i in range(10)
    ]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", rows), eval_fraction=0.1)
    row = splits["preferences"][0]
    i = row["prompt"][0]["content"].split()[1]
    assert row["prompt"] == [user(f"hi {i}"), *reply("hello"), user("a joke?")]
    assert (row["chosen"], row["rejected"]) == (reply("a pun"), reply("no"))


def test_message_prompt_with_text_completions(tmp_path: Path) -> None:
    """Completions written as text beside a prompt of messages become the assistant's reply (one form per row)."""
    rows = [{"prompt": [user(f"q {i}")], "chosen": " yes ", "rejected": "no"} for i in range(10)]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", rows), eval_fraction=0.1)
    row = splits["preferences"][0]
    assert row["prompt"][0]["role"] == "user"
    assert (row["chosen"], row["rejected"]) == (reply("yes"), reply("no"))


def test_hh_transcripts_as_messages(tmp_path: Path) -> None:
    rows = [
        {
            "chosen": f"\n\nHuman: hi {i}\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: a pun",
            "rejected": f"\n\nHuman: hi {i}\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: no",
        }
        for i in range(10)
    ]
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    _, splits = build(tmp_path, path, eval_fraction=0.1, transcripts_as_messages=True)
    row = splits["preferences"][0]
    i = row["prompt"][0]["content"].split()[1]
    prompt = [user(f"hi {i}"), *reply("hello"), user("a joke?")]
    assert row == {"prompt": prompt, "chosen": reply("a pun"), "rejected": reply("no")}
    _, as_text = build(tmp_path, path, eval_fraction=0.1)
    assert render_plain(prompt) in as_text["prompts"]["prompt"]


def test_hh_transcripts_split_at_the_last_shared_assistant_turn(tmp_path: Path) -> None:
    rows = [
        {
            "chosen": f"\n\nHuman: hi {i}\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: a pun",
            "rejected": f"\n\nHuman: hi {i}\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant: no",
        }
        for i in range(10)
    ]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "hh.jsonl", rows), eval_fraction=0.1)
    row = splits["preferences"][0]
    i = row["prompt"].split()[2]
    assert row == {
        "prompt": f"Human: hi {i}\n\nAssistant: hello\n\nHuman: a joke?\n\nAssistant:",
        "chosen": " a pun",
        "rejected": " no",
    }


# ------------------------------------------------------------------------------------------- determinism
def test_eval_split_is_fixed_by_the_seed(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", pairs(200))
    held_out = [set(build(tmp_path, path, seed=seed)[1]["eval_prompts"]["prompt"]) for seed in (0, 0, 1)]
    assert len(held_out[0]) == 10  # 5% of 200
    assert held_out[0] == held_out[1]
    assert held_out[0] != held_out[2]


def test_small_fraction_still_holds_out_one_prompt(tmp_path: Path) -> None:
    _, splits = build(tmp_path, write_jsonl(tmp_path / "p.jsonl", pairs(3)), eval_fraction=0.01)
    assert len(splits["eval_prompts"]) == 1 and len(splits["preferences"]) == 2


# ------------------------------------------------------------------------------------------- judge split
def test_judge_split_is_held_out_from_training(tmp_path: Path) -> None:
    """200 prompts: 10 (5%) held out for evaluation, 19 of the other 190 (10%) for the judge, 171 to train on."""
    metrics, splits = build(tmp_path, write_jsonl(tmp_path / "p.jsonl", pairs(200)), judge_fraction=0.1)
    assert set(splits) == SPLITS | {"judge_preferences"}
    assert splits["judge_preferences"].column_names == ["prompt", "chosen", "rejected"]
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {
        "preferences": 171,
        "sft": 171,
        "prompts": 171,
        "eval_prompts": 10,
        "judge_preferences": 19,
        "pretrain": 342,
        "pretrain_heldout": 20,
    }
    assert metrics["size_judge_preferences"] == 19
    judge = set(splits["judge_preferences"]["prompt"])
    for split in ("preferences", "sft", "prompts", "eval_prompts"):
        assert not judge & set(splits[split]["prompt"]), split
    pretrain = " | ".join(splits["pretrain"]["text"])
    assert not any(f"{prompt} " in pretrain for prompt in judge)
    row = splits["judge_preferences"][0]
    i = row["prompt"].split()[1]
    assert row == {"prompt": f"question {i} is", "chosen": f" good answer {i}", "rejected": f" bad answer {i}"}


def test_eval_prompts_do_not_depend_on_the_judge(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", pairs(100))
    built = [build(tmp_path, path, judge_fraction=fraction)[1] for fraction in (0, 0.1, 0.3, 0.3)]
    held_out = [set(splits["eval_prompts"]["prompt"]) for splits in built]
    assert held_out[0] == held_out[1] == held_out[2]
    assert "judge_preferences" not in built[0]
    judges = [set(splits["judge_preferences"]["prompt"]) for splits in built[1:]]
    assert (len(judges[0]), len(judges[1])) == (10, 28)  # of the 95 training prompts
    assert judges[1] == judges[2]  # seeded


def test_judge_prompts_of_messages_are_disjoint_from_training(tmp_path: Path) -> None:
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", dialogue_rows(30)), judge_fraction=0.2)
    key = lambda prompts: {json.dumps(p, sort_keys=True) for p in prompts}  # noqa: E731
    judge = key(splits["judge_preferences"]["prompt"])
    assert len(judge) == 6 and splits["judge_preferences"][0]["chosen"][0]["role"] == "assistant"
    assert not judge & key(splits["prompts"]["prompt"])
    assert not judge & key(splits["eval_prompts"]["prompt"])
    assert not judge & key(splits["preferences"]["prompt"])


# -------------------------------------------------------------------------------------- validation split
def test_validation_prompts_are_taken_out_of_training(tmp_path: Path) -> None:
    """200 prompts: 10 (5%) held out for evaluation, 19 of the other 190 (10%) for the judge, 17 of the 171 left
    (10%, rounded) for validation, 154 to train on. Validation's prompts are in no split a stage trains on (nor in
    the base model's pretraining text), nor in the evaluation's or the judge's; its layout is eval_prompts'."""
    prompts = {f"question {i} is" for i in range(200)}
    path = write_jsonl(tmp_path / "p.jsonl", pairs(200))
    metrics, splits = build(tmp_path, path, judge_fraction=0.1, validation_fraction=0.1)
    assert set(splits) == SPLITS | {"judge_preferences", "validation_prompts"}
    sizes = {name: len(split) for name, split in splits.items()}
    assert sizes == {
        "preferences": 154,
        "sft": 154,
        "prompts": 154,
        "eval_prompts": 10,
        "validation_prompts": 17,
        "judge_preferences": 19,
        "pretrain": 308,
        "pretrain_heldout": 20,
    }
    assert metrics["size_validation_prompts"] == 17
    assert splits["validation_prompts"].features == splits["eval_prompts"].features  # a `prompt` column, text
    validation = set(splits["validation_prompts"]["prompt"])
    for split in ("preferences", "sft", "prompts", "eval_prompts", "judge_preferences"):
        assert not validation & set(splits[split]["prompt"]), split
    pretrain = " | ".join(splits["pretrain"]["text"])
    assert not any(f"{prompt} " in pretrain for prompt in validation)
    held_out = set(splits["eval_prompts"]["prompt"]) | set(splits["judge_preferences"]["prompt"])
    assert validation | held_out | set(splits["prompts"]["prompt"]) == prompts  # no prompt lost


def test_eval_and_judge_prompts_do_not_depend_on_validation(tmp_path: Path) -> None:
    """eval_prompts (and pretrain_heldout, and the judge's pairs) are the same datasets, row for row, whatever
    validation_fraction; 0 means no validation split; the validation draw is seeded."""
    path = write_jsonl(tmp_path / "p.jsonl", pairs(100))
    built = [build(tmp_path, path, judge_fraction=0.1, validation_fraction=f)[1] for f in (0, 0.1, 0.3, 0.3)]
    assert "validation_prompts" not in built[0]
    for split in ("eval_prompts", "pretrain_heldout", "judge_preferences"):
        reference = built[0][split]
        for splits in built[1:]:
            assert splits[split].features == reference.features and list(splits[split]) == list(reference), split
    validations = [set(splits["validation_prompts"]["prompt"]) for splits in built[1:]]
    assert (len(validations[0]), len(validations[1])) == (8, 26)  # of the 85 left by evaluation (5) and judge (10)
    assert validations[1] == validations[2]  # seeded
    other_seed = build(tmp_path, path, judge_fraction=0.1, validation_fraction=0.3, seed=1)[1]
    assert set(other_seed["validation_prompts"]["prompt"]) != validations[1]


def test_validation_prompts_of_messages_are_disjoint_from_training(tmp_path: Path) -> None:
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", dialogue_rows(30)), validation_fraction=0.2)
    key = lambda prompts: {json.dumps(p, sort_keys=True) for p in prompts}  # noqa: E731
    validation = key(splits["validation_prompts"]["prompt"])
    assert len(validation) == 6 and splits["validation_prompts"].features == splits["eval_prompts"].features
    for split in ("prompts", "preferences", "sft", "eval_prompts"):
        assert not validation & key(splits[split]["prompt"]), split


def test_no_exact_judge() -> None:
    assert HFPreferences(path="x.jsonl").gold() is None


def test_yaml_instantiates_with_exactly_its_keys(compose) -> None:

    from harness.app import apply_smoke

    cfg = compose(["task=hf_preferences", "task.path=data/prefs.jsonl", "debug=smoke"])
    apply_smoke(cfg)
    task = build_plugin(cfg.task)
    assert isinstance(task, HFPreferences)
    assert (task.path, task.split, task.max_examples, task.eval_fraction) == ("data/prefs.jsonl", "train", 2000, 0.05)
    assert (task.judge_fraction, task.validation_fraction, task.transcripts_as_messages) == (0.1, 0.1, False)


# ---------------------------------------------------------------------------------------------- errors
def bad_file(tmp_path: Path, name: str, content: str) -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def jsonl(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    return write_jsonl(tmp_path / "bad.jsonl", rows)


ERRORS: dict[str, tuple[Any, dict[str, Any], list[str]]] = {
    # case: (make the path from tmp_path, settings, strings the one-line message must contain)
    "missing file": (lambda t: t / "data" / "prefs.jsonl", {}, ["prefs.jsonl", "no such file"]),
    "missing relative file": (lambda t: "data/prefs.jsonl", {}, ["task.path='data/prefs.jsonl': no such file"]),
    "missing deep path": (lambda t: "a/b/c", {}, ["task.path='a/b/c': no such file"]),
    "hub name offline": (lambda t: "someone/prefs", {}, ["task.path='someone/prefs'", "Hugging Face Hub"]),
    "malformed json": (
        lambda t: bad_file(t, "bad.jsonl", '{"prompt": "a", "chosen": "b"\n'),
        {},
        ["bad.jsonl", "could not be read as json"],
    ),
    "empty file": (lambda t: bad_file(t, "bad.jsonl", ""), {}, ["bad.jsonl", "empty"]),
    "header-only csv": (lambda t: bad_file(t, "bad.csv", "prompt,chosen,rejected\n"), {}, ["bad.csv", "empty"]),
    "unsupported suffix": (lambda t: bad_file(t, "prefs.txt", "hello"), {}, ["prefs.txt", "'.txt'", ".jsonl"]),
    "missing column": (
        lambda t: jsonl(t, [{"prompt": "p", "good": "a", "bad": "b"}] * 3),
        {},
        ["column 'chosen' is missing", "['prompt', 'good', 'bad']", "task.columns.chosen=<name>"],
    ),
    "missing remapped prompt": (
        lambda t: jsonl(t, pairs(3)),
        {"columns": {"prompt": "question"}},
        ["column 'question' is missing", "task.columns.prompt=<name>"],
    ),
    "non-string value": (
        lambda t: jsonl(t, [*pairs(2), {"prompt": "p", "chosen": 5, "rejected": "b"}]),
        {},
        ["bad.jsonl", "row 2, column 'chosen'", "int 5"],
    ),
    "empty value": (
        lambda t: jsonl(t, [*pairs(3), {"prompt": "p", "chosen": "a", "rejected": "  "}]),
        {},
        ["row 3, column 'rejected' is empty"],
    ),
    "empty csv cell": (
        lambda t: bad_file(t, "bad.csv", "prompt,chosen,rejected\np,a,b\n,a,b\n"),
        {},
        ["row 1, column 'prompt' is empty"],
    ),
    "unknown split": (lambda t: jsonl(t, pairs(3)), {"split": "test"}, ["task.split='test'", "bad.jsonl", "train"]),
    "unknown split of saved dataset": (
        lambda t: saved(t, pairs(3)),
        {"split": "validation"},
        ["task.split='validation'", "['train']"],
    ),
    "subset of a local file": (lambda t: jsonl(t, pairs(3)), {"subset": "harmless"}, ["task.subset='harmless'"]),
    "eval fraction out of range": (lambda t: jsonl(t, pairs(3)), {"eval_fraction": 1.5}, ["task.eval_fraction=1.5"]),
    "max examples not positive": (lambda t: jsonl(t, pairs(3)), {"max_examples": 0}, ["task.max_examples=0"]),
    "unknown column field": (lambda t: jsonl(t, pairs(3)), {"columns": {"answer": "x"}}, ["task.columns.answer"]),
    "one prompt only": (
        lambda t: jsonl(t, [{**row, "prompt": "same"} for row in pairs(5)]),
        {},
        ["bad.jsonl", "same prompt"],
    ),
    "messages without assistant": (
        lambda t: jsonl(t, [{"prompt": "p", "chosen": [{"role": "user", "content": "x"}], "rejected": []}]),
        {},
        ["row 0, column 'chosen' has no assistant message"],
    ),
    "malformed message": (
        lambda t: jsonl(t, [{"prompt": "p", "chosen": [{"role": "assistant"}], "rejected": [{"role": "assistant"}]}]),
        {},
        ["row 0, chosen[0]", "expected a message {role, content}"],
    ),
    "unknown role": (
        lambda t: jsonl(
            t, [*dialogue_rows(2), {**dialogue_rows(1)[0], "rejected": [user("x"), {"role": "bot", "content": "y"}]}]
        ),
        {},
        ["bad.jsonl", "row 2, rejected[1].role='bot'", "expected one of system, user, assistant"],
    ),
    "text and message rows mixed": (
        lambda t: jsonl(t, [*pairs(2), {"prompt": "p", "chosen": reply("a"), "rejected": reply("b")}]),
        {},
        ["bad.jsonl", "row 2 is messages and row 0 is text", "one form"],
    ),
    "prompt ending in the assistant's turn": (
        lambda t: jsonl(t, [{"prompt": [user("p"), *reply("a")], "chosen": "b", "rejected": "c"}]),
        {},
        ["row 0", "ends in an assistant turn"],
    ),
    "judge fraction out of range": (lambda t: jsonl(t, pairs(3)), {"judge_fraction": 1}, ["task.judge_fraction=1"]),
    "validation fraction out of range": (
        lambda t: jsonl(t, pairs(3)),
        {"validation_fraction": 1},
        ["task.validation_fraction=1", "expected a fraction from 0 (no validation split) below 1"],
    ),
    "validation fraction not a number": (
        lambda t: jsonl(t, pairs(3)),
        {"validation_fraction": True},
        ["task.validation_fraction=True"],
    ),
    "too few prompts for validation": (
        lambda t: jsonl(t, pairs(2)),
        {"validation_fraction": 0.1},
        ["bad.jsonl", "2 distinct prompts", "some for validation", "task.validation_fraction=0"],
    ),
    "too few prompts for a judge and validation": (
        lambda t: jsonl(t, pairs(3)),
        {"judge_fraction": 0.1, "validation_fraction": 0.1},
        ["bad.jsonl", "3 distinct prompts", "some for the judge and some for validation", "expected at least 4"],
    ),
    "too few prompts for a judge": (
        lambda t: jsonl(t, pairs(2)),
        {"judge_fraction": 0.1},
        ["bad.jsonl", "2 distinct prompts", "task.judge_fraction=0"],
    ),
    "transcripts without assistant turn": (
        lambda t: jsonl(t, [{"chosen": "hello there", "rejected": "hello you"}]),
        {},
        ["row 0", "'Assistant:'", "task.columns.prompt=<name>"],
    ),
}


def saved(tmp_path: Path, rows: list[dict[str, Any]]) -> Path:
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    return tmp_path / "saved"


@pytest.mark.parametrize("case", list(ERRORS))
def test_user_errors_are_one_line_naming_the_bad_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    make_path, settings, expected = ERRORS[case]
    monkeypatch.chdir(tmp_path)
    path = make_path(tmp_path)
    with pytest.raises(HarnessError) as error:
        build(tmp_path, path, **settings)
    message = str(error.value)
    assert "\n" not in message and message.strip() == message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
    if "task.path" in message:
        assert f"task.path={str(path)!r}" in message


# ------------------------------------------------------------------------------------------- end to end
def run_harness(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", HF_DATASETS_CACHE=str(tmp_path / "hf_cache"))
    return subprocess.run(
        [str(HARNESS), *overrides], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env
    )


@pytest.mark.slow
def test_harness_runs_sft_on_a_local_preference_file(tmp_path: Path) -> None:
    subjects = ["the movie", "the plot", "the cast", "the ending", "the music"]
    good = ["was great", "felt warm", "was clever", "moved me"]
    bad = ["was dull", "felt cold", "was silly", "bored me"]
    rows = [
        {
            "prompt": f"review {i} : {subjects[i % 5]}",
            "chosen": f"{good[i % 4]} and {good[(i + 1) % 4]} .",
            "rejected": f"{bad[i % 4]} and {bad[(i + 3) % 4]} .",
        }
        for i in range(200)
    ]
    data = write_jsonl(tmp_path / "prefs.jsonl", rows)
    results = tmp_path / "results"
    done = run_harness(
        tmp_path,
        "task=hf_preferences",
        f"task.path={data}",
        "model=tiny_gpt2",
        "debug=smoke",
        "algorithm=sft",
        "eval=[]",
        f"results_dir={results}",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [result_file] = results.glob("runs/*/result.json")
    result = json.loads(result_file.read_text())
    assert result["status"] == "complete"
    data_stage = result["stages"]["data"]["metrics"]
    assert data_stage["size_eval_prompts"] == 10 and data_stage["size_preferences"] == 154
    assert data_stage["size_judge_preferences"] == 19  # 10% of the training prompts, never trained on
    assert data_stage["size_validation_prompts"] == 17  # 10% of those the judge left, never trained on
    assert result["stages"]["sft"]["metrics"]["params_changed"] > 0


def test_harness_names_a_missing_file_in_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "prefs.jsonl"
    done = run_harness(
        tmp_path,
        "task=hf_preferences",
        f"task.path={missing}",
        "debug=smoke",
        "eval=[]",
        f"results_dir={tmp_path / 'results'}",
    )
    assert done.returncode != 0
    last = [line for line in done.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error:")
    assert str(missing) in last and "no such file" in last
    assert "Traceback" not in done.stderr
