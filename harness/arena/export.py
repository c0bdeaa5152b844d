"""Arena votes as a preference dataset that `task=hf_preferences` reads: human labels train a reward model or DPO,
and the RLHF loop closes.

    harness-arena SWEEP_DIR --export prefs.jsonl
    harness algorithm=dpo task=hf_preferences task.path=prefs.jsonl

One JSON line per non-tie vote: `prompt`, `chosen` (the preferred completion), `rejected`, and where it came from
(`rater`, `chosen_method`, `rejected_method`, `prompt_index`, `seed`; hf_preferences ignores them). Several raters
on one pair give several rows, disagreeing ones included: the rows are the raters' labels, noise and all, as a
preference dataset of human labels is (Bradley-Terry noise is what DPO and reward models assume), and no
majority rule has to break ties between raters. Ties say neither is better and are left out; so is a vote whose
completions are empty (hf_preferences needs text) or identical (no preference to learn).

The text is what the policies were given and wrote. samples.jsonl keeps a job's prompt as the policy read it (a
chat task's messages already rendered by the model's template, or the plain `Human: ...\\n\\nAssistant:`
transcript) and the completion as decoded, stripped of the space before it. A text completion joins onto its prompt
(`prompt + chosen`) with that space put back (harness.chat.joinable, as hf_preferences and the testbed join
them), so `prompt + chosen` is the sampled text. A prompt that is a list of messages stays messages, and each
completion becomes one assistant message (TRL's conversational form).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.arena.votes import Vote
from harness.chat import joinable
from harness.errors import HarnessError
from harness.io import atomic_write_jsonl

SUFFIXES = (".jsonl", ".json")  # JSON lines either way: what hf_preferences reads that holds messages too


@dataclass(frozen=True)
class Exported:
    """What `export_preferences` wrote and left out."""

    path: Path
    rows: int
    ties: int  # votes for neither side: no preference
    unusable: int  # votes with an empty or identical pair of completions

    @property
    def message(self) -> str:
        left_out = [f"{self.ties} ties"]
        if self.unusable:
            left_out.append(f"{self.unusable} with empty or identical completions")
        return f"wrote {self.rows} preference pairs to {self.path} ({' and '.join(left_out)} left out)"


def preference_row(vote: Vote) -> dict[str, Any] | None:
    """One non-tie vote as a hf_preferences row; None for a tie or an unusable pair (module docstring)."""
    if vote.outcome == "tie":
        return None
    chosen, rejected = (vote.completion_a, vote.completion_b)[:: 1 if vote.outcome == "a" else -1]
    if not chosen.strip() or not rejected.strip() or chosen.strip() == rejected.strip():
        return None
    prompt: Any = vote.prompt
    if isinstance(prompt, list):
        pair = [[{"role": "assistant", "content": text.strip()}] for text in (chosen, rejected)]
    else:
        pair = [joinable(prompt, text) for text in (chosen, rejected)]
    return {
        "prompt": prompt,
        "chosen": pair[0],
        "rejected": pair[1],
        "rater": vote.rater,
        "chosen_method": vote.winner,
        "rejected_method": vote.loser,
        "prompt_index": vote.prompt_index,
        "seed": vote.seed,
    }


def export_preferences(votes: Sequence[Vote], path: Path | str) -> Exported:
    """Write the non-tie votes to `path` (.jsonl or .json: JSON lines) as preference pairs; see the module
    docstring for what is left out. Raises HarnessError when no vote gives a pair, rather than write a dataset
    hf_preferences would refuse."""
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise HarnessError(f"--export {str(path)!r}: expected a .jsonl or .json file (JSON lines)")
    rows = [row for row in map(preference_row, votes) if row is not None]
    ties = sum(vote.outcome == "tie" for vote in votes)
    if not rows:
        raise HarnessError(
            f"--export {str(path)!r}: none of the {len(votes)} votes prefers one completion ({ties} ties); "
            "expected at least one vote for A or B"
        )
    forms = {isinstance(row["prompt"], list) for row in rows}
    if len(forms) > 1:
        raise HarnessError(
            f"--export {str(path)!r}: the votes mix text prompts and message prompts; expected one form (one sweep)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(target, rows)
    return Exported(target, len(rows), ties, len(votes) - ties - len(rows))
