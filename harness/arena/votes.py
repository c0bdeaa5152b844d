"""One recorded vote, as every part of the arena reads it (the store writes them, the ratings and the export read
them). Methods are stored in a canonical order (`method_a` < `method_b`), whatever side the rater saw each on."""

from __future__ import annotations

from dataclasses import dataclass

OUTCOMES = ("a", "b", "tie")  # a: method_a's completion preferred; b: method_b's; tie: neither


@dataclass(frozen=True)
class Vote:
    rater: str
    prompt_index: int  # the prompt's row in the jobs' samples.jsonl (every job of a sweep has the same prompts)
    prompt: str
    method_a: str  # the report's group label, e.g. "dpo", or "dpo (kl_beta=0.3)"
    method_b: str
    completion_a: str
    completion_b: str
    outcome: str  # one of OUTCOMES
    seed: int = 0  # which seed's samples were shown
    created_at: float = 0.0  # unix time
    dwell_ms: int | None = None  # how long the pair had been shown when the vote came (server's clock; None: older)
    visible_ms: int | None = None  # how long the page says it was visible (None: not reported)

    @property
    def winner(self) -> str | None:
        return {"a": self.method_a, "b": self.method_b}.get(self.outcome)

    @property
    def loser(self) -> str | None:
        return {"a": self.method_b, "b": self.method_a}.get(self.outcome)
