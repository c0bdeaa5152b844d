"""What the arena shows and what it counts, as rules the server and the report share.

- **Only pairs worth judging.** Two completions that are the same text up to whitespace are never shown: a vote on
  them says nothing about the methods. The report counts them per method pair as "identical outputs" instead (how
  often two methods say the same thing is itself a finding).
- **A vote means a read.** A vote counts only once its pair has been on screen for `Dwell.required_ms`: a base
  (1.5 s: find the two answers, see they differ) plus 10 ms per character of the two completions (100 characters a
  second, a quick skim), at most 6 s. The server measures it from when it first served the presentation; the page
  also reports the time the pair was visible, and a vote short on either is refused.
- **Agreement by design.** A set share (`OVERLAP`) of each rater's votes goes to items another rater has judged,
  until an item has MAX_RATERS raters, so that agreement between raters is measured on a usable number of items.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

OVERLAP = 0.15  # the share of a rater's votes on items another rater judged too
MAX_RATERS = 3  # an item is sent to a second and a third rater, no more
BASE_DWELL_MS = 1500
DWELL_MS_PER_CHARACTER = 10.0
MAX_DWELL_MS = 6000


def plain(text: str) -> str:
    """A completion with its whitespace runs made single spaces (and none at the ends)."""
    return " ".join(text.split())


def same_text(left: str, right: str) -> bool:
    """Whether two completions are identical, or identical up to whitespace: not a pair worth judging."""
    return plain(left) == plain(right)


@dataclass(frozen=True)
class Dwell:
    """How long a pair must be on screen before a vote on it counts (module docstring)."""

    base_ms: int = BASE_DWELL_MS
    per_character_ms: float = DWELL_MS_PER_CHARACTER
    max_ms: int = MAX_DWELL_MS

    @classmethod
    def scaled(cls, base_ms: int) -> Dwell:
        """The default rule scaled to another base: the per-character time and the cap keep their ratio to it (0: no
        dwell at all, for tests and scripted raters)."""
        ratio = base_ms / BASE_DWELL_MS
        return cls(base_ms, DWELL_MS_PER_CHARACTER * ratio, round(MAX_DWELL_MS * ratio))

    def required_ms(self, left: str, right: str) -> int:
        characters = len(plain(left)) + len(plain(right))
        return round(min(self.max_ms, self.base_ms + self.per_character_ms * characters))

    def describe(self) -> str:
        if self.max_ms <= 0:
            return "no minimum time on screen"
        return (
            f"{self.base_ms / 1000:g} s + {self.per_character_ms:g} ms per character of the two completions, "
            f"at most {self.max_ms / 1000:g} s on screen"
        )


def seed_pairs(seeds_a: Iterable[int], seeds_b: Iterable[int]) -> list[tuple[int, int]]:
    """Whose samples two methods are compared on: the same seed for both where they share seeds (policies trained
    on the same data order), otherwise every seed of one against every seed of the other."""
    seeds_a, seeds_b = sorted(seeds_a), sorted(seeds_b)
    common = sorted(set(seeds_a) & set(seeds_b))
    return [(seed, seed) for seed in common] if common else list(itertools.product(seeds_a, seeds_b))


Rows = Mapping[int, Sequence[Mapping[str, Any]]]  # seed -> a job's samples.jsonl rows


@dataclass(frozen=True)
class Identical:
    """Of the samples two methods can be compared on (the same prompt, seeds as `seed_pairs`), how many have the
    same completion up to whitespace."""

    identical: int
    compared: int

    @property
    def share(self) -> float:
        return self.identical / self.compared if self.compared else math.nan


def identical_outputs(rows_a: Rows, rows_b: Rows) -> Identical:
    identical = compared = 0
    for seed_a, seed_b in seed_pairs(rows_a, rows_b):
        for row_a, row_b in zip(rows_a[seed_a], rows_b[seed_b], strict=False):
            if row_a.get("prompt") != row_b.get("prompt"):
                continue  # not the same prompt: nothing to compare
            compared += 1
            identical += same_text(str(row_a.get("completion", "")), str(row_b.get("completion", "")))
    return Identical(identical, compared)


def wants_overlap(shared_votes: int, votes: int, overlap: float) -> bool:
    """Whether a rater's next vote should be on an item another rater judged: while fewer than `overlap` of the rater's
    votes, counting the next one and rounding up, are on shared items. At 0.15 that is the 1st, 7th and 14th of 15
    votes when nothing else is shared: at least 3 shared items of 15."""
    return shared_votes < math.ceil(round(overlap * (votes + 1), 9))
