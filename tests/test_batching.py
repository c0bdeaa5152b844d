"""Length-grouped batches (harness/batching.py) give the numbers of the unsplit batch, on less padding."""

from __future__ import annotations

import pytest
import torch

from harness.batching import length_groups
from plugins.algorithms.ppo import (
    by_length,
    logprobs_of,
    policy_loss,
    response_logits,
    sample_responses,
    truncate_after_eos,
    value_loss,
    values_of,
)

EOS, PAD = 2, 0


def test_groups_cover_every_row_once_shortest_first() -> None:
    lengths = [7, 3, 40, 3, 12, 8, 39, 5]
    groups = length_groups(lengths, call_cost=4)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    ordered = [lengths[i] for group in groups for i in group]
    assert ordered == sorted(lengths)
    assert len(groups) > 1


def test_one_outlier_gets_its_own_group_and_equal_rows_stay_together() -> None:
    lengths = [10] * 31 + [40]  # one response that never ended
    assert length_groups(lengths, fixed=5) == [list(range(31)), [31]]
    assert length_groups([12] * 16, fixed=5) == [list(range(16))]
    assert length_groups([]) == []


def test_splitting_only_when_the_padding_saved_pays_for_the_call() -> None:
    lengths = [10, 11]
    assert len(length_groups(lengths, call_cost=0)) == 2  # free calls: no padding at all
    assert len(length_groups(lengths, call_cost=1000)) == 1


def test_the_split_is_optimal_for_its_cost() -> None:
    """Exhaustive check on a small batch: no split into contiguous runs of the sorted rows costs less."""
    lengths, fixed, call_cost = [3, 4, 9, 10, 11, 30, 31, 40], 2, 12

    def cost(groups: list[list[int]]) -> int:
        return sum(len(g) * (fixed + max(lengths[i] for i in g)) + call_cost for g in groups)

    best = cost(length_groups(lengths, fixed, call_cost))
    n = len(lengths)
    for cuts in range(1 << (n - 1)):  # every way to cut the sorted rows into runs
        groups, current = [], [0]
        for i in range(1, n):
            if cuts >> (i - 1) & 1:
                groups.append(current)
                current = []
            current.append(i)
        groups.append(current)
        assert best <= cost(groups)


@pytest.fixture
def rollout() -> dict:
    """A tiny LM, a value model on another one, and a sampled batch of responses of unequal lengths."""
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

    from plugins.algorithms.ppo import ValueModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=12, n_positions=48, n_layer=2, n_embd=16, n_head=2, bos_token_id=1, eos_token_id=2)
    policy = GPT2LMHeadModel(config).eval()
    value_model = ValueModel(GPT2ForSequenceClassification(GPT2Config(**{**config.to_dict(), "num_labels": 1}))).eval()
    queries = torch.tensor([[0, 0, 1, 5], [0, 1, 6, 7], [1, 8, 9, 10], [0, 0, 1, 4]] * 4)
    query_mask = (queries != 0).long()
    raw, _ = sample_responses(policy, queries, query_mask, 30, 1.0, EOS, PAD, torch.Generator().manual_seed(1))
    responses, mask, _ = truncate_after_eos(raw, EOS, PAD)
    input_ids = torch.cat([queries, responses], dim=1)
    attention_mask = torch.cat([query_mask.bool(), mask], dim=1).long()
    assert len(set(mask.sum(1).tolist())) > 2, "the sample should have responses of several lengths"
    return {
        "policy": policy,
        "value_model": value_model,
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "responses": responses,
        "mask": mask,
        "context": queries.shape[1],
    }


def test_grouped_forward_passes_equal_one_pass_over_the_padded_batch(rollout: dict) -> None:
    ids, attention, responses, mask = (rollout[k] for k in ("input_ids", "attention_mask", "responses", "mask"))
    groups = length_groups(mask.sum(1), fixed=rollout["context"], call_cost=0)
    assert len(groups) > 2
    with torch.no_grad():
        grouped_logprobs, grouped_entropy = by_length(
            groups, ids, attention, responses, mask, lambda *a: logprobs_of(rollout["policy"], 0.7, True, *a)
        )
        full_logprobs, full_entropy = logprobs_of(rollout["policy"], 0.7, True, ids, attention, responses)
        (grouped_values,) = by_length(
            groups, ids, attention, responses, mask, lambda *a: values_of(rollout["value_model"], *a)
        )
        (full_values,) = values_of(rollout["value_model"], ids, attention, responses)
    real = mask.bool()
    torch.testing.assert_close(grouped_logprobs[real], full_logprobs[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped_entropy[real], full_entropy[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(grouped_values[real], full_values[real], atol=1e-5, rtol=0)
    assert not grouped_logprobs[~real].any()  # nothing past a row's end


def test_a_minibatch_loss_accumulated_by_length_group_has_the_minibatch_gradient(rollout: dict) -> None:
    """The PPO update's parts are normalised by the whole minibatch's token count: the summed gradient of the
    parts is the gradient of the minibatch's masked-mean loss."""
    policy, value_model, context = rollout["policy"], rollout["value_model"], rollout["context"]
    ids, attention, responses, mask = (rollout[k] for k in ("input_ids", "attention_mask", "responses", "mask"))
    generator = torch.Generator().manual_seed(2)
    old_logprobs = -torch.rand(mask.shape, generator=generator) * 3
    advantages = torch.randn(mask.shape, generator=generator)
    old_values, returns = torch.randn(mask.shape, generator=generator), torch.randn(mask.shape, generator=generator)
    parameters = [*policy.parameters(), *value_model.parameters()]

    def loss_of(rows: torch.Tensor, count: torch.Tensor | None) -> torch.Tensor:
        width = int(mask[rows].sum(1).max())
        cut_ids, cut_attention, m = ids[rows, : context + width], attention[rows, : context + width], mask[rows, :width]
        logits = response_logits(policy, cut_ids, cut_attention, context)
        logprobs = torch.log_softmax(logits, -1).gather(-1, responses[rows, :width, None]).squeeze(-1)
        pg, _, _ = policy_loss(logprobs, old_logprobs[rows, :width], advantages[rows, :width], m, 0.2, count)
        values = value_model(cut_ids, cut_attention)[:, context - 1 : -1]
        v, _ = value_loss(values, old_values[rows, :width], returns[rows, :width], m, 0.2, count)
        return pg + 0.1 * v

    rows = torch.arange(mask.shape[0])
    whole = torch.autograd.grad(loss_of(rows, None), parameters)
    count = mask.sum()
    accumulated = [torch.zeros_like(p) for p in parameters]
    for group in length_groups(mask.sum(1), fixed=context, call_cost=0):
        for total, grad in zip(accumulated, torch.autograd.grad(loss_of(rows[group], count), parameters), strict=True):
            total += grad
    for expected, actual in zip(whole, accumulated, strict=True):
        torch.testing.assert_close(actual, expected, atol=1e-6, rtol=1e-4)


def test_sampling_drops_ended_rows_and_keeps_each_row_its_own(rollout: dict) -> None:
    """Rows leave the sampling batch as they end; every row's tokens still follow its own prompt: sampling a
    row alone from the same state of the model gives logprobs equal to a full forward pass of its result."""
    policy = rollout["policy"]
    queries = torch.tensor([[0, 0, 1, 5], [0, 1, 6, 7], [1, 8, 9, 10]] * 6)
    raw, sampled = sample_responses(policy, queries, queries != 0, 40, 1.0, EOS, PAD, torch.Generator().manual_seed(5))
    responses, mask, _ = truncate_after_eos(raw, EOS, PAD)
    assert torch.equal(raw, responses), "every token after a row's EOS is padding"
    lengths = mask.sum(1)
    assert int((lengths < lengths.max()).sum()) >= len(lengths) // 4, "rows must have left the batch early"
    ids = torch.cat([queries, responses], dim=1)
    attention = torch.cat([(queries != 0), mask], dim=1).long()
    with torch.no_grad():
        (full,) = logprobs_of(policy, 1.0, False, ids, attention, responses)
    real = mask.bool()
    torch.testing.assert_close(sampled[real], full[real], atol=1e-4, rtol=0)
    assert not sampled[~real].any()
