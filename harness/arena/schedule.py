"""What the arena shows a rater next, and what it takes for a vote to count (the rules: harness.arena.rules).

An item is one prompt, one method pair and whose samples it shows (a seed of each); the items of a sweep are every
such combination whose two completions differ (identical ones are never shown). For each rater:

- one open presentation at a time: asking for the next pair while one is open (not voted on, still valid) returns
  it again, so reloading the page, or a script asking in a loop, writes no new row;
- a set share of the rater's votes (`overlap`) goes to an item that another rater judged and fewer than MAX_RATERS
  have: the items most raters already judged first, to finish a third rater's set;
- the rest go to even coverage: the method pair with the fewest votes, then its item with the fewest raters (none if
  any is left), at random among equals;
- one vote per prompt and pair, whatever the seeds shown.

Blind: a presentation is a random id whose methods and sides only the database knows; the side a method appears on
is drawn from the system's random source, so it cannot be predicted.
"""

from __future__ import annotations

import itertools
import random
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.arena.rules import MAX_RATERS, OVERLAP, Dwell, same_text, seed_pairs, wants_overlap
from harness.arena.store import Dwelled, Presentation, Rejected, Store
from harness.errors import HarnessError
from harness.results import SAMPLES_FILE

RATER_MAX = 64  # characters in a rater's name
LOCKS = 64  # a rater's requests are issued one at a time (a lock per hash bucket of rater names)


# -- the sweep's samples ------------------------------------------------------------------------------------------
@dataclass
class Method:
    """One comparison group of the sweep (a method), with each complete seed's samples."""

    label: str  # the report's group label
    samples: dict[int, list[dict[str, Any]]]  # seed -> rows of that job's samples.jsonl


def load_methods(sweep_dir: Path) -> dict[str, Method]:
    """Every group of the sweep with at least one complete job that wrote samples, by its report label."""
    from harness.report.aggregate import load_sweep
    from harness.report.samples import job_samples, prompt_text

    methods: dict[str, Method] = {}
    for job in job_samples(load_sweep(sweep_dir).groups)[0]:
        method = methods.setdefault(job.method, Method(job.method, {}))
        # a seed that is not a number (hand-made folders) is numbered in order of appearance
        seed = int(job.seed) if job.seed.lstrip("-").isdigit() else len(method.samples)
        method.samples[seed] = [
            {"prompt": prompt_text(row.get("prompt")), "completion": prompt_text(row.get("completion"))}
            for row in job.rows
        ]
    return methods


def shared_prompts(methods: dict[str, Method]) -> dict[int, str]:
    """The prompt indices at which every job shows the same prompt (a sweep's jobs share their eval prompts; an index
    where they do not cannot be compared)."""
    jobs = [rows for method in methods.values() for rows in method.samples.values()]
    length = min(len(rows) for rows in jobs)
    return {
        index: jobs[0][index]["prompt"]
        for index in range(length)
        if all(rows[index]["prompt"] == jobs[0][index]["prompt"] for rows in jobs)
    }


# -- items and who judged them ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    """One thing to judge: a prompt, two methods (canonical order) and the seeds whose samples are shown."""

    prompt_index: int
    method_a: str
    method_b: str
    seed_a: int
    seed_b: int

    @property
    def pair(self) -> tuple[str, str]:
        return self.method_a, self.method_b

    @property
    def question(self) -> tuple[int, str, str]:
        """What a rater answers once: this prompt for this pair, whatever the seeds."""
        return self.prompt_index, self.method_a, self.method_b


@dataclass
class Tally:
    """The votes so far, as the scheduler reads them for one rater."""

    voted: set[tuple[int, str, str]] = field(default_factory=set)  # this rater's questions (Item.question)
    raters: dict[Item, set[str]] = field(default_factory=lambda: defaultdict(set))  # who judged each item
    pair_votes: Counter[tuple[str, str]] = field(default_factory=Counter)
    shared: int = 0  # this rater's votes on items another rater judged too

    @classmethod
    def of(cls, rows: Iterable[tuple[str, int, str, str, int, int]], rater: str) -> Tally:
        tally, mine = cls(), []
        for who, prompt_index, method_a, method_b, seed_a, seed_b in rows:
            item = Item(prompt_index, method_a, method_b, seed_a, seed_b)
            tally.raters[item].add(who)
            tally.pair_votes[item.pair] += 1
            if who == rater:
                tally.voted.add(item.question)
                mine.append(item)
        tally.shared = sum(len(tally.raters[item]) >= 2 for item in mine)
        return tally

    def judged(self, item: Item) -> int:
        return len(self.raters.get(item, ()))


# -- the arena ------------------------------------------------------------------------------------------------------
class Arena:
    """The sweep's methods, prompts and items, the store, and the rules for what to show next and what a vote means."""

    def __init__(
        self,
        methods: dict[str, Method],
        store: Store,
        dwell: Dwell | None = None,
        overlap: float = OVERLAP,
        source: str = "the sweep",
    ) -> None:
        if len(methods) < 2:
            found = ", ".join(methods) or "none"
            raise HarnessError(
                f"harness-arena: {source} has {len(methods)} method(s) with samples ({found}); "
                f"expected two or more complete jobs with {SAMPLES_FILE}"
            )
        if not 0.0 <= overlap <= 1.0:
            raise HarnessError(f"harness-arena: --overlap {overlap!r}: expected a share from 0 to 1, e.g. 0.15")
        self.methods = methods
        self.prompts = shared_prompts(methods)
        if not self.prompts:
            raise HarnessError(f"harness-arena: the jobs under {source} share no prompt in their {SAMPLES_FILE}")
        self.pairs = list(itertools.combinations(sorted(methods), 2))
        self.items, self.identical = self._items()
        if not self.items:
            raise HarnessError(
                f"harness-arena: under {source} every pair of completions is identical (up to whitespace); "
                "expected methods that answer differently somewhere"
            )
        self.store = store
        self.dwell = dwell or Dwell()
        self.overlap = overlap
        self.random = random.SystemRandom()  # the side a method appears on must not be predictable
        self._locks = [threading.Lock() for _ in range(LOCKS)]

    @classmethod
    def for_sweep(cls, sweep_dir: Path, store: Store, **options: Any) -> Arena:
        return cls(load_methods(sweep_dir), store, source=str(sweep_dir), **options)

    def _items(self) -> tuple[list[Item], Counter[tuple[str, str]]]:
        """Every item whose completions differ, and per pair how many were left out as identical."""
        items, identical = [], Counter()
        for method_a, method_b in self.pairs:
            rows_a, rows_b = self.methods[method_a].samples, self.methods[method_b].samples
            for (seed_a, seed_b), index in itertools.product(seed_pairs(rows_a, rows_b), self.prompts):
                if same_text(rows_a[seed_a][index]["completion"], rows_b[seed_b][index]["completion"]):
                    identical[(method_a, method_b)] += 1
                else:
                    items.append(Item(index, method_a, method_b, seed_a, seed_b))
        return items, identical

    # -- the next pair --------------------------------------------------------------------------------------------
    def next(self, rater: str) -> dict[str, Any]:
        """`rater`'s open presentation, else a new one (recorded before it is shown), or `done` when nothing is left."""
        rater = check_rater(rater)
        with self._locks[hash(rater) % LOCKS]:  # two requests of one rater at once still leave one open presentation
            tally = Tally.of(self.store.tallies(), rater)
            eligible = [item for item in self.items if item.question not in tally.voted]
            presentation = self._open(rater, tally) or self._issue(rater, tally, eligible)
        progress = {"voted": len(tally.voted), "remaining": len({item.question for item in eligible})}
        if presentation is None:
            return {"done": True, **progress}
        completion_a, completion_b = self._completions(presentation)
        left, right = (completion_a, completion_b) if presentation.shown_left == "a" else (completion_b, completion_a)
        return {
            "presentation": presentation.id,
            "prompt_index": presentation.prompt_index,
            "prompt": self.prompts[presentation.prompt_index],
            "left": left,
            "right": right,
            "dwell_ms": self.dwell.required_ms(left, right),
            **progress,
        }

    def _open(self, rater: str, tally: Tally) -> Presentation | None:
        """The rater's newest open presentation that can still be voted on (the sweep may have changed under it, or
        another tab's vote answered its question)."""
        for presentation in self.store.open_presentations(rater):
            question = (presentation.prompt_index, presentation.method_a, presentation.method_b)
            valid = question not in tally.voted and self._still_shown(presentation)
            if valid and not same_text(*self._completions(presentation)):
                return presentation
        return None

    def _issue(self, rater: str, tally: Tally, eligible: list[Item]) -> Presentation | None:
        item = self._choose(tally, eligible)
        if item is None:
            return None
        presentation = Presentation(
            id=secrets.token_urlsafe(18),
            rater=rater,
            prompt_index=item.prompt_index,
            method_a=item.method_a,
            method_b=item.method_b,
            seed_a=item.seed_a,
            seed_b=item.seed_b,
            shown_left=self.random.choice("ab"),
            created_at=time.time(),
        )
        self.store.add_presentation(presentation)
        return presentation

    def _choose(self, tally: Tally, eligible: list[Item]) -> Item | None:
        """An item another rater judged while the rater's overlap share is short (module docstring), else even
        coverage."""
        if not eligible:
            return None
        if self.overlap > 0 and wants_overlap(tally.shared, len(tally.voted), self.overlap):
            shared = [item for item in eligible if 0 < tally.judged(item) < MAX_RATERS]
            if shared:
                most = max(map(tally.judged, shared))
                return self._fewest_votes([item for item in shared if tally.judged(item) == most], tally)
        return self._fewest_votes(eligible, tally)

    def _fewest_votes(self, items: list[Item], tally: Tally) -> Item:
        """At random among `items` of the least-voted pair, those the fewest raters judged."""
        fewest = min(tally.pair_votes[item.pair] for item in items)
        items = [item for item in items if tally.pair_votes[item.pair] == fewest]
        least = min(map(tally.judged, items))
        return self.random.choice([item for item in items if tally.judged(item) == least])

    def _completions(self, presentation: Presentation) -> tuple[str, str]:
        rows_a = self.methods[presentation.method_a].samples[presentation.seed_a]
        rows_b = self.methods[presentation.method_b].samples[presentation.seed_b]
        return rows_a[presentation.prompt_index]["completion"], rows_b[presentation.prompt_index]["completion"]

    def _still_shown(self, presentation: Presentation) -> bool:
        """Whether the sweep (as loaded now) still has what the presentation showed (the database may be older)."""
        shown = [(presentation.method_a, presentation.seed_a), (presentation.method_b, presentation.seed_b)]
        known = all(method in self.methods and seed in self.methods[method].samples for method, seed in shown)
        return known and presentation.prompt_index in self.prompts

    # -- a vote ---------------------------------------------------------------------------------------------------
    def vote(self, presentation_id: str, rater: str, choice: str, visible_ms: int | None = None) -> dict[str, Any]:
        """Record `rater`'s choice on a presentation the server issued, once it has been on screen long enough;
        `Rejected` with the reason otherwise (nothing written)."""
        rater = check_rater(rater)
        presentation = self.store.presentation(presentation_id)
        if presentation is None:
            raise Rejected(404, f"unknown presentation {presentation_id[:80]!r}: ask /api/next for one")
        if rater != presentation.rater:
            raise Rejected(403, f"presentation {presentation.id} was not issued to rater {rater!r}")
        if not self._still_shown(presentation):
            raise Rejected(410, f"presentation {presentation_id} shows samples this sweep no longer has")
        completion_a, completion_b = self._completions(presentation)
        if same_text(completion_a, completion_b):
            raise Rejected(409, f"presentation {presentation_id} shows two identical completions: nothing to judge")
        dwelled = self._dwelled(presentation, self.dwell.required_ms(completion_a, completion_b), visible_ms)
        other = "b" if presentation.shown_left == "a" else "a"
        outcome = {"left": presentation.shown_left, "right": other, "tie": "tie"}[choice]
        prompt = self.prompts[presentation.prompt_index]
        self.store.record_vote(presentation, rater, outcome, prompt, completion_a, completion_b, dwelled)
        return {"recorded": True}

    @staticmethod
    def _dwelled(presentation: Presentation, required_ms: int, visible_ms: int | None) -> Dwelled:
        """How long the pair has been shown; `Rejected` (425 Too Early) when the server's clock, or the page's own
        report, says it was not yet long enough to read it. The server's clock decides whatever the page says."""
        dwell_ms = int((time.time() - presentation.created_at) * 1000)
        checks = [("has been shown", dwell_ms)]
        if visible_ms is not None:
            checks.append(("was visible, the page says,", visible_ms))
        for how, ms in checks:
            if ms < required_ms:
                raise Rejected(
                    425,
                    f"too early: the pair {how} for {ms} ms and a vote counts after {required_ms} ms on screen "
                    "(time to read both completions); nothing was recorded",
                )
        return Dwelled(dwell_ms, visible_ms, required_ms)


def check_rater(rater: str) -> str:
    name = rater.strip()
    if not name or len(name) > RATER_MAX or not name.isprintable():
        raise Rejected(422, f"rater {rater[:80]!r}: expected a name of 1 to {RATER_MAX} printable characters")
    return name
