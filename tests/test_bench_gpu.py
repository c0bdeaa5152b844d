"""The GPU check (bench/gpu.py) without a GPU: the one line it prints on a machine without CUDA, and its whole code
path on CPU with a tiny Qwen2 (`--device cpu --tiny`): every cell measured, its tokens counted exactly.

No timing is asserted: on a shared CPU the tiny numbers are noise. The token counts are not: a word is a token, so a
tiny SFT sequence is 4 + 16 prompt words and 4 + 16 completion words (8 and 2 tokens of ChatML around them) = 42.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.gpu import NO_DEVICE, TINY, StepClock, make_model, make_words, with_ratios  # noqa: E402

# (prompt words + 8) + (completion words + 2) tokens a sequence, batch_size sequences a step; DPO: a pair each
SFT_STEP_TOKENS = TINY.batch_size * (TINY.prompt_words + 8 + TINY.completion_words + 2)
STEP_TOKENS = {"sft": SFT_STEP_TOKENS, "dpo": 2 * SFT_STEP_TOKENS}


def bench_gpu(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bench", "gpu", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`python -m bench gpu --device cpu --tiny --methods sft,dpo`, run once: its JSON, Markdown and stdout."""
    out = tmp_path_factory.mktemp("bench-gpu")
    done = bench_gpu("--device", "cpu", "--tiny", "--methods", "sft,dpo", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        "result": json.loads((out / "gpu-tiny.json").read_text()),
        "markdown": (out / "gpu-tiny.md").read_text(),
        "stdout": done.stdout,
    }


def cells(result: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["method"], r["mode"], r["side"]): r for r in result["rows"]}


def test_without_cuda_it_says_so_in_one_line_and_succeeds() -> None:
    done = bench_gpu()
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines() == [NO_DEVICE]


def test_full_fine_tuning_is_measured_on_both_sides_with_every_token_counted(tiny: dict[str, Any]) -> None:
    rows = cells(tiny["result"])
    for method in ("sft", "dpo"):
        for side in ("harness", "plain TRL"):
            row = rows[(method, "full", side)]
            assert "error" not in row, row
            assert row["steps"] == TINY.measured_steps  # the warm-up step is left out
            assert row["steps_per_s"] > 0 and row["peak_gib"] > 0
            assert row["tokens_per_s"] / row["steps_per_s"] == pytest.approx(STEP_TOKENS[method])
        harness, plain = rows[(method, "full", "harness")], rows[(method, "full", "plain TRL")]
        assert harness["speed_ratio"] == pytest.approx(harness["steps_per_s"] / plain["steps_per_s"])
        assert f"| {method} | full | harness | {harness['steps_per_s']:.2f} |" in tiny["markdown"]
    assert tiny["markdown"] in tiny["stdout"]  # the table is printed too


def test_lora_is_measured_by_the_plain_trl_script(tiny: dict[str, Any]) -> None:
    pytest.importorskip("peft")
    rows = cells(tiny["result"])
    for method in ("sft", "dpo"):
        row = rows[(method, "lora", "plain TRL")]
        assert "error" not in row, row
        assert row["steps_per_s"] > 0
        assert row["tokens_per_s"] / row["steps_per_s"] == pytest.approx(STEP_TOKENS[method])


def test_lora_is_measured_through_the_harness(tiny: dict[str, Any]) -> None:
    pytest.importorskip("peft")
    rows = cells(tiny["result"])
    for method in ("sft", "dpo"):
        row = rows[(method, "lora", "harness")]
        assert row["steps_per_s"] > 0
        assert "error" not in row, row["error"]


def test_rates_leave_out_the_warm_up_steps() -> None:
    """Stamps (time, tokens seen) at 10, 11, 12, 14 s with 100, 200, 300, 500 tokens and 1 warm-up step: the measured
    span runs from the end of step 1 (10 s) to the end of step 4 (14 s), 3 steps and 400 tokens in 4 s."""
    clock = StepClock("cpu", warmup=1)
    clock.stamps = [(10.0, 100), (11.0, 200), (12.0, 300), (14.0, 500)]
    assert clock.numbers() == {}  # training did not finish: no peak, no numbers
    clock.memory = {"peak_gib": 2.0, "resident_before_gib": 1.0}
    numbers = clock.numbers()
    assert numbers["steps"] == 3 and numbers["seconds"] == 4.0
    assert numbers["steps_per_s"] == 0.75 and numbers["tokens_per_s"] == 100.0


def test_ratios_pair_each_harness_row_with_the_plain_run_of_its_cell() -> None:
    rows = [
        {"method": "sft", "mode": "full", "side": "harness", "steps_per_s": 3.0, "peak_gib": 6.0},
        {"method": "sft", "mode": "full", "side": "plain TRL", "steps_per_s": 4.0, "peak_gib": 5.0},
        {"method": "sft", "mode": "lora", "side": "harness", "steps_per_s": 2.0, "peak_gib": 3.0},
        {"method": "sft", "mode": "lora", "side": "plain TRL", "error": "OutOfMemoryError: ..."},
    ]
    full, _, lora, _ = with_ratios(rows)
    assert full["speed_ratio"] == 0.75 and full["peak_memory_ratio"] == 1.2
    assert "speed_ratio" not in lora  # its plain side failed: nothing to compare with


def test_the_tokenizer_comes_back_from_the_model_folder_a_token_a_word(tmp_path: Path) -> None:
    """transformers loads any tokenizer saved beside a Qwen2 model as a Qwen2Tokenizer (byte-level BPE): ours must
    survive that, each word one token, ChatML around a message."""
    from transformers import AutoTokenizer

    make_model(tmp_path, TINY, "cpu")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    words = make_words(TINY.words)[:5]
    prompt = [{"role": "user", "content": " ".join(words)}]
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)["input_ids"]
    assert len(ids) == len(words) + 8  # <|im_start|> user \n ... <|im_end|> \n <|im_start|> assistant \n
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
