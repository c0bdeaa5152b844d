"""PPO's rollout: the prompts of each update, and responses sampled for them with a KV cache."""

from __future__ import annotations

import random
import typing
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from harness.api import HarnessError
from plugins.algorithms.ppo.models import position_ids


@torch.no_grad()
def sample_responses(
    model: Any,
    queries: torch.Tensor,
    query_mask: torch.Tensor,
    response_length: int,
    temperature: float,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample up to `response_length` tokens per (left-padded) query; stops early once every row has an EOS.

    A hand-written KV-cached loop: on the testbed it is ~25% faster than `generate` and draws from our own
    seeded generator. Rows that have ended leave the batch (and the cache) once a quarter of it has: the last
    long responses are sampled at a few rows' cost, not the whole batch's. Tokens after a row's EOS are `pad_id`.
    Returns (tokens, their sampling logprobs, 0 after EOS); the update recomputes the logprobs with one forward
    pass instead (Huang et al. 2024), and a test checks that the two agree.
    """
    batch = queries.shape[0]
    tokens = torch.full((batch, response_length), pad_id, dtype=torch.long, device=queries.device)
    logprobs = torch.zeros((batch, response_length), device=queries.device)
    rows = torch.arange(batch, device=queries.device)  # which query each row of the cache belongs to
    attention_mask = query_mask.long()
    positions = position_ids(attention_mask)
    output = model(input_ids=queries, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    cache, last_position = output.cache, positions[:, -1:]
    finished = torch.zeros(batch, dtype=torch.bool, device=queries.device)
    steps = 0
    for step in range(response_length):
        steps = step + 1
        step_logprobs = F.log_softmax(output.logits[:, -1].float() / temperature, dim=-1)
        token = torch.multinomial(step_logprobs.exp(), 1, generator=generator).squeeze(1)
        chosen = step_logprobs.gather(1, token.unsqueeze(1)).squeeze(1)
        token, chosen = token.masked_fill(finished, pad_id), chosen.masked_fill(finished, 0.0)
        tokens[rows, step], logprobs[rows, step] = token, chosen
        finished |= token == eos_id
        if finished.all():
            break
        if int(finished.sum()) >= max(1, len(rows) // 4):  # drop the rows that have ended
            keep = (~finished).nonzero().squeeze(1)
            cache.batch_select_indices(keep)
            rows, token, finished = rows[keep], token[keep], finished[keep]
            attention_mask, last_position = attention_mask[keep], last_position[keep]
        attention_mask = torch.cat([attention_mask, torch.ones_like(attention_mask[:, :1])], dim=1)
        last_position = last_position + 1
        output = model(
            input_ids=token.unsqueeze(1),
            attention_mask=attention_mask,
            position_ids=last_position,
            cache=cache,
            use_cache=True,
        )
        cache = output.cache
    return tokens[:, :steps], logprobs[:, :steps]


def prompt_batches(prompts: Sequence[str], batch_size: int, seed: int) -> typing.Iterator[list[str]]:
    """Endless batches of prompts: a fresh seeded shuffle each pass, incomplete last batch dropped."""
    if batch_size > len(prompts):  # no pass would hold a whole batch: the batches would never come
        raise HarnessError(
            f"algorithm.trainer.batch_size={batch_size}: more than the task's {len(prompts)} RL prompts; "
            f"expected at most {len(prompts)}"
        )
    return _shuffled_batches(prompts, batch_size, seed)


def _shuffled_batches(prompts: Sequence[str], batch_size: int, seed: int) -> typing.Iterator[list[str]]:
    rng = random.Random(seed)
    while True:
        order = list(range(len(prompts)))
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            yield [prompts[i] for i in order[start : start + batch_size]]
