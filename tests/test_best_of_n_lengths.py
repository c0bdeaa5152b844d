"""best-of-n keeps one of n draws: the length it reports (samples.jsonl's `completion_tokens`, the sample browser's
"length (tokens)") is the kept draw's, while what it cost (result.json's `cost.tokens_generated`) is all n draws'.
On stubs, no model: the arithmetic is the point."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import harness.api
from harness.api import Sampled
from harness.job import as_sampled
from plugins.algorithms.best_of_n import BestOfN

# Two prompts, n = 3 draws each. Draw i of a prompt has length LENGTHS[i] and reward REWARDS[i].
LENGTHS = [9, 40, 12, 30, 5, 7]
REWARDS = [0.9, 0.1, 0.5, 0.2, 0.3, 0.8]


def stub_run() -> Any:
    reward = SimpleNamespace(fn=lambda prompts, completions: REWARDS, metrics={}, is_gold=True)
    return SimpleNamespace(reward=lambda: reward, device="cpu", cfg=None)


def test_the_kept_draws_length_and_every_draws_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prompt a keeps draw 0 (reward 0.9, 9 tokens) of draws costing 9 + 40 + 12 = 61 tokens; prompt b keeps its
    draw 2 (reward 0.8, 7 tokens) of 30 + 5 + 7 = 42. Before, both counts were the 61 and 42."""

    def sample_completions(model: Any, tokenizer: Any, prompts: list[str], settings: Any, device: str) -> Any:
        assert prompts == ["a", "a", "a", "b", "b", "b"]
        return SimpleNamespace(completions=[f"draw{i}" for i in range(6)], lengths=list(LENGTHS))

    monkeypatch.setattr(harness.api, "load_policy", lambda path, device, merge=False: (None, None))
    monkeypatch.setattr(harness.api, "sample_completions", sample_completions)
    init = SimpleNamespace(stage=lambda run: SimpleNamespace(path=Path("sft")))
    policy = BestOfN(init=init, n=3).train(stub_run())

    sampled = policy.sampler(["a", "b"], {}, "cpu")
    assert sampled == Sampled(completions=["draw0", "draw5"], lengths=[9, 7], tokens_generated=[61, 42])
    assert sampled[0] == ["draw0", "draw5"]  # suites that draw their own samples read the completions so


def test_a_plain_pair_is_its_own_cost() -> None:
    """A sampler that returns (completions, lengths), one draw per prompt, generated exactly those tokens."""
    assert as_sampled((["x", "yy"], [1, 2])) == Sampled(["x", "yy"], [1, 2], [1, 2])
    kept = Sampled(["x"], [1], [16])
    assert as_sampled(kept) is kept
