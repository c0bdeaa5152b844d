"""A small Qwen2-style chat model and byte-level BPE tokenizer trained from scratch on the task's `pretrain` texts.

The chat counterpart of `model=tiny_gpt2`: each review becomes a one-turn conversation (the user writes its
opening words, the assistant the rest, sometimes under a system prompt), rendered with a ChatML template whose
end-of-turn token `<|im_end|>` is the tokenizer's EOS, as in Qwen2 chat models. So the chat code paths (templates,
system prompts, stopping at the end of a turn) run end to end on the testbed, in a model small enough for CPUs.
Pretraining is a fixed recipe, not one of the compared algorithms: a plain loop over whole conversations.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from harness.api import HarnessError
from plugins.models.scratch import mean_token_loss, pretrain

log = logging.getLogger(__name__)

PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, IM_START, IM_END)  # ids 0, 1, 2
BYTES = 256  # the byte-level alphabet every BPE vocabulary starts from

# ChatML, as Qwen2 writes it: the end-of-turn token follows the content directly, so a reply stops at its last word.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

Conversation = list[dict[str, str]]


@functools.cache
def _compiled_template() -> Any:
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # the environment transformers renders templates in

    return ImmutableSandboxedEnvironment().from_string(CHAT_TEMPLATE)


def render(messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = False) -> str:
    """`messages` in the chat template, without a tokenizer (the tokenizer is trained on these texts)."""
    return _compiled_template().render(messages=messages, add_generation_prompt=add_generation_prompt)


def conversations(
    texts: Sequence[str],
    rng: random.Random,
    prompt_words: tuple[int, int],
    system_prompt: str,
    system_prompt_fraction: float,
) -> list[Conversation]:
    """One turn per review: the user writes its first k words, the assistant the rest.

    Reviews with no words left for the assistant are skipped.
    """
    result = []
    for text in texts:
        words = text.split()
        k = rng.randint(*prompt_words)
        with_system = rng.random() < system_prompt_fraction  # drawn for every review: skips shift nothing
        if len(words) <= k:
            continue
        turn = [
            {"role": "user", "content": " ".join(words[:k])},
            {"role": "assistant", "content": " ".join(words[k:])},
        ]
        result.append([{"role": "system", "content": system_prompt}, *turn] if with_system else turn)
    return result


def conversation_text(conversation: Sequence[Mapping[str, str]]) -> str:
    """What the model is trained on: the rendered conversation, ending at the final `<|im_end|>`."""
    return render(conversation).removesuffix("\n")


def byte_level_bpe_tokenizer(texts: Sequence[str], vocab_size: int, max_length: int) -> Any:
    """A byte-level BPE tokenizer trained on `texts`, as a `Qwen2Tokenizer` with the chat template; it adds no BOS.

    `AutoTokenizer` loads a Qwen2 model's tokenizer as `Qwen2Tokenizer`, which rebuilds its own normalizer and
    pre-tokenizer around the saved merges. Training with exactly those (taken from a blank one) keeps the loaded
    tokenizer splitting text as the model was trained on it.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    pipeline = Qwen2Tokenizer().backend_tokenizer
    backend = Tokenizer(models.BPE())
    backend.normalizer = pipeline.normalizer
    backend.pre_tokenizer = pipeline.pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # the text between special tokens only: merges spent on pieces of `<|im_start|>` would never be used
    special = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))
    backend.train_from_iterator((piece for text in texts for piece in special.split(text) if piece), trainer=trainer)
    bpe = json.loads(backend.to_str())["model"]
    tokenizer = Qwen2Tokenizer(
        vocab=bpe["vocab"],
        merges=[tuple(merge) for merge in bpe["merges"]],
        eos_token=IM_END,  # the end of a turn is the end of a sequence: every stage stops a reply there
        pad_token=PAD,
        extra_special_tokens=[IM_START],
        model_max_length=max_length,
        clean_up_tokenization_spaces=False,  # decode(encode(text)) == text, " ." included
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


class TinyChat:
    """`model=tiny_chat`: Qwen2 architecture at testbed size, pretrained here on the task's texts as chats."""

    def __init__(
        self,
        name: str = "tiny_chat",
        seed: int = 0,
        prompt_min_words: int = 2,
        prompt_max_words: int = 5,
        system_prompt: str = "You are a movie critic.",
        system_prompt_fraction: float = 0.2,
        vocab_size: int = 1024,
        hidden_size: int = 128,
        num_hidden_layers: int = 4,
        num_attention_heads: int = 4,
        num_key_value_heads: int = 2,
        intermediate_size: int = 384,
        max_position_embeddings: int = 256,
        tie_word_embeddings: bool = True,
        dropout: float = 0.0,
        train: Mapping[str, Any] | None = None,
    ) -> None:
        if not 1 <= prompt_min_words <= prompt_max_words:
            raise HarnessError(
                f"model.prompt_min_words={prompt_min_words}, model.prompt_max_words={prompt_max_words}: "
                "expected 1 <= prompt_min_words <= prompt_max_words"
            )
        if not 0.0 <= system_prompt_fraction <= 1.0:
            raise HarnessError(
                f"model.system_prompt_fraction={system_prompt_fraction!r}: expected a fraction in [0, 1]"
            )
        if system_prompt_fraction > 0 and not system_prompt.strip():
            raise HarnessError(f"model.system_prompt={system_prompt!r}: expected text when system_prompt_fraction > 0")
        if vocab_size <= BYTES + len(SPECIAL_TOKENS):
            raise HarnessError(
                f"model.vocab_size={vocab_size}: expected more than {BYTES + len(SPECIAL_TOKENS)} "
                f"(the {BYTES} bytes and {len(SPECIAL_TOKENS)} special tokens, plus merges)"
            )
        if num_attention_heads % num_key_value_heads or hidden_size % num_attention_heads:
            raise HarnessError(
                f"model.hidden_size={hidden_size}, model.num_attention_heads={num_attention_heads}, "
                f"model.num_key_value_heads={num_key_value_heads}: expected each to divide the one before"
            )
        self.name = name
        self.seed = seed
        self.prompt_words = (prompt_min_words, prompt_max_words)
        self.system_prompt = system_prompt
        self.system_prompt_fraction = system_prompt_fraction
        self.vocab_size = vocab_size
        self.architecture = {
            "hidden_size": hidden_size,
            "num_hidden_layers": num_hidden_layers,
            "num_attention_heads": num_attention_heads,
            "num_key_value_heads": num_key_value_heads,
            "intermediate_size": intermediate_size,
            "max_position_embeddings": max_position_embeddings,
            "tie_word_embeddings": tie_word_embeddings,
        }
        self.dropout = dropout
        self.train_settings = {
            "steps": 800,
            "batch_size": 40,
            "learning_rate": 3e-3,
            "warmup_steps": 100,
            "weight_decay": 0.01,
            **(train or {}),
        }

    def build(self, out_dir: Path, datasets_dir: Path) -> dict[str, Any]:
        from datasets import load_from_disk
        from transformers import Qwen2Config, Qwen2ForCausalLM

        splits = load_from_disk(str(datasets_dir))
        chats = self._conversations(splits["pretrain"]["text"], "pretrain")
        heldout_chats = self._conversations(splits["pretrain_heldout"]["text"], "pretrain_heldout")
        texts = [conversation_text(c) for c in chats]
        context = self.architecture["max_position_embeddings"]
        tokenizer = byte_level_bpe_tokenizer(texts, self.vocab_size, context)
        torch.manual_seed(self.seed)
        config = Qwen2Config(
            vocab_size=len(tokenizer),
            bos_token_id=None,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            attention_dropout=self.dropout,
            **self.architecture,
        )
        model = Qwen2ForCausalLM(config)
        rows = self._fit(tokenizer(texts)["input_ids"], "pretrain")
        heldout = self._fit(tokenizer([conversation_text(c) for c in heldout_chats])["input_ids"], "pretrain_heldout")
        train_loss, tokens = self._pretrain(model, rows, tokenizer.pad_token_id)
        heldout_loss = mean_token_loss(model, heldout, tokenizer.pad_token_id)
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.bos_token_id = None
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        replies = [c[-1]["content"] for c in heldout_chats]
        round_trips = sum(tokenizer.decode(tokenizer.encode(r, add_special_tokens=False)) == r for r in replies)
        params = sum(p.numel() for p in model.parameters())
        log.info("chat base model: %.2fM parameters, held-out loss %.4f nats/token", params / 1e6, heldout_loss)
        return {
            "parameters": params,
            "train_loss": train_loss,
            "heldout_loss": heldout_loss,
            "tokens_trained": tokens,
            "vocab_size": len(tokenizer),
            "heldout_reply_round_trip": round_trips / len(replies),
        }

    def _conversations(self, texts: Sequence[str], split: str) -> list[Conversation]:
        rng = random.Random(f"{self.seed}/{split}")  # one stream per split: resizing one changes no other
        chats = conversations(texts, rng, self.prompt_words, self.system_prompt, self.system_prompt_fraction)
        if not chats:
            raise HarnessError(
                f"model.prompt_min_words={self.prompt_words[0]}: every {split} text is too short to split "
                "into a user turn and a reply"
            )
        return chats

    def _fit(self, rows: list[list[int]], split: str) -> list[list[int]]:
        """Drop the (rare) conversations longer than the context instead of training on cut-off ones."""
        limit = self.architecture["max_position_embeddings"]
        kept = [row for row in rows if len(row) <= limit]
        if len(kept) < len(rows):
            log.warning(
                "%s: dropped %d of %d conversations longer than max_position_embeddings=%d",
                split, len(rows) - len(kept), len(rows), limit,
            )  # fmt: skip
        if not kept:
            raise HarnessError(f"model.max_position_embeddings={limit}: every {split} conversation is longer than that")
        return kept

    def _pretrain(self, model: Any, rows: list[list[int]], pad_id: int) -> tuple[float, int]:
        """`model=tiny_gpt2`'s recipe: AdamW, warmup then cosine decay; returns the smoothed loss and tokens."""
        return pretrain(model, rows, pad_id, self.train_settings, self.seed, "pretraining chat base model")
