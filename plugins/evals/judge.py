"""`eval=judge`: win rates against a baseline, judged by something no method optimised.

(a) A held-out reward model (`reward_model:`), trained like `reward=learned` (plugins.rewards.learned
    `train_reward_model`) but on preference pairs no method trains on: `run.preferences(..., purpose="judge")`, the
    task's `judge_preferences` split or, on the testbed, pairs that the base model and the SFT recipe (trained with
    the judge's seed) sample on the task's `judge_prompts`, labelled by the task. It starts from the base model, with
    its own seed: nothing in it depends on the job's training seed or algorithm, so it is one cached `judge_model`
    stage, the same judge for every job of a sweep.
(b) A pairwise LLM judge (`llm:`): any local HF chat model, with a prompt template in the YAML, rendered with the
    judge's own chat template. Its verdict is read off its next-token probabilities of the two answer labels. Each
    pair is judged in both orders; a pair is a win (or a loss) only when both orders agree by more than
    `tie_margin`, else a tie, so a judge that always picks the first slot gives all ties (position bias cancels).

For each judge: the win rate against the baseline (ties count half) with Wilson's 95% interval, and AlpacaEval 2's
length-controlled win rate (Dubois et al. 2024, `length_controlled`). Beside them, the same win rate judged by the
reward the policy optimised (`proxy_rate`, for RL on a learned reward) and, where the task has gold, by the gold
reward (`gold_rate`) and each judge's agreement with gold: the gap between what the optimised reward and a held-out
judge say is reward-model over-optimisation (Gao et al. 2022), per method.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.api import EvalContext, HarnessError, Run, StageOutput, plain
from plugins.evals.win_rate import baseline_completions, pairwise_outcomes, rate_metrics

log = logging.getLogger(__name__)

PLACEHOLDERS = ("{instruction}", "{prompt}", "{response_a}", "{response_b}")


# -- length-controlled win rate (AlpacaEval 2) ------------------------------------------------------------
def length_feature(policy_lengths: Sequence[float], baseline_lengths: Sequence[float]) -> np.ndarray:
    """tanh of the length difference (policy - baseline) over its standard deviation, AlpacaEval 2's length term
    (`np.tanh(std_delta_len)`); all zeros when every difference is the same."""
    difference = np.asarray(policy_lengths, dtype=float) - np.asarray(baseline_lengths, dtype=float)
    scale = difference.std(ddof=1) if len(difference) > 1 else 0.0
    return np.tanh(difference / scale) if scale > 0 else np.zeros_like(difference)


def fit_logistic(
    features: np.ndarray, targets: np.ndarray, l2: float = 1e-3, steps: int = 100
) -> tuple[np.ndarray, bool]:
    """Logistic regression of targets in [0, 1] (soft labels: a tie is 0.5) on `features` (first column the
    intercept) by Newton's method on the mean log-loss plus l2/2 * |w|^2 over every weight but the intercept (the
    ridge keeps a judge that always prefers the longer response from sending the length weight to infinity).
    Returns the weights and whether Newton converged."""
    x, y = np.asarray(features, dtype=float), np.asarray(targets, dtype=float)
    n, k = x.shape
    ridge = np.full(k, l2)
    ridge[0] = 0.0
    weights = np.zeros(k)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(x @ weights)))
        gradient = x.T @ (p - y) / n + ridge * weights
        hessian = (x.T * (p * (1 - p))) @ x / n + np.diag(ridge) + 1e-12 * np.eye(k)
        step = np.linalg.solve(hessian, gradient)
        weights = weights - step
        if np.max(np.abs(step)) < 1e-10:
            return weights, True
    return weights, False


@dataclass
class LengthControlled:
    rate: float  # the predicted win rate with no length difference
    low: float  # bootstrap 95% interval (prompts resampled)
    high: float
    length_coef: float  # the fitted weight of the length term: > 0 the judge prefers the longer response


def length_controlled(
    outcomes: Sequence[float],
    policy_lengths: Sequence[float],
    baseline_lengths: Sequence[float],
    resamples: int = 200,
    seed: int = 0,
) -> LengthControlled:
    """AlpacaEval 2's length-controlled win rate (Dubois et al. 2024): fit the preference for the policy (1, 0.5
    for a tie, 0) as logistic(theta + phi * tanh(length difference / its std)), then predict it with the length
    difference set to zero: logistic(theta). The interval resamples prompts and refits (percentile bootstrap).

    AlpacaEval's third term, an instruction difficulty gamma_x per instruction, is left out: AlpacaEval estimates
    gamma_x once from every model of its leaderboard judged on the same instructions, whereas one job holds a
    single comparison per prompt, where a per-prompt term would absorb each outcome. Nor does it fit the "gamed"
    (verbose / concise) variants of each model that AlpacaEval regularises the length weight with: a small ridge
    stands in for that."""
    y = np.asarray(outcomes, dtype=float)
    length = length_feature(policy_lengths, baseline_lengths)
    x = np.column_stack([np.ones_like(y), length])

    def rate(rows: np.ndarray) -> tuple[float, float]:
        if not np.any(x[rows, 1]):  # no length difference to control for: the raw rate
            return float(y[rows].mean()), 0.0
        weights, _ = fit_logistic(x[rows], y[rows])
        return float(1.0 / (1.0 + math.exp(-weights[0]))), float(weights[1])

    every = np.arange(len(y))
    estimate, coef = rate(every)
    rng = np.random.default_rng(seed)
    draws = [rate(rng.integers(0, len(y), len(y)))[0] for _ in range(resamples)]
    low, high = np.quantile(draws, [0.025, 0.975]) if draws else (math.nan, math.nan)
    return LengthControlled(estimate, float(low), float(high), coef)


def lc_metrics(result: LengthControlled, prefix: str = "") -> dict[str, float]:
    return {
        f"{prefix}lc_rate": result.rate,
        f"{prefix}lc_rate_low": result.low,
        f"{prefix}lc_rate_high": result.high,
        f"{prefix}length_coef": result.length_coef,
    }


# -- both orders --------------------------------------------------------------------------------------------
def both_orders_outcomes(
    policy_first: Sequence[float], policy_second: Sequence[float], tie_margin: float = 0.0
) -> list[float]:
    """Verdicts from a pairwise judge asked twice: `policy_first[i]` is its probability that the policy's response
    is the better one with the policy in the first slot, `policy_second[i]` with the policy in the second. A win
    (1) needs both above 0.5 + tie_margin, a loss (0) both below 0.5 - tie_margin; anything else is a tie (0.5)."""
    outcomes = []
    for first, second in zip(policy_first, policy_second, strict=True):
        if first > 0.5 + tie_margin and second > 0.5 + tie_margin:
            outcomes.append(1.0)
        elif first < 0.5 - tie_margin and second < 0.5 - tie_margin:
            outcomes.append(0.0)
        else:
            outcomes.append(0.5)
    return outcomes


def first_slot_rate(policy_first: Sequence[float], policy_second: Sequence[float]) -> float:
    """How often the judge picks whatever is in the first slot, over both orders (0.5: no position bias)."""
    picks = [p > 0.5 for p in policy_first] + [p < 0.5 for p in policy_second]
    return sum(picks) / len(picks)


def agreement(outcomes: Sequence[float], gold_outcomes: Sequence[float]) -> float:
    """How often a judge's verdict matches gold's, over the prompts gold decides (a judge's tie counts half)."""
    scores = [1.0 - abs(o - g) for o, g in zip(outcomes, gold_outcomes, strict=True) if g != 0.5]
    return sum(scores) / len(scores) if scores else math.nan


# -- (a) the held-out reward model ------------------------------------------------------------------------
class HeldOutRewardModel:
    """A reward model trained on the judge's own pairs, from the base model, with a fixed seed (one per sweep).

    `pairs_from`: the policies that sample its pairs on the task's judge prompts (when the task ships no judge pairs
    of its own): `base_model`, and `sft`, the run's SFT recipe trained with the judge's seed (the SFT stage of the
    jobs with that seed, so usually built already). On the testbed's 512 judge prompts, its agreement with gold on
    ~1,300 SFT-sampled pairs (one judge seed, 8 epochs): 0.61 from the ~440 base-model pairs alone (they teach
    little about the positive reviews aligned policies write), 0.69-0.74 from ~450 SFT pairs alone, 0.78 from both
    pooled (0.68-0.72 with 4, 6 or 12 epochs). The methods' own reward model, on ~1,700 SFT pairs: 0.81."""

    SOURCES = ("base_model", "sft")

    def __init__(
        self,
        trainer: Mapping[str, Any] | None = None,
        eval_fraction: float = 0.1,
        seed: int = 0,
        pairs_from: Sequence[str] = ("base_model", "sft"),
        sft: Any = None,
    ) -> None:
        unknown = [source for source in pairs_from if source not in self.SOURCES]
        if unknown or not pairs_from:
            raise HarnessError(
                f"eval.judge.reward_model.pairs_from={list(pairs_from)!r}: expected a non-empty list of "
                f"{', '.join(self.SOURCES)}"
            )
        if "sft" in pairs_from and sft is None:
            raise HarnessError("eval.judge.reward_model.pairs_from has sft but reward_model.sft is not set (${sft})")
        self.trainer = dict(trainer or {})
        self.eval_fraction = eval_fraction
        self.seed = seed
        self.pairs_from = list(pairs_from)
        self.sft = sft  # the run's SFT recipe (Hydra builds it from `sft: ${sft}`)

    def pairs(self, run: Run) -> list[StageOutput]:
        """The judge's preference stages, one per source (one in all when the task ships its judge pairs)."""

        policies = {
            "base_model": run.base_model,
            # the judge's seed, not the job's: a seed-1 job's judge is the seed-0 jobs' judge
            "sft": lambda: self.sft.stage(run.with_seed(self.seed)),
        }
        stages = [run.preferences(policies[source], purpose="judge") for source in self.pairs_from]
        return list({stage.key: stage for stage in stages}.values())

    def stage(self, run: Run) -> StageOutput:
        from plugins.rewards.learned import train_reward_model

        base = run.base_model()
        pairs = self.pairs(run)
        config = {
            "judge": "held_out_reward_model",
            "trainer": plain(self.trainer),
            "eval_fraction": self.eval_fraction,
            "seed": self.seed,  # the judge's own, never the job's: every job of a sweep shares this stage
            "pairs_from": self.pairs_from,
        }
        return run.stage(
            "judge_model",
            config,
            {"init": base, **{f"pairs_{i}": stage for i, stage in enumerate(pairs)}},
            lambda out: train_reward_model(
                run,
                base.path,
                pairs,
                out,
                trainer=self.trainer,
                eval_fraction=self.eval_fraction,
                seed=self.seed,
                name="judge",
                namespace="judge_model",
            ),
            collective=True,  # a trainer: every process of a multi-process job takes part
        )


# -- (b) the LLM judge --------------------------------------------------------------------------------------
class LLMJudge:
    """A local HF chat model asked which of two responses is better, read off its next-token probabilities."""

    def __init__(
        self,
        name_or_path: str,
        template: str,
        name: str | None = None,
        labels: Sequence[str] = ("A", "B"),
        system: str | None = None,
        answer_prefix: str = "",
        tie_margin: float = 0.0,
        batch_size: int = 8,
    ) -> None:
        missing = [p for p in ("{response_a}", "{response_b}") if p not in template]
        if missing:
            expected = ", ".join(PLACEHOLDERS)
            raise HarnessError(f"eval.judge.llm.template: no {' or '.join(missing)}; expected {expected}")
        if len(labels) != 2 or labels[0] == labels[1]:
            raise HarnessError(f"eval.judge.llm.labels={list(labels)!r}: expected two different answer labels")
        if not 0 <= tie_margin < 0.5:
            raise HarnessError(f"eval.judge.llm.tie_margin={tie_margin}: expected a probability margin in [0, 0.5)")
        self.path = str(name_or_path)
        self.name = name or Path(self.path).name
        self.template = template
        self.labels = tuple(labels)
        self.system = system
        self.answer_prefix = answer_prefix
        self.tie_margin = tie_margin
        self.batch_size = batch_size

    def load(self, device: str) -> tuple[Any, Any]:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not Path(self.path).is_dir():
            raise HarnessError(f"eval.judge.llm.name_or_path={self.path!r}: no such folder; expected a local HF model")
        tokenizer = AutoTokenizer.from_pretrained(self.path)
        if not getattr(tokenizer, "chat_template", None):
            raise HarnessError(f"eval.judge.llm.name_or_path={self.path!r}: its tokenizer has no chat template")
        model = AutoModelForCausalLM.from_pretrained(self.path, use_safetensors=True, dtype="auto").to(device).eval()
        return model, tokenizer

    def render(self, tokenizer: Any, instruction: str, response_a: str, response_b: str) -> str:
        """The judge's prompt: the template filled in (plain replacement, so other braces stay as written), as one
        user turn in the judge's own chat template, ready for its answer."""
        text = self.template
        for placeholder, value in (
            ("{instruction}", instruction),
            ("{prompt}", instruction),
            ("{response_a}", response_a),
            ("{response_b}", response_b),
        ):
            text = text.replace(placeholder, value)
        messages = [{"role": "system", "content": self.system}] if self.system else []
        messages.append({"role": "user", "content": text})
        rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return rendered + self.answer_prefix

    def label_tokens(self, tokenizer: Any) -> list[list[int]]:
        """For each answer label, the first token of each way it may be written (`A`, ` A`)."""
        options = []
        for label in self.labels:
            ids = {tokenizer.encode(form, add_special_tokens=False)[:1][0] for form in (label, " " + label)}
            options.append(sorted(ids))
        if set(options[0]) & set(options[1]):
            raise HarnessError(
                f"eval.judge.llm.labels={list(self.labels)!r}: the judge's tokenizer starts both with the same token"
            )
        return options

    def first_label_probability(self, model: Any, tokenizer: Any, texts: Sequence[str], device: str) -> list[float]:
        """P(first label) / (P(first label) + P(second label)) of the judge's next token after each text."""
        import torch

        from harness.api import context_size

        options = self.label_tokens(tokenizer)
        tokenizer.padding_side = "left"  # the next token's logits sit at the last position of every row
        tokenizer.truncation_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        limit = context_size(model)
        probabilities: list[float] = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                batch = tokenizer(
                    list(texts[start : start + self.batch_size]),
                    return_tensors="pt",
                    padding=True,
                    truncation=limit is not None,
                    max_length=limit,
                    add_special_tokens=False,  # the chat template wrote what the model expects
                ).to(device)
                logits = model(**batch).logits[:, -1].float()
                log_probs = torch.log_softmax(logits, dim=-1)
                first = torch.logsumexp(log_probs[:, options[0]], dim=-1)
                second = torch.logsumexp(log_probs[:, options[1]], dim=-1)
                probabilities += torch.sigmoid(first - second).tolist()
        return probabilities

    def judge(
        self, instructions: Sequence[str], policy: Sequence[str], baseline: Sequence[str], device: str
    ) -> tuple[list[float], list[float]]:
        """For each pair, the judge's probability that the policy's response is better with the policy in the first
        slot, and with the policy in the second."""
        model, tokenizer = self.load(device)
        forward = [self.render(tokenizer, i, p, b) for i, p, b in zip(instructions, policy, baseline, strict=True)]
        backward = [self.render(tokenizer, i, b, p) for i, p, b in zip(instructions, policy, baseline, strict=True)]
        first = self.first_label_probability(model, tokenizer, forward + backward, device)
        n = len(forward)
        return first[:n], [1.0 - p for p in first[n:]]


# -- the suite ------------------------------------------------------------------------------------------------
class JudgeEval:
    def __init__(
        self,
        name: str = "judge",
        baseline: Any = None,
        reward_model: Mapping[str, Any] | None = None,
        llm: Mapping[str, Any] | None = None,
        bootstrap_resamples: int = 200,
    ) -> None:
        if reward_model is None and llm is None:
            raise HarnessError("eval.judge: neither reward_model nor llm is set; expected at least one judge")
        self.name = name
        self.baseline = baseline  # an algorithm (Hydra builds it from `baseline: sft`), as eval.win_rate's
        self.reward_model = HeldOutRewardModel(**reward_model) if reward_model is not None else None
        self.llm = LLMJudge(**llm) if llm is not None else None
        self.bootstrap_resamples = bootstrap_resamples

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        from plugins.rewards.learned import RewardModelFn

        run = context.run
        if run is None:
            raise HarnessError("eval.judge needs the job's run (to train its judge and sample the baseline)")
        baseline = baseline_completions(context, self.baseline, self.name)
        prompts, policy = context.prompts, context.completions
        same = [a == b for a, b in zip(policy, baseline, strict=True)]
        lengths = ([len(c) for c in policy], [len(c) for c in baseline])  # characters, as AlpacaEval counts them
        metrics: dict[str, float] = {}
        gold_outcomes = None
        if context.gold is not None:
            gold = context.gold.reward
            gold_outcomes = pairwise_outcomes(gold(prompts, policy), gold(prompts, baseline), same)
            metrics.update(rate_metrics(gold_outcomes, "gold_"))

        held_out = None
        if self.reward_model is not None:
            stage = self.reward_model.stage(run)
            score = RewardModelFn(stage.path, context.device, name="judge")
            mine, theirs = score(prompts, policy), score(prompts, baseline)
            held_out = pairwise_outcomes(mine, theirs, same)
            context.annotate("judge_score", mine)
            context.annotate("judge_baseline_score", theirs)
            context.annotate("judge_outcome", held_out)
            metrics.update(rate_metrics(held_out))
            metrics.update(lc_metrics(self._length_controlled(held_out, lengths)))
            metrics.update({k: v for k, v in stage.metrics.items() if k in ("accuracy", "gold_accuracy")})
            if gold_outcomes is not None:
                metrics["gold_agreement"] = agreement(held_out, gold_outcomes)

        if context.policy.proxy_reward is not None:  # what the reward the policy optimised says, beside the judges
            proxy = context.policy.proxy_reward
            optimised = pairwise_outcomes(proxy(prompts, policy), proxy(prompts, baseline), same)
            context.annotate("proxy_outcome", optimised)
            metrics.update(rate_metrics(optimised, "proxy_"))
            if held_out is not None:
                metrics["proxy_gap"] = metrics["proxy_rate"] - metrics["rate"]
            if gold_outcomes is not None:
                metrics["proxy_gold_agreement"] = agreement(optimised, gold_outcomes)

        if self.llm is not None:
            metrics.update(self._llm(context, baseline, same, lengths, gold_outcomes))
        # agreement with gold is undefined where gold decides no prompt (a policy against itself): left out
        return {name: value for name, value in metrics.items() if not math.isnan(value)}

    def _length_controlled(self, outcomes: Sequence[float], lengths: tuple[list[int], list[int]]) -> LengthControlled:
        return length_controlled(outcomes, *lengths, resamples=self.bootstrap_resamples)

    def _llm(
        self,
        context: EvalContext,
        baseline: Sequence[str],
        same: Sequence[bool],
        lengths: tuple[list[int], list[int]],
        gold_outcomes: Sequence[float] | None,
    ) -> dict[str, float]:
        assert self.llm is not None and context.run is not None
        instructions = instruction_texts(context.run, context.prompts)
        policy_first, policy_second = self.llm.judge(instructions, context.completions, baseline, context.device)
        outcomes = both_orders_outcomes(policy_first, policy_second, self.llm.tie_margin)
        outcomes = [0.5 if tie else o for o, tie in zip(outcomes, same, strict=True)]  # the same text: no contest
        context.annotate("llm_judge_policy_first", policy_first)
        context.annotate("llm_judge_policy_second", policy_second)
        context.annotate("llm_judge_outcome", outcomes)
        metrics = {
            **rate_metrics(outcomes, "llm_"),
            **lc_metrics(self._length_controlled(outcomes, lengths), "llm_"),
            "llm_first_slot": first_slot_rate(policy_first, policy_second),
        }
        if gold_outcomes is not None:
            metrics["llm_gold_agreement"] = agreement(outcomes, gold_outcomes)
        return metrics


def instruction_texts(run: Any, prompts: Sequence[str]) -> list[str]:
    """What an LLM judge is shown as the instruction: the task's own prompt, not the policy's rendering of it (a
    conversation's last user turn, or the transcript of a longer one); text prompts unchanged."""
    from datasets import load_from_disk

    from harness.api import is_conversation, render_plain

    raw: dict[str, Any] = {}
    split = load_from_disk(str(run.datasets().path)).get("eval_prompts")
    if split is not None and len(split) and is_conversation(split[0]["prompt"]):
        for prompt in split["prompt"]:
            raw.setdefault(run.chat.prompt(prompt), prompt)
    texts = []
    for prompt in prompts:
        messages = raw.get(prompt)
        if messages is None:
            texts.append(prompt.strip())
        elif len(messages) == 1 or (len(messages) == 2 and messages[0]["role"] == "system"):
            texts.append(str(messages[-1]["content"]).strip())
        else:
            texts.append(render_plain(messages, generation_prompt=False))
    return texts
