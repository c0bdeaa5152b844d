"""`task=hf_preferences`: local files of every supported form become the harness's splits; bad input is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.errors import HarnessError
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
    from datasets import load_from_disk

    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    out.mkdir()
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
def test_messages_without_a_prompt_column(tmp_path: Path) -> None:
    rows = [
        {
            "chosen": [
                {"role": "user", "content": f"hi {i}"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "how are you?"},
                {"role": "assistant", "content": f"fine {i}, thanks"},
            ],
            "rejected": [
                {"role": "user", "content": f"hi {i}"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": "how are you?"},
                {"role": "assistant", "content": "go away"},
            ],
        }
        for i in range(10)
    ]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", rows), eval_fraction=0.1)
    row = splits["preferences"][0]
    i = row["prompt"].split()[2]
    prompt = f"Human: hi {i}\n\nAssistant: hello\n\nHuman: how are you?\n\nAssistant:"
    assert row == {"prompt": prompt, "chosen": f" fine {i}, thanks", "rejected": " go away"}
    assert prompt + f" fine {i}, thanks" in list(splits["pretrain"]["text"])
    [held] = splits["eval_prompts"]["prompt"]
    assert held.startswith("Human: hi ") and held.endswith("\n\nAssistant:")


def test_messages_with_a_prompt_column(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": f"name {i} colours"}],
            "chosen": [{"role": "assistant", "content": "red, blue"}],
            "rejected": [{"role": "assistant", "content": "no"}],
        }
        for i in range(10)
    ]
    _, splits = build(tmp_path, write_jsonl(tmp_path / "chat.jsonl", rows), eval_fraction=0.1)
    row = splits["sft"][0]
    i = row["prompt"].split("name ")[1].split()[0]
    assert row == {"prompt": f"System: be brief\n\nHuman: name {i} colours\n\nAssistant:", "completion": " red, blue"}


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


def test_no_exact_judge() -> None:
    assert HFPreferences(path="x.jsonl").gold() is None


def test_yaml_instantiates_with_exactly_its_keys(compose) -> None:
    from hydra.utils import instantiate

    from harness.app import apply_smoke

    cfg = compose(["task=hf_preferences", "task.path=data/prefs.jsonl", "debug=smoke"])
    apply_smoke(cfg)
    task = instantiate(cfg.task, _convert_="all")
    assert isinstance(task, HFPreferences)
    assert (task.path, task.split, task.max_examples, task.eval_fraction) == ("data/prefs.jsonl", "train", 2000, 0.05)


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
        ["row 0, column 'chosen', message 0"],
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
    assert data_stage["size_eval_prompts"] == 10 and data_stage["size_preferences"] == 190
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
