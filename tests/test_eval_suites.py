"""Evaluation suites on known answers: KL against an exact enumeration, win rate and distinct-n by hand."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from harness.generation import sample_completions, token_logprobs
from plugins.evals.diversity import distinct_n
from plugins.evals.kl import sequence_kl
from plugins.evals.win_rate import win_rate
from plugins.models.scratch import word_level_tokenizer

MAX_NEW = 3  # completions of at most 3 tokens: few enough to enumerate exactly


def tiny_model(seed: int, vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=16,
        n_embd=16,
        n_layer=1,
        n_head=2,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        resid_pdrop=0,
        embd_pdrop=0,
        attn_pdrop=0,
    )
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # sharpen the random logits so the two models differ clearly
        model.transformer.ln_f.weight.mul_(30)
    return model


def exact_sequence_kl(policy, reference, prompt_ids: list[int], tokens: list[int], eos: int) -> float:
    """KL(p || q) = sum over every complete completion y of p(y) log p(y)/q(y).

    A completion ends at EOS or after MAX_NEW tokens, so the outcomes are: sequences of non-EOS tokens of
    length < MAX_NEW followed by EOS, plus all length-MAX_NEW sequences (cut off). Each p(y) is the product
    of next-token probabilities, computed by running the model on the prefix.
    """

    def logp(model, completion: list[int]) -> float:
        ids = torch.tensor([prompt_ids + completion])
        logits = model(input_ids=ids).logits[0].log_softmax(-1)
        start = len(prompt_ids) - 1
        return sum(logits[start + i, t].item() for i, t in enumerate(completion))

    outcomes = []
    for length in range(MAX_NEW + 1):
        for body in itertools.product(tokens, repeat=length):
            if length < MAX_NEW:
                outcomes.append([*body, eos])
            else:
                outcomes.append(list(body))
    total, mass = 0.0, 0.0
    with torch.no_grad():
        for y in outcomes:
            lp, lq = logp(policy, y), logp(reference, y)
            total += math.exp(lp) * (lp - lq)
            mass += math.exp(lp)
    assert mass == pytest.approx(1.0, abs=1e-6)  # the outcomes cover every possibility
    return total


def test_kl_estimate_matches_exact_kl_by_enumeration() -> None:
    tokenizer = word_level_tokenizer(["a b c"], max_length=16)  # <pad> <bos> <eos> <unk> a b c
    vocab = len(tokenizer)
    policy, reference = tiny_model(0, vocab), tiny_model(1, vocab)
    prompt = "a"
    prompt_ids = tokenizer(prompt)["input_ids"]
    eos = tokenizer.eos_token_id
    non_eos = [i for i in range(vocab) if i != eos]
    exact = exact_sequence_kl(policy, reference, prompt_ids, non_eos, eos)

    n = 4000
    settings = {"seed": 7, "batch_size": 1000, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": MAX_NEW}
    samples = sample_completions(policy, tokenizer, [prompt] * n, settings, "cpu")
    mine, _ = token_logprobs(policy, tokenizer, [prompt] * n, samples.token_ids, 1.0, "cpu")
    theirs, _ = token_logprobs(reference, tokenizer, [prompt] * n, samples.token_ids, 1.0, "cpu")
    per_sample = sequence_kl(mine, theirs)
    mean = sum(per_sample) / n
    stderr = (sum((k - mean) ** 2 for k in per_sample) / (n - 1) / n) ** 0.5
    assert exact > 0.1  # the models really differ
    assert abs(mean - exact) < 4 * stderr


def test_logprobs_of_a_model_against_itself_give_zero_kl() -> None:
    tokenizer = word_level_tokenizer(["a b c"], max_length=16)
    model = tiny_model(0, len(tokenizer))
    settings = {"seed": 1, "batch_size": 8, "temperature": 1.0, "top_k": 0, "top_p": 1.0, "max_new_tokens": 4}
    samples = sample_completions(model, tokenizer, ["a", "a b"] * 4, settings, "cpu")
    lp, entropy = token_logprobs(model, tokenizer, ["a", "a b"] * 4, samples.token_ids, 1.0, "cpu")
    assert sequence_kl(lp, lp) == [0.0] * 8
    assert all(len(row) == len(ids) for row, ids in zip(lp, samples.token_ids, strict=True))
    assert all(0.0 <= h <= math.log(len(tokenizer)) + 1e-6 for row in entropy for h in row)


def test_win_rate_counts_ties_half() -> None:
    """policy 3 vs 1 (win), 2 vs 2 (tie), 0 vs 5 (loss), 4 vs 1 (win): (1 + 0.5 + 0 + 1) / 4 = 0.625."""
    rate, stderr = win_rate([3, 2, 0, 4], [1, 2, 5, 1])
    assert rate == 0.625
    # outcomes 1, .5, 0, 1: sample variance = (.375² + .125² + .625² + .375²) / 3 = 0.2292; / 4 -> sqrt = 0.2394
    assert stderr == pytest.approx(0.2394, abs=1e-4)
    assert win_rate([1, 1], [1, 1]) == (0.5, 0.0)


def test_distinct_n_counts_unique_ngrams_over_all_samples() -> None:
    """'a b a' and 'a b': unigrams a,b,a,a,b -> 2 unique of 5; bigrams ab,ba,ab -> 2 unique of 3."""
    assert distinct_n(["a b a", "a b"], 1) == pytest.approx(2 / 5)
    assert distinct_n(["a b a", "a b"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["a"], 2) == 0.0
