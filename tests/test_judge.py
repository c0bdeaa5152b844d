"""`eval=judge`: the statistics on known answers (Wilson interval, AlpacaEval 2's length-controlled win rate, the
both-orders verdict), rigged judges, one shared baseline sample, and a smoke sweep with the held-out reward model
and a tiny local LLM judge whose numbers land in result.json and comparison.md with their judges named."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import run_harness

from harness.protocols import EvalContext, Policy
from harness.results import read_results
from plugins.evals.judge import (
    HeldOutRewardModel,
    LLMJudge,
    both_orders_outcomes,
    first_slot_rate,
    length_controlled,
    length_feature,
)
from plugins.evals.win_rate import baseline_completions, pairwise_outcomes, rate_metrics, wilson_interval

Z2 = 1.959963984540054**2  # 3.841459


# -- statistics ---------------------------------------------------------------------------------------------
def test_wilson_interval_of_known_values() -> None:
    """rate 0.5 of 100: centre (0.5 + z²/200) / (1 + z²/100) = 0.5; half-width z / (1 + z²/100) * sqrt(0.25/100 +
    z²/40000) = 1.959964 / 1.038415 * 0.0509513 = 0.096168, so [0.403832, 0.596168].
    rate 1 of 10: the upper bound is 1, the lower n / (n + z²) = 10 / 13.841459 = 0.722467 (inside [0, 1], where
    1 ± z·se would give [1, 1])."""
    low, high = wilson_interval(0.5, 100)
    assert (low, high) == (pytest.approx(0.403832, abs=1e-6), pytest.approx(0.596168, abs=1e-6))
    low, high = wilson_interval(1.0, 10)
    assert (low, high) == (pytest.approx(10 / (10 + Z2)), pytest.approx(1.0))
    assert wilson_interval(0.0, 10) == (0.0, pytest.approx(Z2 / (10 + Z2)))


def test_ties_count_half_and_identical_texts_tie() -> None:
    """Scores 3 vs 1 (win), 2 vs 2 (tie), 0 vs 5 (loss), and 1.0000001 vs 1.0 on the same text (a batched model's
    float noise: a tie): rate (1 + 0.5 + 0 + 0.5) / 4 = 0.5, half the prompts ties."""
    outcomes = pairwise_outcomes([3, 2, 0, 1.0000001], [1, 2, 5, 1.0], same=[False, False, False, True])
    assert outcomes == [1.0, 0.5, 0.0, 0.5]
    metrics = rate_metrics(outcomes)
    assert (metrics["rate"], metrics["ties"]) == (0.5, 0.5)
    assert 0 <= metrics["rate_low"] < 0.5 < metrics["rate_high"] <= 1


def test_length_feature_is_tanh_of_the_standardised_difference() -> None:
    """Differences 2, 0, -2: sample std 2, so tanh(1), tanh(0), tanh(-1); equal differences carry no signal."""
    assert length_feature([4, 3, 1], [2, 3, 3]) == pytest.approx([math.tanh(1), 0.0, math.tanh(-1)])
    assert not length_feature([5, 6], [4, 5]).any()


def _lengths(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Baseline lengths 10-59 characters; the policy is 8 characters longer on average (std 15)."""
    rng = np.random.default_rng(seed)
    baseline = rng.integers(10, 60, n)
    return baseline + rng.normal(8, 15, n).round().astype(int), baseline


def test_length_controlled_win_rate_removes_a_length_bias() -> None:
    """A judge with no preference but for length, P(policy wins) = σ(2 tanh(Δ / std Δ)), scores a policy that is
    longer on average well above 0.5 raw; the GLM's prediction at Δ = 0 is σ(θ) with θ = 0: 0.5."""
    policy, baseline = _lengths(4000)
    rng = np.random.default_rng(1)
    outcomes = (rng.random(4000) < 1 / (1 + np.exp(-2 * length_feature(policy, baseline)))).astype(float)
    assert outcomes.mean() > 0.6
    result = length_controlled(outcomes, policy, baseline, resamples=50)
    assert result.rate == pytest.approx(0.5, abs=0.03)
    assert result.length_coef == pytest.approx(2.0, abs=0.3)
    assert 0 <= result.low < 0.5 < result.high <= 1


def test_length_controlled_win_rate_keeps_a_real_preference() -> None:
    """No length effect, a policy better by θ = 1: raw and LC both near σ(1) = 0.731."""
    policy, baseline = _lengths(4000)
    outcomes = (np.random.default_rng(2).random(4000) < 1 / (1 + math.exp(-1))).astype(float)
    result = length_controlled(outcomes, policy, baseline, resamples=20)
    assert result.rate == pytest.approx(1 / (1 + math.exp(-1)), abs=0.02)
    assert result.rate == pytest.approx(outcomes.mean(), abs=0.01)


def test_both_orders_need_to_agree_beyond_the_margin() -> None:
    """(P(policy better) with the policy first, with it second): (0.9, 0.8) win, (0.2, 0.1) loss, (0.9, 0.1) the
    slot decided it: tie, (0.55, 0.58) agree but within a 0.1 margin: tie."""
    first, second = [0.9, 0.2, 0.9, 0.55], [0.8, 0.1, 0.1, 0.58]
    assert both_orders_outcomes(first, second, tie_margin=0.1) == [1.0, 0.0, 0.5, 0.5]
    assert both_orders_outcomes(first, second, tie_margin=0.0) == [1.0, 0.0, 0.5, 1.0]
    assert first_slot_rate(first, second) == 5 / 8  # first slot picked: 0.9, 0.9, 0.55, 0.58; and 0.1, 0.1 second


# -- rigged judges through the LLM judge's own path ---------------------------------------------------------
class _TemplateOnly:
    """A tokenizer whose chat template is the user message itself, so a rigged judge reads the filled template."""

    def apply_chat_template(self, messages, add_generation_prompt: bool, tokenize: bool) -> str:
        assert add_generation_prompt and not tokenize
        return messages[-1]["content"]


def _rigged(prefer) -> LLMJudge:
    """An LLM judge whose P(first label) is `prefer(response_a, response_b)` (template: instruction|a|b)."""
    judge = LLMJudge(name_or_path="rigged", template="{instruction}|{response_a}|{response_b}", tie_margin=0.1)
    judge.load = lambda device: (None, _TemplateOnly())
    judge.first_label_probability = lambda model, tokenizer, texts, device: [
        prefer(*text.split("|")[1:]) for text in texts
    ]
    return judge


def test_a_judge_that_always_picks_the_first_slot_gives_all_ties() -> None:
    judge = _rigged(lambda a, b: 0.9)
    first, second = judge.judge(["x"] * 50, [f"policy {i}" for i in range(50)], ["base"] * 50, "cpu")
    outcomes = both_orders_outcomes(first, second, judge.tie_margin)
    assert outcomes == [0.5] * 50 and rate_metrics(outcomes)["rate"] == 0.5
    assert first_slot_rate(first, second) == 1.0  # its position bias, measured


def test_a_judge_that_prefers_longer_responses_inflates_raw_not_length_controlled() -> None:
    """Every verdict is 'the longer one' (consistent in both orders): the raw win rate of a policy that is longer
    on average is far above 0.5; controlled for length, it is about 0.5."""
    policy_lengths, baseline_lengths = _lengths(400)
    policy = ["x" * int(max(n, 1)) for n in policy_lengths]
    baseline = ["x" * int(n) for n in baseline_lengths]
    judge = _rigged(lambda a, b: 1 / (1 + math.exp(-(len(a) - len(b)) / 3)))
    first, second = judge.judge([""] * 400, policy, baseline, "cpu")
    outcomes = both_orders_outcomes(first, second, judge.tie_margin)
    lengths = ([len(c) for c in policy], [len(c) for c in baseline])
    assert rate_metrics(outcomes)["rate"] > 0.65
    assert length_controlled(outcomes, *lengths, resamples=20).rate == pytest.approx(0.5, abs=0.05)


# -- the baseline is sampled once per job -------------------------------------------------------------------
def test_win_rate_and_judge_share_the_baseline_samples() -> None:
    calls = []

    def sampler(prompts, settings, device):
        calls.append(list(prompts))
        return [f"baseline {p}" for p in prompts], [1] * len(prompts)

    baseline = SimpleNamespace(name="sft", train=lambda run: Policy(Path("sft"), None, sampler=sampler))
    prompts = ["a", "b"]
    context = EvalContext(prompts, ["x", "y"], [1, 1], Policy(Path("p"), None), None, "cpu", {}, run=object())
    first = baseline_completions(context, baseline, "win_rate")
    assert baseline_completions(context, baseline, "judge") == first == ["baseline a", "baseline b"]
    assert len(calls) == 1
    assert context.columns["baseline_completion"] == first


def test_the_held_out_judge_is_the_same_stage_for_every_training_seed() -> None:
    """Its stage's name, config and inputs are what the cache key is made of: none depends on the job's seed. Its
    pairs come from the base model and from the SFT recipe trained with the judge's own seed (11 here)."""
    sft = SimpleNamespace(stage=lambda run: SimpleNamespace(key=f"sft-seed{run.seed}"))

    def stage_of(seed: int) -> tuple:
        seen = {}
        base = SimpleNamespace(key="base", path=Path("base"))
        run = SimpleNamespace(
            seed=seed,
            with_seed=lambda other: SimpleNamespace(seed=other),
            base_model=lambda: base,
            preferences=lambda policy, purpose: SimpleNamespace(key=f"pairs-from-{policy().key}-{purpose}"),
            stage=lambda name, config, inputs, build, collective: seen.update(
                name=name, config=config, inputs={k: v.key for k, v in inputs.items()}
            ),
        )
        HeldOutRewardModel(trainer={"max_steps": 3}, seed=11, sft=sft).stage(run)
        return seen["name"], json.dumps(seen["config"], sort_keys=True), seen["inputs"]

    assert stage_of(0) == stage_of(5)
    name, config, inputs = stage_of(0)
    assert name == "judge_model" and json.loads(config)["seed"] == 11
    assert inputs == {"init": "base", "pairs_0": "pairs-from-base-judge", "pairs_1": "pairs-from-sft-seed11-judge"}


# -- a smoke sweep: held-out reward model and a tiny LLM judge ------------------------------------------------
def tiny_chat_judge(folder: Path) -> Path:
    """A random-init Qwen2 chat model (ChatML template) with a word-level tokenizer: mechanics, not judgement."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from plugins.models.scratch import word_level_tokenizer

    tokenizer = word_level_tokenizer(["A B which is better the a movie was great bad ."], max_length=512)
    tokenizer.add_tokens(["<|im_start|>", "<|im_end|>"], special_tokens=True)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("judge")
    judge = tiny_chat_judge(root / "tiny_judge")
    template = "which is better ? {instruction} A {response_a} B {response_b}"
    result = run_harness(
        "-m",
        "algorithm=sft,best_of_n",
        "seed=0",
        "debug=smoke",
        "reward=learned",
        "eval=[gold,judge,win_rate]",
        f"eval.judge.llm={{name_or_path:'{judge}',name:tiny-judge,template:'{template}',tie_margin:0.0}}",
        "logger=none",
        f"results_dir={root}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = {r["algorithm"]: r for r in read_results(root / "sweeps")}
    return results, result.stdout


def test_judge_metrics_land_in_result_json(sweep) -> None:
    results, _ = sweep
    for algorithm, result in results.items():
        metrics = {k.removeprefix("eval/judge/"): v for k, v in result["metrics"].items() if "/judge/" in k}
        for name in ("rate", "lc_rate", "gold_rate", "llm_rate", "llm_lc_rate"):
            assert 0 <= metrics[f"{name}_low"] <= metrics[name] <= metrics[f"{name}_high"] <= 1, (algorithm, name)
        for name in ("accuracy", "gold_accuracy", "llm_first_slot", "llm_ties"):
            assert 0 <= metrics[name] <= 1, (algorithm, name)
        assert result["metrics"]["eval/win_rate/judged_by_gold"] == 1.0
        assert result["metrics"]["eval/win_rate/judged_by_optimised_reward"] == 0.0  # gold judged, not the RM
    sft, best_of_n = results["sft"]["metrics"], results["best_of_n"]["metrics"]
    # SFT against itself: every prompt the same text, a tie whoever judges
    assert sft["eval/judge/rate"] == sft["eval/judge/llm_rate"] == sft["eval/judge/gold_rate"] == 0.5
    # best-of-n optimised the training RM: judged by it as well, and the gap to the held-out judge reported
    assert "eval/judge/proxy_rate" not in sft
    assert "eval/judge/gold_agreement" not in sft  # gold decides no prompt between two identical samples
    assert 0 <= best_of_n["eval/judge/gold_agreement"] <= 1
    assert best_of_n["eval/judge/proxy_gap"] == pytest.approx(
        best_of_n["eval/judge/proxy_rate"] - best_of_n["eval/judge/rate"]
    )
    assert best_of_n["eval/judge/gold_rate"] == best_of_n["eval/win_rate/rate"]  # one baseline sample, one gold
    # one judge for the sweep: built by the first job, reused by the next
    stages = [results[a]["stages"]["judge_model"] for a in ("sft", "best_of_n")]
    assert stages[0]["key"] == stages[1]["key"] and [s["built_now"] for s in stages] == [True, False]


def test_llm_judge_runs_both_orders_and_records_its_verdicts(sweep) -> None:
    results, _ = sweep
    rows = [json.loads(line) for line in (Path(results["best_of_n"]["dir"]) / "samples.jsonl").read_text().splitlines()]
    for row in rows:
        first, second = row["llm_judge_policy_first"], row["llm_judge_policy_second"]
        assert 0 < first < 1 and 0 < second < 1
        (verdict,) = both_orders_outcomes([first], [second])
        assert row["llm_judge_outcome"] == (0.5 if row["completion"] == row["baseline_completion"] else verdict)
        assert row["judge_outcome"] in (0.0, 0.5, 1.0)
    outcomes = [row["llm_judge_outcome"] for row in rows]
    assert results["best_of_n"]["metrics"]["eval/judge/llm_rate"] == pytest.approx(sum(outcomes) / len(outcomes))


def test_comparison_names_every_judge(sweep) -> None:
    results, _ = sweep
    markdown = (Path(results["sft"]["dir"]).parent / "comparison.md").read_text()
    header = markdown.splitlines()[2]
    for label in (
        "win rate (judge: gold)",  # eval=win_rate judged by gold: the report names it from judged_by_gold
        "win rate (judge: held-out RM)",
        "LC win rate (judge: held-out RM)",
        "win rate (judge: the reward it optimised)",
        "win rate (judge: tiny-judge)",
        "LC win rate (judge: tiny-judge)",
    ):
        assert f"| {label} |" in header, label
    assert "### Judges against gold reward" in markdown
    assert "best_of_n: win rate judged by the reward it optimised" in markdown  # the over-optimisation gap
    assert "Spearman ρ with gold reward undefined (needs 3 groups)" in markdown  # two methods: no ranking to check
