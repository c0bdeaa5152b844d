"""Seeded probabilistic grammar of short movie reviews: the gold-reward testbed.

Reviews are lower-case words separated by single spaces; "." is its own word, e.g.
``the plot was not very good but i loved the acting .``. The language is regular and is produced
left to right by a probabilistic finite-state process whose probabilities depend on a latent
review-level mood (positive / negative). Every word determines the next state, so a string has a
single derivation per mood and exact probabilities follow by marginalising over the two moods.

The process is written down once, as ``ReviewGrammar._edges`` (state, mood -> words, probabilities,
next states); sampling, scoring, next-word distributions and parsing all walk that one table.
The gold reward is a closed-form sentiment of the text, squashed by a sigmoid.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

EOS = "<eos>"  # the end-of-review symbol in next-word distributions

_MOOD_SIGN = {"positive": 1, "negative": -1}
_NEG_INF = float("-inf")

# A state is (tag, ctx, x). ctx = 0 inside a sentence's first clause; after "but" it is the first
# clause's polarity (+1/-1), which is all the second clause needs. x is a tag-specific extra: the
# negation flag before an adjective, or the clause polarity once the sentiment word is known.
State = tuple[str, int, int]
_START: State = ("start", 0, 0)
_CLAUSE0: State = ("clause", 0, 0)
_DOT: State = ("dot", 0, 0)


@dataclass(frozen=True)
class GrammarConfig:
    """Probabilities of the generative process. Mood enters only through the first clause's
    polarity (p_on_mood) and the chance of "but" (p_but_on_mood / p_but_off_mood)."""

    p_negative_mood: float = 0.7
    p_on_mood: float = 0.85
    p_contrast_after_but: float = 0.85
    p_but_on_mood: float = 0.1
    p_but_off_mood: float = 0.6
    p_not: float = 0.15
    p_intensifier: float = 0.3
    p_i_clause: float = 0.25
    p_did_not: float = 0.15
    p_another_sentence: float = 0.45


@dataclass(frozen=True)
class Clause:
    """One parsed clause: its words (no "but"/"."), gold value and whether it is negated."""

    words: tuple[str, ...]
    value: float
    negated: bool


@dataclass(frozen=True)
class Sentence:
    """One parsed sentence: one or two clauses and its gold value."""

    clauses: tuple[Clause, ...]
    value: float


@dataclass(frozen=True)
class _Table:
    """Compiled out-edges of one (state, mood): lookup by word and cumulative weights for sampling."""

    edges: dict[str, tuple[float, State]]  # word -> (log prob, next state)
    words: tuple[str, ...]
    cum: tuple[float, ...]
    nexts: tuple[State, ...]


def _sigmoid(s: float) -> float:
    # Stable for long texts whose |S| can be large.
    if s >= 0:
        return 1.0 / (1.0 + math.exp(-s))
    e = math.exp(s)
    return e / (1.0 + e)


def _log(p: float) -> float:
    return math.log(p) if p > 0 else _NEG_INF


def _logsumexp(xs: Sequence[float]) -> float:
    m = max(xs)
    if m == _NEG_INF:
        return _NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _words(text: str | Sequence[str]) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


class ReviewGrammar:
    """The review grammar: sampler, exact scorer and gold sentiment oracle."""

    # Word lists are class attributes so a test can shrink them (e.g. to enumerate the language).
    NOUNS: ClassVar[tuple[str, ...]] = (
        "movie",
        "film",
        "plot",
        "acting",
        "ending",
        "script",
        "cast",
        "soundtrack",
        "dialogue",
        "pacing",
        "director",
        "story",
    )
    COPULAS: ClassVar[tuple[str, ...]] = ("was", "is", "felt", "seemed")
    INTENSIFIERS: ClassVar[dict[str, float]] = {"very": 1.5, "really": 1.5, "extremely": 2.0, "slightly": 0.5}
    ADJECTIVES: ClassVar[dict[str, tuple[int, int]]] = {  # word -> (polarity, strength)
        "good": (1, 1),
        "great": (1, 2),
        "fun": (1, 1),
        "brilliant": (1, 2),
        "wonderful": (1, 2),
        "enjoyable": (1, 1),
        "charming": (1, 1),
        "superb": (1, 2),
        "bad": (-1, 1),
        "awful": (-1, 2),
        "boring": (-1, 1),
        "dull": (-1, 1),
        "terrible": (-1, 2),
        "weak": (-1, 1),
        "dreadful": (-1, 2),
        "bland": (-1, 1),
    }
    TVERBS: ClassVar[tuple[tuple[str, str, int, int], ...]] = (  # (past, base, polarity, strength)
        ("loved", "love", 1, 2),
        ("liked", "like", 1, 1),
        ("enjoyed", "enjoy", 1, 1),
        ("hated", "hate", -1, 2),
        ("disliked", "dislike", -1, 1),
    )
    BUT_WEIGHTS: ClassVar[tuple[float, float]] = (0.5, 1.0)  # "A but B" = 0.5*A + 1.0*B

    def __init__(self, config: GrammarConfig | None = None) -> None:
        self.config = config or GrammarConfig()
        self._lexicon: dict[str, tuple[int, int]] = dict(self.ADJECTIVES)
        for past, base, pol, strength in self.TVERBS:
            self._lexicon[past] = self._lexicon[base] = (pol, strength)
        # Uniform choice among same-polarity words: count them once.
        self._n_adj = {s: sum(p == s for p, _ in self.ADJECTIVES.values()) for s in (1, -1)}
        self._n_verb = {s: sum(v[2] == s for v in self.TVERBS) for s in (1, -1)}
        self._tables: dict[tuple[State, int], _Table] = {}
        self._parses: dict[tuple[str, ...], Sentence | None] = {}
        self.vocabulary: list[str] = self._reachable_words()

    # ------------------------------------------------------------------ the process (only here)
    def _p_polarity(self, pol: int, ctx: int, mood: int) -> float:
        """P(clause polarity = pol): follows the mood in a first clause, contrasts after "but"."""
        c = self.config
        if ctx == 0:
            return c.p_on_mood if pol == mood else 1.0 - c.p_on_mood
        return c.p_contrast_after_but if pol == -ctx else 1.0 - c.p_contrast_after_but

    def _edges(self, state: State, mood: int) -> list[tuple[str, float, State]]:
        """The transition function: (word, prob, next state) for every word possible in `state`.

        Words are listed even when a config makes their probability 0, so the set of keys (the
        grammar's structure) never depends on the mood or the probabilities. One method per state tag
        below; "done" (the end of the review) has none: nothing follows it.
        """
        tag, ctx, x = state
        edges = self._BY_TAG.get(tag)
        return edges(self, ctx, x, mood) if edges is not None else []

    def _then(self, p: float, sub: State, mood: int) -> list[tuple[str, float, State]]:
        """An optional word was skipped: continue with `sub`'s edges, scaled by `p`."""
        return [(w, p * q, s) for w, q, s in self._edges(sub, mood)]

    def _edges_start(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return self._edges(_CLAUSE0, mood)  # the first sentence is mandatory

    def _edges_dot(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        c = self.config
        return [(EOS, 1.0 - c.p_another_sentence, ("done", 0, 0)), *self._then(c.p_another_sentence, _CLAUSE0, mood)]

    def _edges_clause(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        c = self.config
        return [("the", 1.0 - c.p_i_clause, ("the_n", ctx, 0)), ("i", c.p_i_clause, ("i", ctx, 0))]

    def _edges_the_noun(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return [(n, 1.0 / len(self.NOUNS), ("the_v", ctx, 0)) for n in self.NOUNS]

    def _edges_the_copula(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return [(v, 1.0 / len(self.COPULAS), ("the_not", ctx, 0)) for v in self.COPULAS]

    def _edges_the_not(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        c = self.config
        return [("not", c.p_not, ("the_int", ctx, 1)), *self._then(1.0 - c.p_not, ("the_int", ctx, 0), mood)]

    def _edges_intensifier(self, nxt: State, mood: int) -> list[tuple[str, float, State]]:
        c = self.config
        p_each = c.p_intensifier / len(self.INTENSIFIERS)
        return [*((w, p_each, nxt) for w in self.INTENSIFIERS), *self._then(1.0 - c.p_intensifier, nxt, mood)]

    def _edges_the_intensifier(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return self._edges_intensifier(("the_adj", ctx, x), mood)

    def _edges_i_intensifier(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return self._edges_intensifier(("i_past", ctx, 0), mood)

    def _edges_the_adjective(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        flip = -1 if x else 1  # x = negated; negation flips which adjectives realise the polarity
        return [
            (a, self._p_polarity(pol * flip, ctx, mood) / self._n_adj[pol], ("end", ctx, pol * flip))
            for a, (pol, _) in self.ADJECTIVES.items()
        ]

    def _edges_i(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        c = self.config
        return [("did", c.p_did_not, ("i_did", ctx, 0)), *self._then(1.0 - c.p_did_not, ("i_int", ctx, 0), mood)]

    def _edges_i_did(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return [("not", 1.0, ("i_base", ctx, 0))]

    def _edges_i_past(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return [
            (past, self._p_polarity(pol, ctx, mood) / self._n_verb[pol], ("i_the", ctx, pol))
            for past, _, pol, _ in self.TVERBS
        ]

    def _edges_i_base(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return [
            (base, self._p_polarity(-pol, ctx, mood) / self._n_verb[pol], ("i_the", ctx, -pol))
            for _, base, pol, _ in self.TVERBS
        ]

    def _edges_i_the(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return [("the", 1.0, ("i_noun", ctx, x))]

    def _edges_i_noun(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        return [(n, 1.0 / len(self.NOUNS), ("end", ctx, x)) for n in self.NOUNS]

    def _edges_end(self, ctx: int, x: int, mood: int) -> list[tuple[str, float, State]]:
        if ctx != 0:  # x = this clause's polarity
            return [(".", 1.0, _DOT)]
        c = self.config
        p_but = c.p_but_on_mood if x == mood else c.p_but_off_mood
        return [("but", p_but, ("clause", x, 0)), (".", 1.0 - p_but, _DOT)]

    _BY_TAG: ClassVar[dict[str, Callable[[ReviewGrammar, int, int, int], list[tuple[str, float, State]]]]] = {
        "start": _edges_start,
        "dot": _edges_dot,
        "clause": _edges_clause,
        "the_n": _edges_the_noun,
        "the_v": _edges_the_copula,
        "the_not": _edges_the_not,
        "the_int": _edges_the_intensifier,
        "i_int": _edges_i_intensifier,
        "the_adj": _edges_the_adjective,
        "i": _edges_i,
        "i_did": _edges_i_did,
        "i_past": _edges_i_past,
        "i_base": _edges_i_base,
        "i_the": _edges_i_the,
        "i_noun": _edges_i_noun,
        "end": _edges_end,
    }

    def _table(self, state: State, mood: int) -> _Table:
        """Compiled, memoised `_edges` (the state space is tiny, so this is built once)."""
        key = (state, mood)
        table = self._tables.get(key)
        if table is None:
            edges = self._edges(state, mood)
            words = tuple(w for w, _, _ in edges)
            assert len(set(words)) == len(words), f"ambiguous next word in {state}"  # determinism
            cum, total = [], 0.0
            for _, p, _ in edges:
                total += p
                cum.append(total)
            table = _Table({w: (_log(p), s) for w, p, s in edges}, words, tuple(cum), tuple(s for _, _, s in edges))
            self._tables[key] = table
        return table

    def _reachable_words(self) -> list[str]:
        seen, todo, vocab = {_START}, [_START], set()
        while todo:
            for w, (_, nxt) in self._table(todo.pop(), 1).edges.items():
                vocab.add(w)
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        vocab.discard(EOS)
        return sorted(vocab)

    # ------------------------------------------------------------------ walking the process
    def _walk(self, words: Sequence[str], mood: int, start: State = _START) -> tuple[float, State]:
        """log P(words | mood) from `start`, and the state reached. ValueError on a structural misfit."""
        lp, state = 0.0, start
        for i, w in enumerate(words):
            edge = self._table(state, mood).edges.get(w)
            if edge is None:
                raise ValueError(f"word {w!r} at position {i} cannot follow {' '.join(words[:i])!r}")
            lp += edge[0]
            state = edge[1]
        return lp, state

    def _joint(self, words: Sequence[str], mood: str | None) -> tuple[dict[int, float], State]:
        """log P(mood, words) for each mood considered, and the (mood-independent) state reached."""
        moods = (1, -1) if mood is None else (_MOOD_SIGN[mood],)
        prior = {1: _log(1.0 - self.config.p_negative_mood), -1: _log(self.config.p_negative_mood)}
        logs, state = {}, _START
        for m in moods:
            lp, state = self._walk(words, m)
            logs[m] = lp + (prior[m] if mood is None else 0.0)  # a given mood is conditioned on
        return logs, state

    def _posterior(self, words: Sequence[str], mood: str | None) -> tuple[dict[int, float], State]:
        """P(mood | prefix) for each mood considered; ValueError if the prefix is impossible."""
        if EOS in words:
            raise ValueError(f"{EOS!r} cannot appear inside a prefix")
        logs, state = self._joint(words, mood)
        z = _logsumexp(list(logs.values()))
        if z == _NEG_INF:
            raise ValueError(f"prefix {' '.join(words)!r} has probability 0 under mood {mood}")
        return {m: math.exp(lp - z) for m, lp in logs.items()}, state

    # ------------------------------------------------------------------ public API
    def sample(self, rng: random.Random, mood: str | None = None, prefix: Sequence[str] | None = None) -> list[str]:
        """A complete review as words, optionally continuing `prefix` (mood drawn from its posterior)."""
        words = list(prefix or ())
        post, state = self._posterior(words, mood)  # validates the prefix
        # mood=None: draw it from its posterior (just the prior when there is no prefix).
        m = _MOOD_SIGN[mood] if mood is not None else (-1 if rng.random() < post[-1] else 1)
        while True:
            t = self._table(state, m)
            i = bisect.bisect_right(t.cum, rng.random() * t.cum[-1])  # zero-weight words never hit
            if t.words[i] == EOS:
                return words
            words.append(t.words[i])
            state = t.nexts[i]

    def sample_prompt(self, rng: random.Random, min_words: int = 2, max_words: int = 5) -> list[str]:
        """A review opening: k ~ U[min_words, max_words] words of a prior sample, cut before the first "."."""
        review = self.sample(rng)
        k = rng.randint(min_words, max_words)
        return review[: min(k, review.index("."))]  # a strict prefix of sentence 1 (>= 4 words long)

    def prefix_log_prob(self, words: Sequence[str], mood: str | None = None) -> float:
        """log P(a review starts with `words`); -inf if impossible. mood=None marginalises."""
        try:
            logs, _ = self._joint(list(words), mood)
        except ValueError:
            return _NEG_INF
        return _logsumexp(list(logs.values()))

    def log_prob(self, words: Sequence[str], mood: str | None = None) -> float:
        """Exact log P(complete review), including the end-of-review decision; -inf if not in the language."""
        words = list(words)
        if EOS in words:
            return _NEG_INF
        return self.prefix_log_prob([*words, EOS], mood)

    def next_word_distribution(self, prefix: Sequence[str], mood: str | None = None) -> dict[str, float]:
        """Exact P(next word | prefix) including EOS; mood=None mixes moods by their posterior."""
        post, state = self._posterior(list(prefix), mood)
        dist: dict[str, float] = {}
        for m, w_m in post.items():
            for word, (lp, _) in self._table(state, m).edges.items():
                dist[word] = dist.get(word, 0.0) + w_m * math.exp(lp)
        return {w: p for w, p in dist.items() if p > 0}

    def parse_sentence(self, words: Sequence[str]) -> Sentence | None:
        """Parse one sentence (words including the final "."); None if ungrammatical."""
        key = tuple(words)
        if key not in self._parses:
            self._parses[key] = self._parse(key)
        return self._parses[key]

    def _parse(self, words: tuple[str, ...]) -> Sentence | None:
        # Grammaticality comes from the state machine, so it cannot disagree with log_prob.
        state = _CLAUSE0
        for w in words:
            if state == _DOT:  # something after the sentence's "."
                return None
            edge = self._table(state, 1).edges.get(w)
            if edge is None:
                return None
            state = edge[1]
        if state != _DOT:
            return None
        # Grammatical, so each clause has exactly one sentiment word and at most one "not"/intensifier.
        body = words[:-1]
        cut = body.index("but") if "but" in body else len(body)
        clauses = tuple(self._clause(part) for part in (body[:cut], body[cut + 1 :]) if part)
        if len(clauses) == 1:
            value = clauses[0].value
        else:
            value = self.BUT_WEIGHTS[0] * clauses[0].value + self.BUT_WEIGHTS[1] * clauses[1].value
        return Sentence(clauses, value)

    def _clause(self, words: tuple[str, ...]) -> Clause:
        negated = "not" in words
        mult = next((self.INTENSIFIERS[w] for w in words if w in self.INTENSIFIERS), 1.0)
        pol, strength = next(self._lexicon[w] for w in words if w in self._lexicon)
        return Clause(words, pol * strength * mult * (-0.5 if negated else 1.0), negated)

    def _sentences(self, words: list[str]) -> list[Sentence | None]:
        """Parse each "."-terminated chunk; trailing words after the last "." are dropped."""
        out, start = [], 0
        for i, w in enumerate(words):
            if w == ".":
                out.append(self.parse_sentence(words[start : i + 1]))
                start = i + 1
        return out

    def is_grammatical(self, text: str | Sequence[str]) -> bool:
        """True for a complete review: 1+ grammatical sentences, nothing after the last "."."""
        words = _words(text)
        return bool(words) and words[-1] == "." and all(s is not None for s in self._sentences(words))

    def sentiment(self, text: str | Sequence[str]) -> float:
        """Gold sentiment S: sum of grammatical sentences' values (other chunks count 0)."""
        return sum(s.value for s in self._sentences(_words(text)) if s is not None)

    def gold_reward(self, text: str | Sequence[str]) -> float:
        """sigmoid(S): a perfect sentiment classifier's P(positive); garbage scores 0.5."""
        return _sigmoid(self.sentiment(text))

    def entropy_per_word(self, reviews: Sequence[Sequence[str]]) -> float:
        """Mean true NLL (nats) per predicted symbol, counting the final EOS prediction.

        sum(-log_prob(r)) / sum(len(r) + 1): the floor for a language model's held-out loss.
        """
        nll = sum(-self.log_prob(r) for r in reviews)
        return nll / sum(len(r) + 1 for r in reviews)
