"""The gold-reward testbed as a task: datasets drawn from the review grammar, and its exact judge."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api import HarnessError
from plugins.tasks.grammar import GrammarConfig, ReviewGrammar

# Classes of review openings that `ood=<rule>` holds out of every alignment split, each a structural form of the
# grammar's first clause: rule -> whether an opening's words belong to it.
OOD_RULES: dict[str, Callable[[Sequence[str]], bool]] = {
    "first_person": lambda words: words[0] == "i",  # "i loved the ...", "i did not ...": not "the <noun> ..."
    "negated": lambda words: "not" in words,  # "the plot was not ...", "i did not ..."
}


def opening(prompt: str | Sequence[Mapping[str, str]]) -> str:
    """The review opening a prompt asks to continue: the text, or in conversational form the last user turn."""
    if isinstance(prompt, str):
        return prompt
    return next(str(m["content"]) for m in reversed(prompt) if m["role"] == "user")


def join(prompt: str | Sequence[Mapping[str, str]], completion: str) -> str:
    return f"{opening(prompt)} {completion}".strip()


class GrammarGold:
    """Exact gold reward and grammaticality of prompt + completion, from the grammar's own semantics."""

    def __init__(self, grammar: ReviewGrammar) -> None:
        self.grammar = grammar

    def reward(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float]:
        return [self.grammar.gold_reward(join(p, c)) for p, c in zip(prompts, completions, strict=True)]

    def grammatical(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[bool]:
        return [self.grammar.is_grammatical(join(p, c)) for p, c in zip(prompts, completions, strict=True)]


class Testbed:
    """Movie reviews from a seeded grammar, skewed negative so that alignment has room to act.

    Splits: `pretrain` / `pretrain_heldout` (whole reviews for the base model), `sft` (review openings with
    positive continuations: the stand-in for human demonstrations), `prompts` (openings for RL), and
    `eval_prompts` (held-out openings, drawn from their own random stream), `judge_prompts` (openings no method
    trains on, for a held-out judge's preference pairs), `validation_prompts` (openings for choosing settings:
    equal-budget tuning evaluates its trials on them, never on `eval_prompts`, whose openings they exclude).

    `ood=<rule>` (a key of `OOD_RULES`, e.g. `first_person`): the openings of that class are held out of every split
    alignment trains or is evaluated in distribution on (`sft`, `prompts` and so the preference pairs sampled on
    them, `judge_prompts`, `eval_prompts`), and an `ood_prompts` split holds `num_ood_prompts` of them (Kirk et al.
    2024's out-of-distribution test). Each split redraws an opening of the wrong class from its own stream. The
    pretraining corpus keeps every review: out of distribution means unseen in fine-tuning, as for Kirk et al.'s
    models, pretrained on everything. `ood=None` (the default) draws every split exactly as before.

    `chat=True`: the same data in conversational form, for chat models: each opening is a user message (after a
    system message, with `system_prompt`), each continuation an assistant message. Every split's draws are the
    same in both forms.
    """

    def __init__(
        self,
        name: str = "testbed",
        seed: int = 0,
        grammar: Mapping[str, float] | None = None,
        num_pretrain: int = 40_000,
        num_pretrain_heldout: int = 2_000,
        num_sft: int = 4_000,
        num_prompts: int = 2_000,
        num_eval_prompts: int = 256,
        prompt_min_words: int = 2,
        prompt_max_words: int = 5,
        preference_beta: float = 10.0,
        num_judge_prompts: int = 512,
        chat: bool = False,
        system_prompt: str | None = None,
        ood: str | None = None,
        num_ood_prompts: int = 256,
        num_validation_prompts: int = 128,
    ) -> None:
        if ood is not None and ood not in OOD_RULES:
            expected = f"null or one of {sorted(OOD_RULES)}"
            raise HarnessError(f"task.ood={ood!r}: not a class of openings this testbed holds out; expected {expected}")
        self.name = name
        self.seed = seed
        self.grammar = ReviewGrammar(GrammarConfig(**(grammar or {})))
        self.sizes = {
            "pretrain": num_pretrain,
            "pretrain_heldout": num_pretrain_heldout,
            "sft": num_sft,
            "prompts": num_prompts,
            "eval_prompts": num_eval_prompts,
            "judge_prompts": num_judge_prompts,
            "validation_prompts": num_validation_prompts,
            **({"ood_prompts": num_ood_prompts} if ood is not None else {}),
        }
        self.ood = ood
        self.chat = chat
        self.system_prompt = system_prompt
        self.prompt_words = (prompt_min_words, prompt_max_words)
        self.preference_beta = preference_beta

    def gold(self) -> GrammarGold:
        return GrammarGold(self.grammar)

    def label_pairs(
        self, prompts: Sequence[Any], first: Sequence[str], second: Sequence[str]
    ) -> tuple[list[dict[str, str]], dict[str, float]]:
        """Label two completions per prompt the way a noisy human would: the first is preferred with
        probability sigmoid(beta * (r1 - r2)) under the gold reward r (Bradley-Terry; the DPO paper's IMDb
        setup). Identical pairs carry no preference and are dropped."""
        rng = self._rng("preferences")
        gold = self.gold()
        rows, agree, decided, gaps = [], 0, 0, []
        rewards_1, rewards_2 = gold.reward(prompts, first), gold.reward(prompts, second)
        for prompt, a, b, r_a, r_b in zip(prompts, first, second, rewards_1, rewards_2, strict=True):
            if a == b:
                continue
            p_first = 1.0 / (1.0 + math.exp(-self.preference_beta * (r_a - r_b)))
            first_wins = rng.random() < p_first
            chosen, rejected = (a, b) if first_wins else (b, a)
            rows.append({"prompt": prompt, "chosen": self._reply(chosen), "rejected": self._reply(rejected)})
            if r_a != r_b:
                decided += 1
                agree += first_wins == (r_a > r_b)
            gaps.append(abs(r_a - r_b))
        info = {
            "label_agreement_with_gold": agree / decided if decided else float("nan"),
            "mean_gold_gap": statistics.fmean(gaps) if gaps else float("nan"),
        }
        return rows, info

    def _form(self, prompt: str) -> Any:
        return self._conversation(prompt) if self.chat else prompt

    def _conversation(self, prompt: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return [*system, {"role": "user", "content": prompt}]

    def _reply(self, text: str) -> Any:
        """A completion in the task's form: text that joins onto the opening, or one assistant message."""
        if self.chat:
            return [{"role": "assistant", "content": text.strip()}]
        return " " + text

    def _rng(self, split: str) -> random.Random:
        # One stream per split: growing one split never changes another (eval prompts stay fixed).
        return random.Random(f"{self.seed}/{split}")

    def is_ood(self, opening: str | Sequence[str]) -> bool:
        """Whether an opening (text or words) is of the class `ood` holds out (False with `ood=None`)."""
        words = opening.split() if isinstance(opening, str) else list(opening)
        return self.ood is not None and bool(words) and OOD_RULES[self.ood](words)

    def _prompt(self, rng: random.Random, ood: bool = False) -> list[str]:
        """An opening; with `ood` set, one of its class (`ood=True`) or not (False), redrawn from the same stream."""
        prompt = self.grammar.sample_prompt(rng, *self.prompt_words)
        while self.ood is not None and self.is_ood(prompt) != ood:
            prompt = self.grammar.sample_prompt(rng, *self.prompt_words)
        return prompt

    def _reviews(self, split: str) -> list[list[str]]:
        rng = self._rng(split)
        return [self.grammar.sample(rng) for _ in range(self.sizes[split])]

    def _prompts(self, split: str, excluded: set[str] = frozenset()) -> list[str]:
        """The split's openings from its own stream; one in `excluded` (another split's) is redrawn."""
        rng = self._rng(split)
        ood = split == "ood_prompts"
        drawn = []
        while len(drawn) < self.sizes[split]:
            if (opening := " ".join(self._prompt(rng, ood))) not in excluded:
                drawn.append(opening)
        return drawn

    def build_datasets(self, out_dir: Path) -> dict[str, Any]:
        from datasets import Dataset, DatasetDict

        grammar = self.grammar
        reviews = {split: self._reviews(split) for split in ("pretrain", "pretrain_heldout")}
        sft_rng = self._rng("sft")
        sft = []
        for _ in range(self.sizes["sft"]):
            prompt = self._prompt(sft_rng)
            review = grammar.sample(sft_rng, mood="positive", prefix=prompt)
            sft.append({"prompt": " ".join(prompt), "completion": " ".join(review[len(prompt) :])})
        prompt_splits = ("prompts", "eval_prompts", "judge_prompts", *(("ood_prompts",) if self.ood else ()))
        prompts = {split: self._prompts(split) for split in prompt_splits}
        prompts["validation_prompts"] = self._prompts("validation_prompts", excluded=set(prompts["eval_prompts"]))
        sft_rows = [{"prompt": self._form(r["prompt"]), "completion": self._reply(r["completion"])} for r in sft]
        splits = DatasetDict(
            {
                **{s: Dataset.from_dict({"text": [" ".join(r) for r in rs]}) for s, rs in reviews.items()},
                "sft": Dataset.from_list(sft_rows),
                **{s: Dataset.from_dict({"prompt": [self._form(p) for p in ps]}) for s, ps in prompts.items()},
            }
        )
        splits.save_to_disk(str(out_dir))
        heldout = reviews["pretrain_heldout"]
        return {
            "entropy_per_word": grammar.entropy_per_word(heldout),
            "mean_review_words": statistics.fmean(len(r) for r in heldout),
            "gold_reward_pretrain": statistics.fmean(grammar.gold_reward(r) for r in heldout),
            "gold_reward_sft": statistics.fmean(grammar.gold_reward(join(x["prompt"], x["completion"])) for x in sft),
            **{f"size_{split}": len(rows) for split, rows in splits.items()},
        }
