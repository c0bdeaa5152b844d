"""Writes the data of the testbed's lm-eval tasks (jsonl beside their YAMLs), deterministically from the grammar.

    python plugins/evals/tasks/make_testbed_tasks.py          # rewrites plugins/evals/tasks/data/*.jsonl

Every row is checked against the grammar's exact parser and probabilities, so each task's label is the truth:
- `testbed_minimal_pairs_<edit>.jsonl`: a grammatical review and a minimally edited ungrammatical one with the
  same number of words (BLiMP, Warstadt et al. 2020), one file and one task per kind of edit, 80 pairs each.
- `testbed_sentiment.jsonl`: a review whose mood is clear (posterior >= 0.9 and the gold sentiment agrees) and
  two candidate next sentences that differ only in the adjective's polarity; half the reviews are positive.
- `testbed_perplexity.jsonl`: held-out reviews from the grammar's own distribution (negative-skewed, as in
  pretraining), with the grammar's exact word perplexity printed as the floor a model can reach.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from pathlib import Path

from plugins.tasks.grammar import ReviewGrammar

DATA_DIR = Path(__file__).resolve().parent / "data"
SEED = "lm_eval"  # every file has its own random stream, independent of the training data's streams
MAX_WORDS = 24  # short reviews fit the smallest testbed context (n_positions=64) without windowing
PAIRS_PER_EDIT = 80
SENTIMENT_ROWS = 300
PERPLEXITY_ROWS = 300
MIN_MOOD_POSTERIOR = 0.9

GRAMMAR = ReviewGrammar()
NOUNS = ReviewGrammar.NOUNS
ADJECTIVES = {polarity: [a for a, (p, _) in ReviewGrammar.ADJECTIVES.items() if p == polarity] for polarity in (1, -1)}
PAST_TO_BASE = {past: base for past, base, _, _ in ReviewGrammar.TVERBS}
BASE_TO_PAST = {base: past for past, base in PAST_TO_BASE.items()}

Edit = Callable[[list[str], random.Random], list[str] | None]


# -- minimal pairs: each edit keeps the number of words, so total log-probs compare like for like ------------
def swap_adjacent(words: list[str], rng: random.Random) -> list[str] | None:
    """Two neighbouring words trade places: `the plot was good .` -> `the was plot good .`."""
    i = rng.randrange(len(words) - 1)
    if words[i] == words[i + 1]:
        return None
    return [*words[:i], words[i + 1], words[i], *words[i + 2 :]]


def verb_form(words: list[str], rng: random.Random) -> list[str] | None:
    """Past for base and base for past: `i loved the film` -> `i love the film`, `did not like` -> `did not liked`.
    Half the pairs go each way, so a model that merely prefers one form scores chance."""
    table = PAST_TO_BASE if rng.random() < 0.5 else BASE_TO_PAST
    spots = [i for i, w in enumerate(words) if w in table]
    if not spots:
        return None
    i = rng.choice(spots)
    return [*words[:i], table[words[i]], *words[i + 1 :]]


def misplaced_not(words: list[str], rng: random.Random) -> list[str] | None:
    """Moves "not" behind the word it negates: `was not very good .` -> `was very good not .`."""
    spots = [i for i, w in enumerate(words) if w == "not"]
    if not spots:
        return None
    i = rng.choice(spots)
    end = i + 1  # the sentiment word "not" belongs to: an adjective or a verb, after an optional intensifier
    while end < len(words) and words[end] in ReviewGrammar.INTENSIFIERS:
        end += 1
    if end >= len(words) - 1:
        return None
    return [*words[:i], *words[i + 1 : end + 1], "not", *words[end + 1 :]]


def noun_adjective(words: list[str], rng: random.Random) -> list[str] | None:
    """A noun where an adjective belongs or the reverse: `the plot was good .` -> `the plot was film .`."""
    spots = [i for i, w in enumerate(words) if w in NOUNS or w in ReviewGrammar.ADJECTIVES]
    i = rng.choice(spots)
    if words[i] in ReviewGrammar.ADJECTIVES:
        replacement = rng.choice(NOUNS)
    else:
        replacement = rng.choice(ADJECTIVES[rng.choice((1, -1))])
    return [*words[:i], replacement, *words[i + 1 :]]


def double_but(words: list[str], rng: random.Random) -> list[str] | None:
    """A sentence boundary becomes a second "but" in one sentence: `a but b . c .` -> `a but b but c .`."""
    spots = [i for i, w in enumerate(words[:-1]) if w == "."]
    if not spots:
        return None
    i = rng.choice(spots)
    return [*words[:i], "but", *words[i + 1 :]]


EDITS: dict[str, Edit] = {
    "swap_adjacent": swap_adjacent,
    "verb_form": verb_form,
    "misplaced_not": misplaced_not,
    "noun_adjective": noun_adjective,
    "double_but": double_but,
}


def short_review(rng: random.Random, mood: str | None = None) -> list[str]:
    while True:
        words = GRAMMAR.sample(rng, mood=mood)
        if len(words) <= MAX_WORDS:
            return words


def minimal_pairs(name: str) -> list[dict[str, str]]:
    rng = random.Random(f"{SEED}/minimal_pairs/{name}")
    rows: list[dict[str, str]] = []
    while len(rows) < PAIRS_PER_EDIT:
        good = short_review(rng)
        bad = EDITS[name](good, rng)
        if bad is None or GRAMMAR.is_grammatical(bad):
            continue
        assert len(bad) == len(good) and GRAMMAR.is_grammatical(good)
        rows.append({"good": " ".join(good), "bad": " ".join(bad)})
    return rows


# -- sentiment: does the model keep a review's mood when it writes the next sentence? -------------------------
def mood_posterior(words: list[str]) -> float:
    """P(mood = positive | review) under the grammar (Bayes over its two moods)."""
    p_negative = GRAMMAR.config.p_negative_mood
    positive = GRAMMAR.prefix_log_prob(words, "positive") + math.log(1 - p_negative)
    negative = GRAMMAR.prefix_log_prob(words, "negative") + math.log(p_negative)
    return 1.0 / (1.0 + math.exp(negative - positive))


def sentiment() -> list[dict[str, object]]:
    rng = random.Random(f"{SEED}/sentiment")
    rows: list[dict[str, object]] = []
    while len(rows) < SENTIMENT_ROWS:
        mood = ("positive", "negative")[len(rows) % 2]
        sign = 1 if mood == "positive" else -1
        review = short_review(rng, mood)
        posterior = mood_posterior(review)
        if (posterior if sign > 0 else 1 - posterior) < MIN_MOOD_POSTERIOR or GRAMMAR.sentiment(review) * sign <= 0:
            continue
        # The two candidates differ only in the adjective; the grammar gives every adjective of one polarity the
        # same probability (8 per side), so nothing but the review's mood separates them.
        noun, copula = rng.choice(NOUNS), rng.choice(ReviewGrammar.COPULAS)
        choices = [f"the {noun} {copula} {rng.choice(ADJECTIVES[polarity])} ." for polarity in (1, -1)]
        label = 0 if sign > 0 else 1
        scores = [GRAMMAR.prefix_log_prob([*review, *choice.split()]) for choice in choices]
        assert scores[label] > scores[1 - label], (review, choices)
        rows.append({"review": " ".join(review), "choices": choices, "label": label, "mood": mood})
    return rows


# -- perplexity: held-out reviews of the pretraining distribution ---------------------------------------------
def perplexity() -> list[dict[str, str]]:
    rng = random.Random(f"{SEED}/perplexity")
    return [{"text": " ".join(GRAMMAR.sample(rng))} for _ in range(PERPLEXITY_ROWS)]


def grammar_word_perplexity(rows: list[dict[str, str]]) -> float:
    """The floor: exp(mean NLL per word) of the true distribution, scored as lm-eval scores (no end-of-review)."""
    texts = [row["text"].split() for row in rows]
    return math.exp(-sum(GRAMMAR.prefix_log_prob(words) for words in texts) / sum(len(words) for words in texts))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def main() -> None:
    DATA_DIR.mkdir(exist_ok=True)
    files = {
        **{f"testbed_minimal_pairs_{name}.jsonl": minimal_pairs(name) for name in EDITS},
        "testbed_sentiment.jsonl": sentiment(),
        "testbed_perplexity.jsonl": perplexity(),
    }
    for name, rows in files.items():
        write_jsonl(DATA_DIR / name, rows)
        print(f"{DATA_DIR / name}: {len(rows)} rows, {(DATA_DIR / name).stat().st_size / 1024:.1f} KiB")
    floor = grammar_word_perplexity(files["testbed_perplexity.jsonl"])
    print(f"grammar word perplexity of testbed_perplexity: {floor:.3f}")


if __name__ == "__main__":
    main()
