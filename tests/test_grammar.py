"""Tests for the review grammar (gold-reward testbed): semantics, parser, exact probabilities, sampling."""

from __future__ import annotations

import itertools
import math
import random
from typing import ClassVar

import pytest

from plugins.tasks.grammar import EOS, GrammarConfig, ReviewGrammar

G = ReviewGrammar()
CFG = GrammarConfig()


def W(text: str) -> list[str]:
    return text.split()


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# ---------------------------------------------------------------------------------------- semantics
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("the movie was good .", 1.0),  # +1 * 1
        ("the movie was bad .", -1.0),  # -1 * 1
        ("the film is extremely great .", 4.0),  # +1 * 2 * 2.0
        ("the film is slightly awful .", -1.0),  # -1 * 2 * 0.5
        ("the story felt really boring .", -1.5),  # -1 * 1 * 1.5
        ("the plot was not bad .", 0.5),  # -1 * 1 * -0.5: negation flips and halves
        ("the plot was not very good .", -0.75),  # +1 * 1 * 1.5 * -0.5
        ("the plot was awful but the acting was great .", 1.0),  # 0.5 * (-2) + 1.0 * 2
        ("i loved the cast but the pacing seemed dull .", 0.0),  # 0.5 * 2 + 1.0 * (-1)
        ("i did not like the ending .", -0.5),  # +1 * 1 * -0.5
        ("i did not hate the film .", 1.0),  # -1 * 2 * -0.5
        ("i really loved the cast .", 3.0),  # +1 * 2 * 1.5
        ("the movie was good . i hated the plot .", -1.0),  # 1 + (-2): sentences add up
    ],
)
def test_sentiment_and_gold_reward(text: str, value: float) -> None:
    """Each value is worked out in the comment next to it; gold_reward is sigmoid(S)."""
    assert G.sentiment(text) == pytest.approx(value)
    assert G.gold_reward(text) == pytest.approx(sigmoid(value))
    assert G.gold_reward(text.split()) == pytest.approx(sigmoid(value))  # word lists work too


def test_negation_example_exact() -> None:
    """'the plot was not bad .' = (-1)(1)(-0.5) = +0.5 -> sigmoid(0.5) ~= 0.6225."""
    assert G.gold_reward("the plot was not bad .") == pytest.approx(0.6224593312, abs=1e-9)


def test_ungrammatical_chunks_and_trailing_words_contribute_zero() -> None:
    """1 (good) + 0 (scrambled chunk) + 2 (loved) = 3; trailing words after the last '.' add 0."""
    text = "the movie was good . plot the was bad . i loved the film . the movie was great"
    assert G.sentiment(text) == pytest.approx(3.0)
    assert not G.is_grammatical(text)


@pytest.mark.parametrize("text", ["", "asdf qwer zxcv", ". . .", "good great brilliant", "great ."])
def test_garbage_scores_one_half(text: str) -> None:
    """No grammatical sentence -> S = 0 -> sigmoid(0) = 0.5."""
    assert G.sentiment(text) == 0.0
    assert G.gold_reward(text) == 0.5


# ---------------------------------------------------------------------------------------- parser
def test_parse_structure() -> None:
    """'A but B' has two clauses; the value is 0.5 * (-0.75) + 1.0 * 2 = 1.625."""
    s = G.parse_sentence(W("the plot was not very good but i loved the acting ."))
    assert s is not None
    assert [c.words for c in s.clauses] == [
        ("the", "plot", "was", "not", "very", "good"),
        ("i", "loved", "the", "acting"),
    ]
    assert [c.value for c in s.clauses] == [-0.75, 2.0]
    assert [c.negated for c in s.clauses] == [True, False]
    assert s.value == pytest.approx(1.625)


@pytest.mark.parametrize(
    "text",
    [
        "the movie was good .",
        "the soundtrack seemed extremely superb .",
        "the cast is not slightly weak .",
        "i did not dislike the director .",
        "i slightly enjoyed the script .",
        "the ending was bland but i did not hate the ending .",
    ],
)
def test_parser_accepts(text: str) -> None:
    assert G.parse_sentence(text.split()) is not None
    assert G.is_grammatical(text)
    assert G.log_prob(text.split()) > -math.inf  # grammatical <=> positive probability


@pytest.mark.parametrize(
    "text",
    [
        "movie the was good .",  # wrong order
        "the movie was good",  # missing "."
        "the movie not was good .",  # "not" in the wrong place
        "i not liked the plot .",  # "not" without "did"
        "the movie was very not good .",  # intensifier before "not"
        "the movie was good . the",  # trailing word after "."
        "the good was movie .",  # adjective in the noun slot
        "the movie was good but the plot was bad but i loved the cast .",  # "but" twice
        "i did not loved the plot .",  # past tense after "did not"
        "i liked the plot but .",  # "but" with no second clause
        "",  # empty
    ],
)
def test_parser_rejects(text: str) -> None:
    assert G.parse_sentence(text.split()) is None
    assert not G.is_grammatical(text)
    assert G.log_prob(text.split()) == -math.inf


def test_is_grammatical_multi_sentence() -> None:
    assert G.is_grammatical("the movie was good . i hated the plot .")
    assert not G.is_grammatical("the movie was good . i hated the plot")


def test_vocabulary() -> None:
    """12 nouns + 4 copulas + 4 intensifiers + 16 adjectives + 10 verb forms + the i did not but . = 52."""
    assert len(G.vocabulary) == 52
    assert G.vocabulary == sorted(G.vocabulary)
    assert "." in G.vocabulary and EOS not in G.vocabulary


# ---------------------------------------------------------------------------------------- exact probabilities
def _clauses(g: ReviewGrammar) -> list[list[str]]:
    """Every clause of the grammar, enumerated from the spec's templates (not from the state machine)."""
    out = []
    opt_int = [[]] + [[w] for w in g.INTENSIFIERS]
    the_slots = itertools.product(g.NOUNS, g.COPULAS, [[], ["not"]], opt_int, g.ADJECTIVES)
    for noun, cop, neg, inten, adj in the_slots:
        out.append(["the", noun, cop, *neg, *inten, adj])
    for noun, (_, base, _, _) in itertools.product(g.NOUNS, g.TVERBS):
        out.append(["i", "did", "not", base, "the", noun])
    for noun, inten, (past, _, _, _) in itertools.product(g.NOUNS, opt_int, g.TVERBS):
        out.append(["i", *inten, past, "the", noun])
    return out


def test_hand_computed_log_prob() -> None:
    """P('the movie was good .') = 0.75 * 1/12 * 1/4 * 0.85 (no not) * 0.7 (no intens) * 0.55 (end)
    * [0.3 * (0.85/8) * 0.9 (positive mood: on-mood, no "but")
       + 0.7 * (0.15/8) * 0.4 (negative mood: off-mood, no "but")]."""
    common = 0.75 / 12 / 4 * 0.85 * 0.7 * 0.55
    pos, neg = 0.85 / 8 * 0.9, 0.15 / 8 * 0.4
    words = W("the movie was good .")
    assert G.log_prob(words) == pytest.approx(math.log(common * (0.3 * pos + 0.7 * neg)), abs=1e-12)
    assert G.log_prob(words, mood="positive") == pytest.approx(math.log(common * pos), abs=1e-12)
    assert G.log_prob(words, mood="negative") == pytest.approx(math.log(common * neg), abs=1e-12)


def test_one_clause_reviews_full_vocabulary() -> None:
    """All 8040 one-clause one-sentence reviews: P = P(no but) * P(end) with, for either mood,
    P(no but) = 0.85 * (1 - 0.1) + 0.15 * (1 - 0.6) = 0.825, so the sum is 0.825 * 0.55 = 0.45375."""
    clauses = _clauses(G)
    assert len(clauses) == 12 * 4 * 2 * 5 * 16 + 5 * 12 + 5 * 5 * 12
    total = sum(math.exp(G.log_prob([*c, "."])) for c in clauses)
    assert total == pytest.approx(0.825 * 0.55, abs=1e-9)


class TinyGrammar(ReviewGrammar):
    """Same process, shorter uniform word lists, so every one-sentence review can be enumerated."""

    NOUNS: ClassVar[tuple[str, ...]] = ("plot", "cast")
    COPULAS: ClassVar[tuple[str, ...]] = ("was",)
    INTENSIFIERS: ClassVar[dict[str, float]] = {"very": 1.5, "slightly": 0.5}


@pytest.mark.parametrize("mood", [None, "positive", "negative"])
def test_all_one_sentence_reviews_sum_to_p_end(mood: str | None) -> None:
    """Summing exp(log_prob) over every review of exactly one sentence (with and without "but")
    gives P(no second sentence) = 1 - p_another_sentence = 0.55."""
    g = TinyGrammar()
    clauses = _clauses(g)
    sentences = [[*c, "."] for c in clauses] + [[*a, "but", *b, "."] for a in clauses for b in clauses]
    total = sum(math.exp(g.log_prob(s, mood)) for s in sentences)
    assert total == pytest.approx(1 - CFG.p_another_sentence, abs=1e-9)


def _prefixes() -> list[list[str]]:
    rng = random.Random(3)
    out: list[list[str]] = [[]]
    for _ in range(30):
        r = G.sample(rng)
        out.append(r[: rng.randint(1, len(r))])
    return out


@pytest.mark.parametrize("mood", [None, "positive", "negative"])
def test_next_word_distribution_matches_prefix_probs(mood: str | None) -> None:
    """P(w | prefix) sums to 1 and equals exp(lp(prefix + [w]) - lp(prefix)); for EOS the numerator is
    log_prob(prefix) (a complete review)."""
    for prefix in _prefixes():
        dist = G.next_word_distribution(prefix, mood)
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-12)
        base = G.prefix_log_prob(prefix, mood)
        for w, p in dist.items():
            num = G.log_prob(prefix, mood) if w == EOS else G.prefix_log_prob([*prefix, w], mood)
            assert p == pytest.approx(math.exp(num - base), rel=1e-9)


def test_first_and_after_period_distributions() -> None:
    """Start: the 0.75 / i 0.25. After '.': EOS 0.55, the 0.45*0.75, i 0.45*0.25."""
    assert G.next_word_distribution([]) == pytest.approx({"the": 0.75, "i": 0.25})
    d = G.next_word_distribution(W("i loved the film ."))
    assert d == pytest.approx({EOS: 0.55, "the": 0.3375, "i": 0.1125})


def test_impossible_prefix() -> None:
    assert G.prefix_log_prob(["the", "good"]) == -math.inf
    with pytest.raises(ValueError, match="'good'"):
        G.next_word_distribution(["the", "good"])


def test_posterior_mood_moves_with_evidence() -> None:
    """With no evidence, 'the plot was' is followed mostly by negative adjectives (70% negative moods);
    after 'i loved the film .' the posterior leans positive, so positive adjectives become likelier."""
    prior = G.next_word_distribution(W("the plot was"))
    post = G.next_word_distribution(W("i loved the film . the plot was"))
    assert post["good"] > prior["good"] and post["bad"] < prior["bad"]


# ---------------------------------------------------------------------------------------- sampling
def test_prior_samples_grammatical_and_skewed_negative() -> None:
    rng = random.Random(0)
    reviews = [G.sample(rng) for _ in range(20_000)]
    assert all(G.is_grammatical(r) for r in reviews)
    assert all(G.log_prob(r) > -math.inf for r in reviews[:2000])
    mean_prior = sum(G.gold_reward(r) for r in reviews) / len(reviews)
    assert mean_prior < 0.5  # 70% negative moods
    # First word "i" with prob p_i_clause = 0.25; sd = sqrt(.25*.75/20000) ~= 0.003.
    frac_i = sum(r[0] == "i" for r in reviews) / len(reviews)
    assert frac_i == pytest.approx(CFG.p_i_clause, abs=0.015)


def test_positive_samples_score_high() -> None:
    rng = random.Random(1)
    reviews = [G.sample(rng, mood="positive") for _ in range(5_000)]
    assert sum(G.gold_reward(r) for r in reviews) / len(reviews) > 0.5


def test_sampling_is_deterministic() -> None:
    a = [G.sample(random.Random(7)) for _ in range(3)]
    b = [G.sample(random.Random(7)) for _ in range(3)]
    assert a == b


def test_prefix_continuation() -> None:
    rng = random.Random(2)
    prefix = W("the plot was not")
    for mood in (None, "positive", "negative"):
        for _ in range(200):
            r = G.sample(rng, mood=mood, prefix=prefix)
            assert r[:4] == prefix and G.is_grammatical(r)


def test_bad_prefix_raises_naming_the_word() -> None:
    with pytest.raises(ValueError, match="'acting'"):
        G.sample(random.Random(0), prefix=W("the plot acting"))


def test_sample_prompt_is_strict_prefix_of_first_sentence() -> None:
    rng = random.Random(4)
    for _ in range(2000):
        p = G.sample_prompt(rng)
        assert 2 <= len(p) <= 5 and "." not in p
        assert G.prefix_log_prob(p) > -math.inf


# ---------------------------------------------------------------------------------------- entropy
def test_entropy_per_word_by_hand() -> None:
    """r1 = 'the movie was good .' (5 words + EOS), P1 as in test_hand_computed_log_prob;
    r2 = 'i loved the film .': 0.25 * 0.85 (no did) * 0.7 (no intens) * 1/12 * 0.55
         * [0.3 * (0.85/3) * 0.9 + 0.7 * (0.15/3) * 0.4]  (3 positive verbs).
    entropy = (-ln P1 - ln P2) / (6 + 6)."""
    p1 = 0.75 / 12 / 4 * 0.85 * 0.7 * 0.55 * (0.3 * 0.85 / 8 * 0.9 + 0.7 * 0.15 / 8 * 0.4)
    p2 = 0.25 * 0.85 * 0.7 / 12 * 0.55 * (0.3 * 0.85 / 3 * 0.9 + 0.7 * 0.15 / 3 * 0.4)
    reviews = [W("the movie was good ."), W("i loved the film .")]
    h = G.entropy_per_word(reviews)
    assert h == pytest.approx((-math.log(p1) - math.log(p2)) / 12, abs=1e-12)


def test_entropy_per_word_on_samples_positive_finite() -> None:
    rng = random.Random(5)
    h = G.entropy_per_word([G.sample(rng) for _ in range(500)])
    assert 0 < h < math.inf
