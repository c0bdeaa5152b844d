"""The ready Hub tasks (ultrafeedback, hh_rlhf, tldr, hf_unpaired, hf_prompts): each config, composed as the CLI
composes it, reads a small local copy written in its dataset's real schema into splits of the expected forms:
messages stay messages, prompts never hold the reply, held-out and judge prompts are never trained on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.chat import ROLES, render_plain
from harness.errors import HarnessError
from harness.runner import build_plugin

HUB = {
    "ultrafeedback": ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs", "HFPreferences"),
    "hh_rlhf": ("Anthropic/hh-rlhf", "train", "HFPreferences"),
    "tldr": ("trl-lib/tldr-preference", "train", "HFPreferences"),
    "hf_unpaired": ("trl-lib/kto-mix-14k", "train", "HFUnpaired"),
    "hf_prompts": ("trl-lib/ultrafeedback-prompt", "train", "HFPrompts"),
}


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No hub, and the datasets cache of local files kept inside the test's own folder."""
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")


@pytest.fixture
def build(compose, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """`build(task, path, *overrides)` -> the splits `harness task=<task> task.path=<path> <overrides>` writes."""
    from datasets import load_from_disk

    from harness.app import apply_smoke

    def run(task: str, path: Path, *overrides: str) -> Any:
        cfg = compose([f"task={task}", f"task.path={path}", *overrides])
        apply_smoke(cfg)  # as the CLI does: without debug=smoke, it drops the `smoke:` blocks
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        out.mkdir()
        build_plugin(cfg.task).build_datasets(out)
        return load_from_disk(str(out))

    yield run


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def keys(prompts: Any) -> set[str]:
    """Prompts as comparable keys (messages by their JSON, as the task compares them)."""
    return {p if isinstance(p, str) else json.dumps(p, sort_keys=True) for p in prompts}


def assert_prompt_messages(prompt: Any) -> None:
    assert isinstance(prompt, list) and prompt, prompt
    assert all(set(m) == {"role", "content"} and m["role"] in ROLES for m in prompt), prompt
    assert prompt[-1]["role"] != "assistant", prompt


def assert_reply(completion: Any) -> str:
    """A completion in TRL's conversational form: one assistant message. Returns its content."""
    assert isinstance(completion, list) and len(completion) == 1, completion
    assert completion[0]["role"] == "assistant" and completion[0]["content"].strip(), completion
    return completion[0]["content"]


def assert_never_trained_on(splits: Any, training: tuple[str, ...]) -> None:
    """Evaluation, validation (and judge) prompts are disjoint from every split a method trains on (the base
    model's pretraining text too), and from each other."""
    others = [split for split in ("judge_preferences", "validation_prompts") if split in splits]
    held_out = {split: keys(splits[split]["prompt"]) for split in ("eval_prompts", *others)}
    assert all(held_out.values()) and sum(map(len, held_out.values())) == len(set().union(*held_out.values()))
    for split in training:
        trained = keys(splits[split]["prompt"])
        assert trained and not trained & set().union(*held_out.values()), split
    pretrain = " || ".join(splits["pretrain"]["text"])
    for prompt in [prompt for split in held_out for prompt in splits[split]["prompt"]]:
        text = prompt if isinstance(prompt, str) else render_plain(prompt)
        assert text not in pretrain


# ------------------------------------------------------------------------------------------------ configs
@pytest.mark.parametrize("task", list(HUB))
def test_config_loads_its_hub_dataset_by_default(compose, task: str) -> None:

    from harness.app import apply_smoke

    hub_name, split, class_name = HUB[task]
    cfg = compose([f"task={task}", "debug=smoke"])
    settings = {"_target_", "name", "path", "split", "columns", "eval_fraction", "validation_fraction", "max_examples"}
    assert settings | {"seed"} <= set(cfg.task)
    assert cfg.task.smoke.max_examples == 2000
    apply_smoke(cfg)
    built = build_plugin(cfg.task)
    assert type(built).__name__ == class_name
    assert (built.name, built.path, built.split, built.max_examples, built.seed) == (task, hub_name, split, 2000, 0)
    assert built.validation_fraction == 0.1  # each ready config states the default
    assert built.fingerprint() is None  # a Hub name: the config itself is the cache key


def test_hh_rlhf_parses_transcripts_and_hf_preferences_keeps_text(compose) -> None:

    from harness.app import apply_smoke

    def task(*overrides: str) -> Any:
        cfg = compose(list(overrides))
        apply_smoke(cfg)
        return build_plugin(cfg.task)

    hh = task("task=hh_rlhf")
    assert hh.transcripts_as_messages is True and hh.columns["prompt"] is None
    generic = task("task=hf_preferences", "task.path=x.jsonl")
    assert generic.transcripts_as_messages is False and generic.judge_fraction == 0.1


# ----------------------------------------------------------------------------------------- ultrafeedback
def ultrafeedback_rows(n: int) -> list[dict[str, Any]]:
    """HuggingFaceH4/ultrafeedback_binarized: the prompt as text, and again as the conversations' first turn."""
    rows = []
    for i in range(n):
        prompt = f"Write a haiku about topic {i}."
        chosen = [user(prompt), assistant(f"Leaves fall on {i}, quiet.")]
        rejected = [user(prompt), assistant("I cannot write poems.")]
        if i % 4 == 3:  # a longer dialogue: the prompt is everything before the last reply
            chosen = [user(prompt), assistant("About what?"), user("Autumn."), assistant(f"Red leaves {i}.")]
            rejected = [user(prompt), assistant("About what?"), user("Autumn."), assistant("No.")]
        rows.append(
            {
                "prompt": prompt,
                "prompt_id": f"{i:064x}",
                "chosen": chosen,
                "rejected": rejected,
                "messages": chosen,
                "score_chosen": 8.0,
                "score_rejected": 3.5,
            }
        )
    return rows


def test_ultrafeedback_from_a_copy_of_the_hub_repository(build, tmp_path: Path) -> None:
    """The repository's layout (data/train_prefs-*.parquet beside test_prefs), read with the config's own split.
    40 prompts: 2 (5%) held out, 4 of the other 38 (10%) for the judge, 3 of the 34 left (10%) for validation, 31
    to train on."""
    import pandas

    copy = tmp_path / "ultrafeedback_binarized"
    (copy / "data").mkdir(parents=True)
    pandas.DataFrame(ultrafeedback_rows(40)).to_parquet(copy / "data" / "train_prefs-00000-of-00001.parquet")
    pandas.DataFrame(ultrafeedback_rows(5)).to_parquet(copy / "data" / "test_prefs-00000-of-00001.parquet")
    splits = build("ultrafeedback", copy)
    assert {name: len(split) for name, split in splits.items()} == {
        "preferences": 31,
        "sft": 31,
        "prompts": 31,
        "eval_prompts": 2,
        "validation_prompts": 3,
        "judge_preferences": 4,
        "pretrain": 62,
        "pretrain_heldout": 4,
    }
    for row in [*splits["preferences"], *splits["judge_preferences"]]:
        assert_prompt_messages(row["prompt"])
        chosen, rejected = assert_reply(row["chosen"]), assert_reply(row["rejected"])
        assert row["prompt"][0]["content"].startswith("Write a haiku")
        assert [m["content"] for m in row["prompt"]].count(row["prompt"][0]["content"]) == 1  # not repeated
        assert not any(chosen in m["content"] or rejected in m["content"] for m in row["prompt"])
    for prompt in splits["eval_prompts"]["prompt"]:
        assert_prompt_messages(prompt)
    dialogues = [row["prompt"] for row in splits["preferences"] if len(row["prompt"]) > 1]
    assert len(dialogues) >= 5  # every 4th of 40, less any held out
    for prompt in dialogues:
        assert [m["role"] for m in prompt] == ["user", "assistant", "user"] and prompt[1:] == [
            assistant("About what?"),
            user("Autumn."),
        ]
    one = splits["sft"][0]
    assert_reply(one["completion"])
    assert render_plain([*one["prompt"], *one["completion"]], generation_prompt=False) in splits["pretrain"]["text"]
    assert_never_trained_on(splits, ("preferences", "sft", "prompts"))


def test_ultrafeedback_exported_as_one_file(build, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "uf.jsonl", ultrafeedback_rows(20))
    splits = build("ultrafeedback", path, "task.split=train")
    row = next(r for r in splits["preferences"] if len(r["prompt"]) == 1)
    i = row["prompt"][0]["content"].split()[-1].rstrip(".")
    assert row == {
        "prompt": [user(f"Write a haiku about topic {i}.")],
        "chosen": [assistant(f"Leaves fall on {i}, quiet.")],
        "rejected": [assistant("I cannot write poems.")],
    }


# ----------------------------------------------------------------------------------------------- hh-rlhf
def hh_rows(n: int) -> list[dict[str, str]]:
    """Anthropic/hh-rlhf: whole transcripts, no prompt column; they differ in the last reply only."""
    rows = []
    for i in range(n):
        dialogue = f"\n\nHuman: How do I bake bread {i}?"
        if i % 3 == 0:
            dialogue += "\n\nAssistant: Do you have yeast?\n\nHuman: Yes, and flour."
        rows.append(
            {
                "chosen": f"{dialogue}\n\nAssistant: Mix flour, water and yeast, then bake {i}.",
                "rejected": f"{dialogue}\n\nAssistant: Buy some.",
            }
        )
    return rows


def test_hh_rlhf_transcripts_become_messages(build, tmp_path: Path) -> None:
    rows = hh_rows(30)
    splits = build("hh_rlhf", write_jsonl(tmp_path / "train.jsonl", rows))
    transcripts = {row["chosen"]: row for row in rows}
    for row in [*splits["preferences"], *splits["judge_preferences"]]:
        assert_prompt_messages(row["prompt"])
        assert [m["role"] for m in row["prompt"]] in (["user"], ["user", "assistant", "user"])
        chosen, rejected = assert_reply(row["chosen"]), assert_reply(row["rejected"])
        assert rejected == "Buy some." and chosen.startswith("Mix flour")
        # the plain transcript of the messages is the dataset's own text
        original = render_plain([*row["prompt"], *row["chosen"]], generation_prompt=False)
        assert "\n\n" + original in transcripts
    assert {"Yes, and flour."} <= {m["content"] for p in splits["prompts"]["prompt"] for m in p}
    assert_never_trained_on(splits, ("preferences", "sft", "prompts"))


# -------------------------------------------------------------------------------------------------- tldr
def tldr_rows(n: int) -> list[dict[str, str]]:
    """trl-lib/tldr-preference: text prompts ending in `TL;DR:`, summaries that start with a space."""
    return [
        {
            "prompt": f"SUBREDDIT: r/cooking\n\nTITLE: Bread {i}\n\nPOST: My loaf number {i} came out flat.\n\nTL;DR:",
            "chosen": f" loaf {i} was flat; needed more proofing",
            "rejected": " bread bad",
        }
        for i in range(n)
    ]


def test_tldr_text_stays_text(build, tmp_path: Path) -> None:
    splits = build("tldr", write_jsonl(tmp_path / "tldr.jsonl", tldr_rows(30)))
    for name in ("preferences", "sft", "prompts", "eval_prompts", "judge_preferences"):
        assert all(isinstance(p, str) and p.endswith("TL;DR:") for p in splits[name]["prompt"]), name
    row = splits["preferences"][0]
    i = row["prompt"].split("Bread ")[1].split("\n")[0]
    assert (row["chosen"], row["rejected"]) == (f" loaf {i} was flat; needed more proofing", " bread bad")
    assert row["prompt"] + row["chosen"] in splits["pretrain"]["text"]
    assert splits["sft"].features["completion"].dtype == "string"
    assert_never_trained_on(splits, ("preferences", "sft", "prompts"))


# ------------------------------------------------------------------------------------------- hf_unpaired
def kto_rows(n: int) -> list[dict[str, Any]]:
    """trl-lib/kto-mix-14k: messages, one completion each, a boolean label; most prompts appear twice."""
    return [
        {
            "prompt": [user(f"Name a colour {i // 2}.")],
            "completion": [assistant(f"Blue {i}." if i % 2 == 0 else "No.")],
            "label": i % 2 == 0,
        }
        for i in range(n)
    ]


def test_hf_unpaired_kto_mix(build, tmp_path: Path) -> None:
    """40 rows on 20 prompts: 1 prompt (2 rows) held out, 2 of the other 19 for validation, 34 rows to train on,
    17 of them desirable."""
    splits = build("hf_unpaired", write_jsonl(tmp_path / "kto.jsonl", kto_rows(40)))
    assert set(splits) == {"unpaired", "sft", "prompts", "eval_prompts", "validation_prompts", "pretrain",
                           "pretrain_heldout"}  # fmt: skip
    assert splits["unpaired"].column_names == ["prompt", "completion", "label"]
    assert splits["unpaired"].features["label"].dtype == "bool"
    assert (len(splits["unpaired"]), len(splits["sft"]), len(splits["prompts"])) == (34, 17, 17)
    assert len(splits["validation_prompts"]) == 2
    for row in splits["unpaired"]:
        assert_prompt_messages(row["prompt"])
        reply = assert_reply(row["completion"])
        assert row["label"] == reply.startswith("Blue")
        assert not any(reply in m["content"] for m in row["prompt"])
    assert all(assert_reply(c).startswith("Blue") for c in splits["sft"]["completion"])
    assert len(splits["pretrain"]) == 34 and len(splits["pretrain_heldout"]) == 2
    assert "Human: Name a colour" in splits["pretrain"]["text"][0]
    assert_never_trained_on(splits, ("unpaired", "sft", "prompts"))


def test_hf_unpaired_text_with_integer_labels(build, tmp_path: Path) -> None:
    import pandas

    rows = [{"prompt": f"Colour {i}:", "completion": "blue" if i % 2 else "mud", "label": i % 2} for i in range(20)]
    path = tmp_path / "feedback.csv"
    pandas.DataFrame(rows).to_csv(path, index=False)
    splits = build("hf_unpaired", path, "task.eval_fraction=0.1")
    row = splits["unpaired"][0]
    i = int(row["prompt"].split()[1].rstrip(":"))
    assert row == {"prompt": f"Colour {i}:", "completion": " blue" if i % 2 else " mud", "label": bool(i % 2)}
    assert set(splits["sft"]["completion"]) == {" blue"}


# -------------------------------------------------------------------------------------------- hf_prompts
def test_hf_prompts_of_messages(build, tmp_path: Path) -> None:
    """trl-lib/ultrafeedback-prompt: a `prompt` column of user messages; repeated prompts count once. 25 prompts:
    5 (20%) held out, 2 of the other 20 (10%) for validation, 18 to train on."""
    rows = [{"prompt": [user(f"Explain idea {i % 25}.")]} for i in range(30)]
    splits = build("hf_prompts", write_jsonl(tmp_path / "prompts.jsonl", rows), "task.eval_fraction=0.2")
    assert set(splits) == {"prompts", "eval_prompts", "validation_prompts", "pretrain", "pretrain_heldout"}
    sizes = [len(splits[split]) for split in ("prompts", "eval_prompts", "validation_prompts")]
    assert sizes == [18, 5, 2]
    assert splits["validation_prompts"].features == splits["eval_prompts"].features
    for split in ("prompts", "eval_prompts", "validation_prompts"):
        for prompt in splits[split]["prompt"]:
            assert_prompt_messages(prompt)
    assert list(splits["pretrain"]["text"]) == [
        render_plain(p, generation_prompt=False) for p in splits["prompts"]["prompt"]
    ]
    assert splits["pretrain"]["text"][0].startswith("Human: Explain idea")
    assert_never_trained_on(splits, ("prompts",))


def test_hf_prompts_of_text(build, tmp_path: Path) -> None:
    rows = [{"prompt": f"Once upon a time {i}, there was", "source": "x"} for i in range(20)]
    splits = build("hf_prompts", write_jsonl(tmp_path / "prompts.jsonl", rows))
    assert (len(splits["prompts"]), len(splits["eval_prompts"]), len(splits["validation_prompts"])) == (17, 1, 2)
    assert list(splits["pretrain"]["text"]) == list(splits["prompts"]["prompt"])
    assert_never_trained_on(splits, ("prompts",))


# ------------------------------------------------------------------------------------------------ errors
def bot(content: str) -> dict[str, str]:
    return {"role": "bot", "content": content}


ERRORS: dict[str, tuple[str, list[dict[str, Any]], list[str], list[str]]] = {
    # case: (task, rows, overrides, strings the one-line message must contain)
    "unpaired label not a boolean": (
        "hf_unpaired",
        [*kto_rows(3), {**kto_rows(1)[0], "label": "yes"}],
        [],
        ["bad.jsonl", "row 3, column 'label' is 'yes'", "expected true or false (or 1 or 0)"],
    ),
    "unpaired label out of range": (
        "hf_unpaired",
        [{"prompt": "p", "completion": "c", "label": 2}],
        [],
        ["row 0, column 'label' is 2"],
    ),
    "unpaired text without a prompt column": (
        "hf_unpaired",
        [{"completion": "c", "label": True}] * 2,
        [],
        ["row 0", "no prompt column", "task.columns.prompt=<name>"],
    ),
    "unpaired unknown role": (
        "hf_unpaired",
        [*kto_rows(2), {**kto_rows(1)[0], "completion": [bot("hi")]}],
        [],
        ["row 2, completion[0].role='bot'", "expected one of system, user, assistant"],
    ),
    "prompts column missing": (
        "hf_prompts",
        [{"question": "q"}] * 2,
        [],
        ["column 'prompt' is missing", "['question']", "task.columns.prompt=<name>"],
    ),
    "prompts column set to null": ("hf_prompts", [{"prompt": "q"}] * 2, ["task.columns.prompt=null"], ["None"]),
    "prompt ending in an assistant turn": (
        "hf_prompts",
        [{"prompt": [user("a")]}, {"prompt": [user("b"), assistant("c")]}],
        [],
        ["row 1", "ends in an assistant turn"],
    ),
    "prompt with an unknown role": (
        "hf_prompts",
        [{"prompt": [user("a")]}, {"prompt": [bot("b")]}],
        [],
        ["row 1, prompt[0].role='bot'"],
    ),
    "ultrafeedback unknown role": (
        "ultrafeedback",
        [*ultrafeedback_rows(2), {**ultrafeedback_rows(1)[0], "chosen": [bot("x"), assistant("y")]}],
        ["task.split=train"],
        ["row 2, chosen[0].role='bot'"],
    ),
    "ultrafeedback mixes text and messages": (
        "ultrafeedback",
        [*ultrafeedback_rows(2), {"prompt": "p", "chosen": "a", "rejected": "b"}],
        ["task.split=train"],
        ["row 2 is text and row 0 is messages", "one form"],
    ),
    "ultrafeedback without its split": ("ultrafeedback", ultrafeedback_rows(2), [], ["task.split='train_prefs'"]),
    "hh transcript not starting with Human": (
        "hh_rlhf",
        [*hh_rows(2), {"chosen": "Note\n\nHuman: a\n\nAssistant: b", "rejected": "Note\n\nHuman: a\n\nAssistant: c"}],
        [],
        ["row 2, column 'chosen' starts with 'Note'", "'Human:'"],
    ),
    "hh transcript without turns": (
        "hh_rlhf",
        [{"chosen": "Human: a Assistant: b", "rejected": "Human: a Assistant: c"}],
        [],
        ["row 0", "does not end in"],
    ),
    "tldr empty summary": (
        "tldr",
        [*tldr_rows(2), {**tldr_rows(1)[0], "chosen": " "}],
        [],
        ["row 2, column 'chosen' is empty"],
    ),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_bad_rows_are_one_line_naming_the_row(build, tmp_path: Path, case: str) -> None:
    task, rows, overrides, expected = ERRORS[case]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(HarnessError) as error:
        build(task, path, *overrides)
    message = str(error.value)
    assert "\n" not in message and message.strip() == message
    for text in expected:
        assert text in message, f"{text!r} not in {message!r}"
