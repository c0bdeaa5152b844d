"""`model=tiny_chat`: a Qwen2 chat model and its ChatML tokenizer, built from scratch on a small testbed."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

import pytest
import torch

from harness.errors import HarnessError
from plugins.models.tiny_chat import TinyChat, byte_level_bpe_tokenizer, conversations, render

SYSTEM = "You are a movie critic."


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    """A smoke-size model (~10 s on one core): (model dir, datasets dir, build metrics)."""
    from plugins.tasks.testbed import Testbed

    root = tmp_path_factory.mktemp("tiny_chat")
    data, out = root / "data", root / "model"
    Testbed(num_pretrain=3000, num_pretrain_heldout=200, num_sft=8, num_prompts=8, num_eval_prompts=32).build_datasets(
        data
    )
    small = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1}
    metrics = TinyChat(**small, intermediate_size=192, train={"steps": 400, "batch_size": 32}).build(out, data)
    return out, data, dict(metrics)


def test_conversations_split_each_review_into_a_user_turn_and_the_reply() -> None:
    reviews = ["a b c d e f", "a b", "a b c d e f g h i"]
    chats = conversations(reviews, random.Random(0), (2, 3), SYSTEM, 0.5)
    for chat in chats:
        user, reply = chat[-2]["content"], chat[-1]["content"]
        assert [m["role"] for m in chat[-2:]] == ["user", "assistant"]
        assert 2 <= len(user.split()) <= 3 and reply and f"{user} {reply}" in reviews
        assert chat[0] == {"role": "system", "content": SYSTEM} or len(chat) == 2
    assert len(chats) == 2  # "a b" leaves nothing to reply with
    assert conversations(reviews, random.Random(0), (2, 3), SYSTEM, 0.5) == chats  # seeded
    assert all(len(chat) == 2 for chat in conversations(reviews * 20, random.Random(1), (2, 3), SYSTEM, 0.0))


def test_saved_tokenizer_splits_text_as_the_one_the_model_was_trained_with(tmp_path: Path) -> None:
    """In a Qwen2 model's folder `AutoTokenizer` loads a `Qwen2Tokenizer`, which rebuilds its own pre-tokenizer
    (digits one by one, punctuation with the newlines after it); training used the same one."""
    from transformers import AutoTokenizer, Qwen2Config, Qwen2Tokenizer

    texts = [
        render([{"role": "user", "content": f"review {i}"}, {"role": "assistant", "content": "Fine, 12!"}])
        for i in range(20)
    ]
    trained = byte_level_bpe_tokenizer(texts, 300, 64)
    trained.save_pretrained(tmp_path)
    Qwen2Config().save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    odd = ["Hello, world!\n\n12 (ok)  x", texts[3], "don't   stop.\r\n<|im_end|>"]
    assert [loaded(t)["input_ids"] for t in odd] == [trained(t)["input_ids"] for t in odd]
    assert type(loaded) is type(trained) is Qwen2Tokenizer and loaded.chat_template == trained.chat_template


def test_tokenizer_renders_chatml_and_ends_turns_with_its_eos(built) -> None:
    from transformers import AutoTokenizer

    from harness.chat import end_of_turn_token

    out, data, metrics = built
    tokenizer = AutoTokenizer.from_pretrained(out)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "the movie"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nYou are a movie critic.<|im_end|>\n"
        "<|im_start|>user\nthe movie<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    reply = [*messages, {"role": "assistant", "content": "was great ."}]
    assert tokenizer.apply_chat_template(reply, tokenize=False).endswith("assistant\nwas great .<|im_end|>\n")
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert end_of_turn_token(tokenizer) == tokenizer.eos_token  # what the harness stops replies on
    assert tokenizer.model_max_length == 256 and len(tokenizer) == metrics["vocab_size"]
    # special tokens are one id each, and encoding text adds none
    assert len(tokenizer(prompt)["input_ids"]) == len(tokenizer(prompt.replace("<|im_start|>", ""))["input_ids"]) + 3
    assert not set(tokenizer("the movie was great .")["input_ids"]) & set(tokenizer.all_special_ids)
    from datasets import load_from_disk

    reviews = load_from_disk(str(data))["pretrain_heldout"]["text"][:50]
    assert all(tokenizer.decode(tokenizer(review)["input_ids"]) == review for review in reviews)
    assert metrics["heldout_reply_round_trip"] == 1.0


def test_model_is_qwen2_and_learned_the_conversations(built) -> None:
    """Held-out loss: far below log(vocab) (a uniform guess) and below the same architecture untrained."""
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

    from plugins.models.scratch import mean_token_loss

    out, data, metrics = built
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert isinstance(model, Qwen2ForCausalLM)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == model.config.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert metrics["heldout_loss"] < 0.4 * math.log(metrics["vocab_size"])
    assert metrics["tokens_trained"] > 0 and metrics["parameters"] == sum(p.numel() for p in model.parameters())

    texts = load_from_disk(str(data))["pretrain_heldout"]["text"][:64]
    chats = [
        [
            {"role": "user", "content": " ".join(t.split()[:3])},
            {"role": "assistant", "content": " ".join(t.split()[3:])},
        ]
        for t in texts
    ]
    rows = [tokenizer.apply_chat_template(chat, tokenize=True, return_dict=False)[:-1] for chat in chats]
    torch.manual_seed(0)
    untrained = AutoModelForCausalLM.from_config(model.config)
    trained_loss, untrained_loss = (mean_token_loss(m, rows, tokenizer.pad_token_id) for m in (model, untrained))
    assert trained_loss < 0.5 * untrained_loss
    assert trained_loss == pytest.approx(metrics["heldout_loss"], rel=0.3)


def test_samples_are_replies_that_end_their_turn(built) -> None:
    """Sampled as the harness samples: replies stop on `<|im_end|>` and do not open another turn.

    At temperature 1 over the whole vocabulary a small model samples an odd role word now and then (the default
    model: 2 replies in 512); one in ten is allowed here.
    """
    from datasets import load_from_disk

    from harness.generation import load_policy, sample_completions

    out, data, _ = built
    model, tokenizer = load_policy(out, "cpu")
    openings = load_from_disk(str(data))["eval_prompts"]["prompt"]
    prompts = [
        tokenizer.apply_chat_template(
            ([{"role": "system", "content": SYSTEM}] if i % 2 else []) + [{"role": "user", "content": opening}],
            add_generation_prompt=True,
            tokenize=False,
        )
        for i, opening in enumerate(openings)
    ]
    settings = {"max_new_tokens": 100, "seed": 0, "batch_size": 32, "temperature": 1.0, "top_k": 0, "top_p": 1.0}
    samples = sample_completions(model, tokenizer, prompts, settings, "cpu")
    ended = [ids[-1] == tokenizer.eos_token_id for ids in samples.token_ids]
    assert sum(ended) >= 0.8 * len(prompts)
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    new_turn = [
        start in ids or "\n" in text or bool({"user", "assistant", "system"} & set(text.split()))
        for ids, text in zip(samples.token_ids, samples.completions, strict=True)
    ]
    assert sum(new_turn) <= len(prompts) // 10
    assert all(samples.completions)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"prompt_min_words": 6, "prompt_max_words": 3}, "model.prompt_min_words=6"),
        ({"vocab_size": 200}, "model.vocab_size=200"),
        ({"system_prompt_fraction": 1.5}, "model.system_prompt_fraction=1.5"),
    ],
)
def test_bad_setting_is_one_line_naming_it(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(HarnessError) as error:
        TinyChat(**settings)
    assert str(error.value).startswith(named) and "expected" in str(error.value) and "\n" not in str(error.value)
