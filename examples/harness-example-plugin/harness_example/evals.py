"""`eval=[...,hedging]`: how often the policy hedges, and how much it says.

- `hedge_rate`: the fraction of completions that contain at least one hedge word (`hedge_words`, matched as whole
  words, case-insensitive);
- `mean_words`: the mean number of words in a completion.

Each sample gets a `hedges` column in samples.jsonl: the hedge words it contains, in order.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence

from harness.api import EvalContext, HarnessError

WORD = re.compile(r"[\w']+")  # a word: letters, digits and apostrophes; punctuation such as "." is not one


def words(text: str) -> list[str]:
    """`"Not bad, but slow."` -> `["not", "bad", "but", "slow"]`."""
    return WORD.findall(text.lower())


class HedgingEval:
    def __init__(self, name: str = "hedging", hedge_words: Sequence[str] = ("but", "not", "although")) -> None:
        hedges = [str(word).lower() for word in hedge_words]
        if not hedges or any(words(word) != [word] for word in hedges):
            raise HarnessError(
                f"eval.{name}.hedge_words={list(hedge_words)!r}: expected a non-empty list of single words"
            )
        self.name = name
        self.hedge_words = frozenset(hedges)

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        split = [words(completion) for completion in context.completions]
        hedges = [[word for word in sample if word in self.hedge_words] for sample in split]
        context.annotate("hedges", hedges)
        if not split:
            return {}
        return {
            "hedge_rate": statistics.fmean(float(bool(found)) for found in hedges),
            "mean_words": statistics.fmean(len(sample) for sample in split),
        }
