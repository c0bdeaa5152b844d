"""Sampling a policy on prompts: batched, KV-cached `generate`, same settings and seed for every policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.guards import context_size, keep_last, prompt_room, warn_long_prompts


def load_policy(path: Path, device: str, merge: bool = False) -> tuple[Any, Any]:
    """A saved policy and its tokenizer, ready to sample. An adapter stage (peft=lora) comes as a PeftModel over its
    start, so the start policy is the same model with the adapter off (harness.adapters); `merge=True`: one plain
    model instead (faster to sample from, when nothing needs the start)."""
    from transformers import AutoTokenizer

    from harness.adapters import load_model

    tokenizer = AutoTokenizer.from_pretrained(path)
    # safetensors only: a pickled pytorch_model.bin (a user's checkpoint, a tampered cache) runs code on load
    model = load_model(path, device=device, merge=merge).eval()
    return model, tokenizer


@dataclass
class Samples:
    """Completions as text, their lengths in tokens, and the sampled token ids (EOS included where emitted)."""

    completions: list[str]
    lengths: list[int]
    token_ids: list[list[int]]


@torch.no_grad()
def sample_completions(
    model: Any, tokenizer: Any, prompts: Sequence[str], settings: Mapping[str, Any], device: str
) -> Samples:
    """Sample one completion per prompt.

    Left padding keeps each prompt flush against its completion. The generator is re-seeded from
    `settings["seed"]`, so two policies sampled with the same settings draw the same random numbers.
    A prompt too long for the model's context beside `max_new_tokens` keeps its last tokens, with a warning.
    """
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"
    max_new_tokens = int(settings["max_new_tokens"])
    room = prompt_room(model, max_new_tokens)
    # Left truncation, as lm-eval does with an over-long context: the end of a prompt is what its completion
    # continues. Every policy is sampled on the same cut prompts, so the comparison stays fair.
    action = f"sampling from their last {room} tokens"
    warn_long_prompts("generation", tokenizer, prompts, room, max_new_tokens, "generation.max_new_tokens", action)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(int(settings["seed"]))
    samples = Samples([], [], [])
    batch_size = int(settings["batch_size"])
    batches = range(0, len(prompts), batch_size)
    try:
        for start in tqdm(batches, desc="sampling", leave=False, disable=len(batches) < 2):
            batch = list(prompts[start : start + batch_size])
            encoded = tokenizer(batch, return_tensors="pt", padding=True, truncation=room is not None, max_length=room)
            encoded = encoded.to(device)
            output = model.generate(
                **encoded,
                do_sample=True,
                temperature=float(settings["temperature"]),
                top_k=int(settings["top_k"]),
                top_p=float(settings["top_p"]),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for row in new_tokens.tolist():
                length = next((i + 1 for i, t in enumerate(row) if t == tokenizer.eos_token_id), len(row))
                samples.lengths.append(length)
                samples.token_ids.append(row[:length])
                samples.completions.append(tokenizer.decode(row[:length], skip_special_tokens=True).strip())
    finally:
        torch.random.set_rng_state(generator_state)
    return samples


@torch.no_grad()
def token_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    completion_ids: Sequence[Sequence[int]],
    temperature: float,
    device: str,
    batch_size: int = 128,
) -> tuple[list[list[float]], list[list[float]]]:
    """Per-token log-probabilities of given completions (the exact sampled ids) and the entropy of the
    next-token distribution at each of those positions, both from temperature-scaled logits, as sampled.

    A prompt that does not fit the model's context beside its completion keeps its last tokens (sampling cut it
    too, and warned), so a few more of them than sampling saw when the completion is shorter than the most allowed.
    """
    logprobs: list[list[float]] = []
    entropies: list[list[float]] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompt_ids = tokenizer(list(prompts))["input_ids"]
    context = context_size(model)
    if context is not None:
        special = set(tokenizer.all_special_ids)
        prompt_ids = [
            keep_last(ids, context - len(completion), special)
            for ids, completion in zip(prompt_ids, completion_ids, strict=True)
        ]
    for start in range(0, len(prompts), batch_size):
        rows = [
            list(p) + list(c)
            for p, c in zip(
                prompt_ids[start : start + batch_size], completion_ids[start : start + batch_size], strict=True
            )
        ]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):  # right padding: positions stay 0..n-1 without position_ids
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=mask.to(device)).logits.float() / temperature
        log_softmax = torch.log_softmax(logits[:, :-1], dim=-1)
        picked = log_softmax.gather(-1, input_ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        entropy = -(log_softmax.exp() * log_softmax).sum(-1)
        for i, completion in enumerate(completion_ids[start : start + batch_size]):
            first = len(prompt_ids[start + i]) - 1  # logits at position t predict token t + 1
            last = first + len(completion)
            logprobs.append(picked[i, first:last].tolist())
            entropies.append(entropy[i, first:last].tolist())
    return logprobs, entropies
