"""A chat model and a conversational preference file made outside the harness, the way a user would bring them.

Not a test module: tests import it (`from chat_models import make_llama_chat, write_conversations`).

The model is a Llama architecture with a byte-level BPE tokenizer trained here, a ChatML-style chat template that
writes its own BOS, an end-of-turn token `<|im_end|>` that is *not* the tokenizer's EOS (`</s>`), and no pad
token: the three things a harness most often gets wrong with a real chat model. It is pretrained for a few
seconds on the conversations so that it ends its turns.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch

from plugins.tasks.grammar import ReviewGrammar

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SYSTEM = "you write short movie reviews ."


def conversations(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """UltraFeedback's schema: `prompt` (text) and `chosen`/`rejected` as whole conversations (the user's turn,
    then the reply). Every fifth row has a system prompt, every seventh an earlier exchange (multi-turn)."""
    rng = random.Random(seed)
    grammar = ReviewGrammar()
    rows = []
    for i in range(n):
        opening = " ".join(grammar.sample_prompt(rng, 2, 4))
        words = opening.split()
        good = " ".join(grammar.sample(rng, mood="positive", prefix=words)[len(words) :])
        bad = " ".join(grammar.sample(rng, mood="negative", prefix=words)[len(words) :])
        history: list[dict[str, str]] = []
        if i % 5 == 0:
            history.append({"role": "system", "content": SYSTEM})
        if i % 7 == 0:
            history += [{"role": "user", "content": "the cast"}, {"role": "assistant", "content": "was fine ."}]
        user = {"role": "user", "content": opening}
        rows.append(
            {
                "prompt": opening,
                "chosen": [*history, user, {"role": "assistant", "content": good}],
                "rejected": [*history, user, {"role": "assistant", "content": bad}],
            }
        )
    return rows


def write_conversations(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def make_llama_chat(folder: Path, rows: list[dict[str, Any]], steps: int = 150, seed: int = 0) -> Path:
    """Train a tokenizer, pretrain a tiny Llama on the chosen conversations, `save_pretrained` both."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tokenizer.chat_template = TEMPLATE
    texts = [tokenizer.apply_chat_template(row["chosen"], tokenize=False) for row in rows]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(texts, trainer)
    bos = backend.token_to_id("<s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", model_max_length=256
    )
    tokenizer.chat_template = TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=bos,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    # the template writes <s> itself; encode without the tokenizer's own so it appears once
    encoded = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = rng.sample(encoded, 16)
        width = max(len(ids) for ids in batch)
        ids = torch.tensor([row + [0] * (width - len(row)) for row in batch])
        mask = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder
