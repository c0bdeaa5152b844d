"""Unit tests of the hedging suite on a hand-made EvalContext: no model, no harness run.

Run by the repository's tests/test_example_plugin.py against the installed package, or here after
`pip install -e examples/harness-example-plugin`: `pytest examples/harness-example-plugin`.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
import yaml
from harness.protocols import EvalContext, EvalSuite, HarnessError, Policy

import harness_example
from harness_example.evals import HedgingEval, words

CONF = Path(harness_example.__file__).parent / "conf"

COMPLETIONS = [
    "the plot was dull but i loved it .",
    "the cast was not good .",
    "nothing beats the butter scene .",
    "Although slow , it moved me .",
]


def context(completions: list[str]) -> EvalContext:
    return EvalContext(
        prompts=[f"prompt {i}" for i in range(len(completions))],
        completions=completions,
        completion_tokens=[len(c.split()) for c in completions],
        policy=Policy(path=Path("policy"), reference_path=None),
        gold=None,
        device="cpu",
        generation={"temperature": 1.0},
    )


def test_words_ignore_case_and_punctuation() -> None:
    assert words("Not bad, but SLOW.") == ["not", "bad", "but", "slow"]
    assert words("i didn't care .") == ["i", "didn't", "care"]


def test_hedge_rate_and_mean_words() -> None:
    """Words per completion (punctuation is not a word): 8, 5, 5, 5. Hedges: "but"; "not"; none ("nothing" and
    "butter" only contain hedge words); "although" (matched whatever its case).
    hedge_rate = 3/4 = 0.75; mean_words = (8 + 5 + 5 + 5) / 4 = 23/4 = 5.75."""
    metrics = HedgingEval().evaluate(context(COMPLETIONS))
    assert metrics == pytest.approx({"hedge_rate": 0.75, "mean_words": 5.75})


def test_each_sample_is_annotated_with_its_hedges(tmp_path: Path) -> None:
    """A sample with two hedges ("not ... but") lists both, in order, and counts once in the rate:
    hedged samples 1 of 2 -> hedge_rate = 0.5. The column lands in samples.jsonl beside the completion."""
    ctx = context(["it was not bad but not good .", "a great movie ."])
    metrics = HedgingEval().evaluate(ctx)
    assert metrics["hedge_rate"] == 0.5
    assert ctx.columns["hedges"] == [["not", "but", "not"], []]
    ctx.write_samples(tmp_path / "samples.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert [row["hedges"] for row in rows] == [["not", "but", "not"], []]


def test_hedge_words_are_configurable() -> None:
    """Only "but" counts (given as "BUT": compared lowercased): 1 of the 4 samples -> hedge_rate = 0.25."""
    ctx = context(COMPLETIONS)
    assert HedgingEval(hedge_words=["BUT"]).evaluate(ctx)["hedge_rate"] == 0.25
    assert ctx.columns["hedges"] == [["but"], [], [], []]


@pytest.mark.parametrize("hedge_words", [[], ["kind of"], ["but,"]])
def test_hedge_words_must_be_single_words(hedge_words: list[str]) -> None:
    with pytest.raises(HarnessError, match=r"eval\.hedging\.hedge_words=.*expected a non-empty list of single words"):
        HedgingEval(hedge_words=hedge_words)


def test_no_samples_no_metrics() -> None:
    assert HedgingEval().evaluate(context([])) == {}


def test_is_an_eval_suite() -> None:
    assert isinstance(HedgingEval(), EvalSuite)


def test_yaml_builds_the_suite_and_declares_metrics_it_reports() -> None:
    """The package's eval/hedging.yaml names this class, and every headline metric it declares is one the suite
    returns (the harness files them under eval/hedging/)."""
    node = yaml.safe_load((CONF / "eval" / "hedging.yaml").read_text())["hedging"]
    module, _, name = node["_target_"].rpartition(".")
    suite = getattr(importlib.import_module(module), name)(name=node["name"], hedge_words=node["hedge_words"])
    metrics = suite.evaluate(context(COMPLETIONS))
    declared = [entry["metric"] for entry in node["headline"]]
    assert declared and set(declared) <= set(metrics)
    assert all(entry.get("better") in ("higher", "lower", None) for entry in node["headline"])
