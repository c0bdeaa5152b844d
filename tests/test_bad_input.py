"""Bad input a user can cause ends in one line that names the problem: an error (`error: ...`, exit 2, no traceback)
or a warning, after which the job still completes."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import run_harness

from harness.errors import HarnessError

SMOKE = ("debug=smoke", "logger=none")


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def assert_one_line_error(result: Any, expected: str) -> str:
    """Exit status 2, no traceback, and a last line of stderr that matches the regular expression `expected`."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr[-2000:]
    assert result.returncode == 2, result.stderr[-2000:]
    line = last_line(result.stderr)
    assert re.fullmatch(expected, line), line
    return line


def status(results_dir: Path) -> str:
    (result_file,) = results_dir.rglob("result.json")
    return json.loads(result_file.read_text())["status"]


@pytest.fixture(autouse=True)
def datasets_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`datasets` caches what it reads from local files in the test's own folder, not in ~/.cache."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))


@pytest.fixture(scope="module")
def testbed_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One stage cache for the testbed runs here: the smoke base model is built once."""
    return tmp_path_factory.mktemp("stage_cache")


def preference_rows(n: int, long_prompt_every: int = 0) -> list[dict[str, str]]:
    """Preference rows with distinct prompts; every `long_prompt_every`-th prompt (if any) is 500 words long."""
    subjects = ["the movie", "the plot", "the cast", "the ending", "the music"]
    preamble = " ".join(["the plot was dull and the cast was warm ."] * 50)
    rows = []
    for i in range(n):
        prompt = f"review {i} : {subjects[i % 5]}"
        if long_prompt_every and i % long_prompt_every == 1:
            prompt = f"{preamble} {prompt}"
        rows.append({"prompt": prompt, "chosen": "was great and moved me .", "rejected": "was dull and bored me ."})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# 1. -------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": oops\n', r"could not be read as json: .*row 1"),
        ("", r"the file is empty"),
        ("\n\n", r"the dataset is empty \(split 'train' has 0 rows\)"),
    ],
    ids=["broken line", "empty file", "blank lines"],
)
def test_malformed_or_empty_dataset_is_one_line(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "prefs.jsonl"
    path.write_text(content)
    result = run_harness("task=hf_preferences", f"task.path={path}", *SMOKE, f"results_dir={tmp_path / 'results'}")
    assert_one_line_error(result, rf"error: task\.path='{re.escape(str(path))}': {expected}")


# 2. -------------------------------------------------------------------------------------------------------------
def test_missing_chosen_column_is_one_line(tmp_path: Path) -> None:
    rows = [{"prompt": row["prompt"], "good": row["chosen"], "rejected": row["rejected"]} for row in preference_rows(5)]
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    result = run_harness("task=hf_preferences", f"task.path={path}", *SMOKE, f"results_dir={tmp_path / 'results'}")
    assert_one_line_error(
        result,
        rf"error: task\.path='{re.escape(str(path))}': column 'chosen' is missing; the file has "
        r"\['prompt', 'good', 'rejected'\] \(set task\.columns\.chosen=<name>\)",
    )


# 3. -------------------------------------------------------------------------------------------------------------
def test_prompts_longer_than_the_context_warn_and_the_job_completes(tmp_path: Path) -> None:
    """Every other prompt is ~500 tokens; the testbed model's context is 128. GRPO trains without those prompts,
    evaluation samples from their last 128 - 24 tokens, the reward model scores their last 128: one warning each,
    and the job completes (it used to end in an `IndexError` from the position embeddings)."""
    path = write_jsonl(tmp_path / "prefs.jsonl", preference_rows(60, long_prompt_every=2))
    results = tmp_path / "results"
    result = run_harness(
        "task=hf_preferences",
        f"task.path={path}",
        "task.eval_fraction=0.2",
        "task.judge_fraction=0",
        "task.validation_fraction=0",  # the counts below are of every non-evaluation prompt
        "algorithm=grpo",
        *SMOKE,
        f"results_dir={results}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    output = result.stdout + result.stderr
    assert re.search(
        r"WARNING\] - grpo: 24 of 48 prompts do not fit the model's context of 128 tokens beside "
        r"algorithm\.trainer\.max_completion_length=40 \(the longest: prompt \d+, 50\d tokens\); training without them",
        output,
    ), output[-3000:]
    assert re.search(
        r"WARNING\] - generation: 6 of 12 prompts do not fit the model's context of 128 tokens beside "
        r"generation\.max_new_tokens=24 \(the longest: prompt \d+, 50\d tokens\); sampling from their last 104 tokens",
        output,
    )
    assert re.search(
        r"WARNING\] - reward 'learned': texts of up to 5\d\d tokens are longer than the reward model's context "
        r"\(128\); scoring their last 128 tokens",
        output,
    )
    assert status(results) == "complete"


# 4. -------------------------------------------------------------------------------------------------------------
def tiny_reward_model(folder: Path) -> Path:
    from transformers import GPT2Config, GPT2ForSequenceClassification

    from plugins.models.scratch import word_level_tokenizer

    tokenizer = word_level_tokenizer(["a good movie", "a bad movie"], max_length=16)
    config = GPT2Config(vocab_size=len(tokenizer), n_layer=1, n_embd=8, n_head=1, n_positions=16, num_labels=1)
    config.pad_token_id = tokenizer.pad_token_id
    GPT2ForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def nan_reward(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The reward wrapper of `kind`, around a scoring function whose second and third scores are NaN."""
    nan = float("nan")
    if kind == "gold":
        from plugins.rewards.gold import GoldReward

        gold = SimpleNamespace(reward=lambda prompts, completions: [0.5, nan, nan])
        run = SimpleNamespace(task=SimpleNamespace(name="testbed"), gold=lambda: gold)
        return GoldReward().load(run).fn
    if kind == "learned":
        import torch

        from plugins.rewards.learned import RewardModelFn

        score = RewardModelFn(tiny_reward_model(tmp_path / "rm"), "cpu", name="learned")
        good = score.tokenizer.convert_tokens_to_ids("good")

        def model(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
            # row by row (the reward model may see the texts in any order): only "good movie" gets a number
            return SimpleNamespace(logits=torch.where((input_ids == good).any(1, keepdim=True), 0.5, nan))

        monkeypatch.setattr(score, "model", model)
        return score
    from harness.protocols import Reward
    from plugins.algorithms.trl_method import as_trl_reward

    reward_func = as_trl_reward(Reward(name="grpo_judge", fn=lambda p, c: [0.5, nan, nan], is_gold=False))
    return lambda prompts, completions: reward_func(prompts=prompts, completions=completions)


@pytest.mark.parametrize(("kind", "name"), [("gold", "gold"), ("learned", "learned"), ("grpo", "grpo_judge")])
def test_nan_reward_is_one_line_naming_the_reward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, name: str
) -> None:
    fn = nan_reward(kind, tmp_path, monkeypatch)
    with pytest.raises(HarnessError) as error:
        fn(["a", "a", "a"], ["good movie", "bad movie", "movie"])
    assert str(error.value) == (
        f"reward {name!r} returned NaN for 2 of 3 completions in a batch (first: completion 1); "
        "expected a finite score for each"
    )


# 5. -------------------------------------------------------------------------------------------------------------
def test_diverging_training_stops_and_names_the_last_checkpoint(tmp_path: Path, testbed_cache: Path) -> None:
    """SFT at a learning rate of 1e6 turns the weights to NaN after its second step. The stage must fail, not be
    marked complete (so nothing starts from it), and say where its last checkpoint before the divergence is."""
    results = tmp_path / "results"
    result = run_harness(
        "algorithm=sft", *SMOKE, f"results_dir={results}", f"cache_dir={testbed_cache}",
        "sft.trainer.learning_rate=1e6",
        "sft.trainer.save_strategy=steps",
        "sft.trainer.save_steps=2",
    )
    line = assert_one_line_error(
        result,
        r"error: stage sft: training diverged at step \d+ \((grad_norm|loss)=(nan|inf)\); stopped and not marked "
        r"complete; last checkpoint before it: .*/checkpoint-\d+; try a lower learning rate than 1e\+06",
    )
    checkpoint = Path(re.search(r"last checkpoint before it: (\S+);", line).group(1))
    assert checkpoint.is_dir() and checkpoint.parent.parent.parent.name == "sft"
    assert not (checkpoint.parent.parent / "COMPLETE").exists()
    assert status(results) == "failed"


# 6. -------------------------------------------------------------------------------------------------------------
def test_unknown_lm_eval_task_fails_before_training(tmp_path: Path) -> None:
    results = tmp_path / "results"
    result = run_harness("eval=[gold,lm_eval]", "eval.lm_eval.tasks=[no_such_task]", *SMOKE, f"results_dir={results}")
    assert_one_line_error(
        result,
        r"error: eval\.lm_eval\.tasks: 'no_such_task' is not an lm-eval task, group or tag; the testbed's are "
        r"testbed, .* yours go in eval\.lm_eval\.include_path",
    )
    assert not (results / "cache").exists()  # no stage was built, not even the datasets
    assert status(results) == "failed"


# 7. -------------------------------------------------------------------------------------------------------------
def test_wandb_online_without_a_server_logs_offline(
    tmp_path: Path, testbed_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: nothing answers
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef" * 2 + "01234567")
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "3")
    results = tmp_path / "results"
    result = run_harness(
        "algorithm=sft", "debug=smoke", "logger=wandb", "logger.mode=online", f"results_dir={results}",
        f"cache_dir={testbed_cache}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stdout.splitlines() if "logger.mode=online" in line]
    assert len(warnings) == 1, result.stdout[-3000:]
    assert re.search(
        r"WARNING\] - logger\.mode=online: cannot start a W&B run \(.*127\.0\.0\.1:9.*\); logging offline to "
        rf"{re.escape(str(results / 'wandb'))} instead \(upload later with `wandb sync`\)$",
        warnings[0],
    )
    assert status(results) == "complete"
    assert list((results / "wandb").glob("offline-run-*"))
    assert math.isfinite(json.loads(next(results.rglob("result.json")).read_text())["metrics"]["eval/gold/reward"])
