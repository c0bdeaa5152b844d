"""Sampling a policy on prompts: batched, KV-cached `generate`, same settings and seed for every policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm


def load_policy(path: Path, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path).to(device).eval()
    return model, tokenizer


@torch.no_grad()
def sample_completions(
    model: Any, tokenizer: Any, prompts: Sequence[str], settings: Mapping[str, Any], device: str
) -> tuple[list[str], list[int]]:
    """Sample one completion per prompt; returns the decoded completions and their lengths in tokens.

    Left padding keeps each prompt flush against its completion. The generator is re-seeded from
    `settings["seed"]`, so two policies sampled with the same settings draw the same random numbers.
    """
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(int(settings["seed"]))
    completions: list[str] = []
    lengths: list[int] = []
    batch_size = int(settings["batch_size"])
    batches = range(0, len(prompts), batch_size)
    try:
        for start in tqdm(batches, desc="sampling", leave=False, disable=len(batches) < 2):
            batch = list(prompts[start : start + batch_size])
            encoded = tokenizer(batch, return_tensors="pt", padding=True).to(device)
            output = model.generate(
                **encoded,
                do_sample=True,
                temperature=float(settings["temperature"]),
                top_k=int(settings["top_k"]),
                top_p=float(settings["top_p"]),
                max_new_tokens=int(settings["max_new_tokens"]),
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for row in new_tokens.tolist():
                length = next((i + 1 for i, t in enumerate(row) if t == tokenizer.eos_token_id), len(row))
                lengths.append(length)
                completions.append(tokenizer.decode(row[:length], skip_special_tokens=True).strip())
    finally:
        torch.random.set_rng_state(generator_state)
    return completions, lengths
