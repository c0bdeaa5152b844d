"""Conversations end to end: a chat model brought from outside, its template, its end-of-turn token, and a sweep of
methods over a conversational preference file (UltraFeedback's schema) with LoRA and a held-out judge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chat_models import SYSTEM, conversations, make_llama_chat, write_conversations
from conftest import run_harness

from harness.chat import ChatFormat, end_of_turn_token, render_plain, use_end_of_turn_as_eos
from harness.errors import HarnessError

MARKERS = ("<|im_start|>", "<|im_end|>", "<s>", "</s>", "\nuser\n", "\nassistant\n", "Human:", "Assistant:")


@pytest.fixture(scope="module")
def foreign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A chat model folder and a conversational preference file, both made outside the harness."""
    root = tmp_path_factory.mktemp("foreign")
    rows = conversations(240)
    return make_llama_chat(root / "model", rows, steps=100), write_conversations(root / "prefs.jsonl", rows)


@pytest.fixture(scope="module")
def tokenizer(foreign: tuple[Path, Path]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(foreign[0])


# ------------------------------------------------------------------------------------------ rendering
def test_end_of_turn_token_is_read_from_the_template(tokenizer: Any) -> None:
    assert tokenizer.eos_token == "</s>"  # the model's own EOS is not what ends a turn
    assert end_of_turn_token(tokenizer) == "<|im_end|>"


def test_end_of_turn_becomes_the_eos_and_the_old_eos_pads(foreign: tuple[Path, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(foreign[0])
    model = AutoModelForCausalLM.from_pretrained(foreign[0])
    assert use_end_of_turn_as_eos(tokenizer, model) == "<|im_end|>"
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_token_id == end and model.generation_config.eos_token_id == end
    assert tokenizer.pad_token == "</s>"


def test_prompts_render_with_the_template_and_one_bos(tokenizer: Any) -> None:
    chat = ChatFormat(tokenizer)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "the plot was"}]
    text = chat.prompt(messages)
    turns = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\nthe plot was<|im_end|>\n"
    assert text == turns + "<|im_start|>assistant\n"
    ids = tokenizer(text)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1  # the template's <s> is dropped: the tokenizer adds its own
    assert chat.completion(messages, [{"role": "assistant", "content": " great ."}]) == "great ."


def test_text_stays_text_and_models_without_a_template_get_a_transcript(tokenizer: Any) -> None:
    from transformers import AutoTokenizer

    chat = ChatFormat(tokenizer)
    assert chat.prompt("the plot was") == "the plot was"
    assert chat.completion("the plot was", "great .") == " great ."
    plain = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None
    messages = [{"role": "user", "content": "the plot was"}]
    assert ChatFormat(plain).prompt(messages) == "Human: the plot was\n\nAssistant:" == render_plain(messages)
    assert ChatFormat(plain).completion(messages, [{"role": "assistant", "content": "great ."}]) == " great ."


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ([{"role": "narrator", "content": "x"}], "prompt[0].role='narrator': expected one of system, user, assistant"),
        ([{"role": "user", "content": 3}], "prompt[0].content='3': expected text"),
        ([{"role": "user"}], "expected a message {role, content}"),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "the last message is the assist"),
        ([], "expected text or a non-empty list of messages"),
    ],
)
def test_bad_messages_are_one_line(tokenizer: Any, prompt: Any, message: str) -> None:
    with pytest.raises(HarnessError, match=None) as error:
        ChatFormat(tokenizer).prompt(prompt)
    assert message in str(error.value) and "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def sweep(foreign: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, prefs = foreign
    results = tmp_path_factory.mktemp("results")
    done = run_harness(
        "-m",
        "model=hf",
        f"model.name_or_path={model}",
        "task=hf_preferences",
        f"task.path={prefs}",
        "algorithm=sft,dpo,kto,ppo,grpo,best_of_n",
        "peft=lora",
        "eval=[judge,diversity]",
        "debug=smoke",
        "logger=none",
        f"results_dir={results}",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return results


def jobs(results: Path) -> dict[str, Path]:
    return {json.loads(p.read_text())["algorithm"]: p.parent for p in results.glob("sweeps/*/*/*/result.json")}


def test_every_method_completes_on_the_chat_model(sweep: Path) -> None:
    found = jobs(sweep)
    assert sorted(found) == sorted(["sft", "dpo", "kto", "ppo", "grpo", "best_of_n"])
    for folder in found.values():
        result = json.loads((folder / "result.json").read_text())
        assert result["status"] == "complete", result.get("error")


def test_samples_are_rendered_by_the_template_and_end_at_the_end_of_turn(sweep: Path) -> None:
    for algorithm, folder in jobs(sweep).items():
        rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        assert rows, algorithm
        for row in rows:
            assert row["prompt"].startswith("<|im_start|>"), (algorithm, row["prompt"][:80])
            assert row["prompt"].endswith("<|im_end|>\n<|im_start|>assistant\n"), (algorithm, row["prompt"][-80:])
            assert not any(marker in row["completion"] for marker in MARKERS), (algorithm, row["completion"])
        # replies stop at the end-of-turn token: most end before the token limit
        limit = json.loads((folder / "result.json").read_text())["config"]["generation"]["max_new_tokens"]
        ended = [row["completion_tokens"] < limit for row in rows if algorithm != "best_of_n"]
        assert algorithm == "best_of_n" or sum(ended) >= len(ended) / 2, (algorithm, ended)


def test_lora_stages_hold_adapters_and_the_judge_is_held_out(sweep: Path) -> None:
    for algorithm, folder in jobs(sweep).items():
        result = json.loads((folder / "result.json").read_text())
        assert 0 <= result["metrics"]["eval/judge/rate"] <= 1, algorithm
        assert "judge_model" in result["stages"], algorithm  # one judge for every job: cached, built by the first
        if algorithm == "best_of_n":
            continue
        stage = Path(result["stages"][algorithm]["path"])
        assert (stage / "adapter_model.safetensors").exists() and not (stage / "model.safetensors").exists()
        trainable, total = result["cost"]["trainable_parameters"][algorithm]
        assert 0 < trainable < 0.25 * total, (algorithm, trainable, total)
