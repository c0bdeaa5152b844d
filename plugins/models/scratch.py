"""A small GPT-2-style model and word-level tokenizer trained from scratch on the task's `pretrain` texts.

This is the testbed's base model: it knows the task's language (and its negative skew) and nothing else, so
every change alignment makes is visible. Pretraining is a fixed recipe, not one of the compared
algorithms, so it is a plain loop: padded whole reviews, AdamW, warmup then cosine decay.

Every job of a sweep waits for this stage. With `train.micro_batches` > 1 (`+model.train.micro_batches=2`) each
step's gradient is the sum of that many micro-batches, computed at once on the cores the waiting jobs lend
(harness.cores), one torch thread each: the weights are the same bits however many cores helped (more torch threads
would change them, and gain ~5% here). Each step differs from the whole batch's by rounding, so a model
trained that way is another model: docs/benchmarks.md compares the demo's tables.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.api import HarnessError, build_cores, progress_step, progress_steps, torch_threads

log = logging.getLogger(__name__)

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"


def word_level_tokenizer(texts: Sequence[str], max_length: int) -> Any:
    """A whitespace word-level tokenizer over the words of `texts`; encodings start with <bos>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = sorted({word for text in texts for word in text.split()})
    vocab = {token: i for i, token in enumerate([PAD, BOS, EOS, UNK, *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_length,
    )


def encode_reviews(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """<bos> words <eos> for each text: the model learns where a review ends."""
    return [[*ids, tokenizer.eos_token_id] for ids in tokenizer(list(texts))["input_ids"]]


def batch_tensors(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    labels = input_ids.masked_fill(mask == 0, -100)
    return input_ids, mask, labels


def length_buckets(rows: Sequence[Sequence[int]], batch_size: int, rng: random.Random) -> Iterator[list[Sequence[int]]]:
    """Endless shuffled batches of reviews of similar length.

    Reviews run from 5 to ~90 tokens; random batches would be mostly padding. Sorting each shuffled
    window of 50 batches by length and then shuffling the batches keeps the data order random while
    cutting the padded width to near the real one (about 3x faster here).
    """
    window = batch_size * 50
    while True:
        order = list(range(len(rows)))
        rng.shuffle(order)
        for start in range(0, len(order) - batch_size + 1, window):
            chunk = sorted(order[start : start + window], key=lambda i: len(rows[i]))
            batches = [chunk[i : i + batch_size] for i in range(0, len(chunk) - batch_size + 1, batch_size)]
            rng.shuffle(batches)
            for batch in batches:
                yield [rows[i] for i in batch]


@torch.no_grad()
def mean_token_loss(model: Any, rows: Sequence[Sequence[int]], pad_id: int, batch_size: int = 256) -> float:
    """Mean next-token NLL (nats) over every predicted token, <eos> included: comparable to the entropy."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        input_ids, mask, labels = batch_tensors(rows[start : start + batch_size], pad_id)
        logits = model(input_ids=input_ids, attention_mask=mask).logits[:, :-1]
        targets = labels[:, 1:]
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100, reduction="sum"
        )
        total += losses.item()
        count += int((targets != -100).sum())
    model.train()
    return total / count


class ScratchGPT2:
    """`model=tiny_gpt2`: GPT-2 architecture at testbed size, pretrained here on the task's texts."""

    def __init__(
        self,
        name: str = "tiny_gpt2",
        seed: int = 0,
        n_layer: int = 4,
        n_embd: int = 128,
        n_head: int = 4,
        n_positions: int = 64,
        dropout: float = 0.0,
        activation: str = "gelu_pytorch_tanh",
        train: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.seed = seed
        self.architecture = {"n_layer": n_layer, "n_embd": n_embd, "n_head": n_head, "n_positions": n_positions}
        self.dropout = dropout
        self.activation = activation
        self.train_settings = {
            "steps": 800,
            "batch_size": 64,
            "learning_rate": 3e-3,
            "warmup_steps": 100,
            "weight_decay": 0.01,
            "micro_batches": 1,
            **(train or {}),
        }

    def build(self, out_dir: Path, datasets_dir: Path) -> dict[str, Any]:
        from datasets import load_from_disk
        from transformers import GPT2Config, GPT2LMHeadModel

        splits = load_from_disk(str(datasets_dir))
        texts, heldout_texts = splits["pretrain"]["text"], splits["pretrain_heldout"]["text"]
        tokenizer = word_level_tokenizer(texts, self.architecture["n_positions"])
        torch.manual_seed(self.seed)
        config = GPT2Config(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            resid_pdrop=self.dropout,
            embd_pdrop=self.dropout,
            attn_pdrop=self.dropout,
            activation_function=self.activation,
            **self.architecture,
        )
        model = GPT2LMHeadModel(config)
        rows = self._fit(encode_reviews(tokenizer, texts), "pretrain")
        heldout = self._fit(encode_reviews(tokenizer, heldout_texts), "pretrain_heldout")
        train_loss, tokens = self._pretrain(model, rows, tokenizer.pad_token_id)
        heldout_loss = mean_token_loss(model, heldout, tokenizer.pad_token_id)
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        params = sum(p.numel() for p in model.parameters())
        log.info("base model: %.2fM parameters, held-out loss %.4f nats/token", params / 1e6, heldout_loss)
        return {"parameters": params, "train_loss": train_loss, "heldout_loss": heldout_loss, "tokens_trained": tokens}

    def _fit(self, rows: list[list[int]], split: str) -> list[list[int]]:
        """Drop the (rare) texts longer than the context instead of training on cut-off reviews."""
        limit = self.architecture["n_positions"]
        kept = [row for row in rows if len(row) <= limit]
        if len(kept) < len(rows):
            log.warning(
                "%s: dropped %d of %d texts longer than n_positions=%d", split, len(rows) - len(kept), len(rows), limit
            )
        if not kept:
            raise HarnessError(f"model.n_positions={limit}: every {split} text is longer than that")
        return kept

    def _pretrain(self, model: Any, rows: list[list[int]], pad_id: int) -> tuple[float, int]:
        return pretrain(model, rows, pad_id, self.train_settings, self.seed, "pretraining base model")


def pretrain(
    model: Any, rows: list[list[int]], pad_id: int, settings: Mapping[str, Any], seed: int, desc: str
) -> tuple[float, int]:
    """The fixed pretraining recipe of the testbed's base models: AdamW, linear warmup then cosine decay, batches of
    similar length (each step's gradient from `micro_batches` parts: see MicroBatches). Returns the smoothed final loss
    and the tokens trained on."""
    steps, batch_size = int(settings["steps"]), int(settings["batch_size"])
    if batch_size > len(rows):  # `length_buckets` would never fill a batch: pretraining would hang
        log.warning("model.train.batch_size=%d: only %d texts to pretrain on; using that", batch_size, len(rows))
        batch_size = len(rows)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings["learning_rate"], weight_decay=settings["weight_decay"], betas=(0.9, 0.98)
    )
    warmup = int(settings["warmup_steps"])

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    batches = length_buckets(rows, batch_size, random.Random(seed))
    parts = int(settings.get("micro_batches", 1))
    if parts < 1:
        raise HarnessError(f"model.train.micro_batches={parts}: expected a whole number of at least 1")
    micro_batches = MicroBatches(model, parts) if parts > 1 else None
    model.train()
    running, tokens = None, 0
    progress = tqdm(range(steps), desc=desc, leave=False, mininterval=2)
    progress_steps("pretrain", total=steps)  # a sweep's live view counts them too (no-op elsewhere)
    with torch_threads(1 if micro_batches else None), micro_batches or nullcontext():
        for step in progress:
            if micro_batches is None:
                input_ids, mask, labels = batch_tensors(next(batches), pad_id)
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                step_loss, step_tokens = loss.item(), int(mask.sum())
            else:
                step_loss, step_tokens = micro_batches.backward(next(batches), pad_id)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += step_tokens
            running = step_loss if running is None else 0.98 * running + 0.02 * step_loss
            progress.set_postfix(loss=f"{running:.3f}", refresh=False)
            progress_step(step + 1)
    return float(running or 0.0), tokens


class MicroBatches:
    """A batch's gradient as the sum of `parts` micro-batches' (each's summed token loss over the batch's predicted
    tokens: the batch's mean loss), added in a fixed order, so the result does not depend on how many ran at once.
    They run on as many threads as `build_cores()` allows at each step (one torch thread each)."""

    def __init__(self, model: Any, parts: int) -> None:
        self.model, self.parts = model, parts
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.pools: dict[int, ThreadPoolExecutor] = {}

    def __enter__(self) -> MicroBatches:
        return self

    def __exit__(self, *_: object) -> None:
        for pool in self.pools.values():
            pool.shutdown()

    def backward(self, batch: Sequence[Sequence[int]], pad_id: int) -> tuple[float, int]:
        """Set the parameters' gradients for `batch`; returns its mean loss and its tokens."""
        size = -(-len(batch) // self.parts)
        parts = [batch[i : i + size] for i in range(0, len(batch), size)]
        predicted = sum(len(row) - 1 for row in batch)  # every token after <bos>: what the loss averages over
        workers = min(len(parts), build_cores())
        if workers > 1:
            if workers not in self.pools:  # one torch thread per worker, as in the main thread
                self.pools[workers] = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,))
            done = list(self.pools[workers].map(lambda part: self._gradients(part, pad_id, predicted), parts))
        else:
            done = [self._gradients(part, pad_id, predicted) for part in parts]
        for i, param in enumerate(self.params):
            grad = done[0][0][i]
            for gradients, _, _ in done[1:]:
                grad = grad + gradients[i]
            param.grad = grad
        return sum(loss for _, loss, _ in done), sum(tokens for _, _, tokens in done)

    def _gradients(
        self, rows: Sequence[Sequence[int]], pad_id: int, predicted: int
    ) -> tuple[list[torch.Tensor], float, int]:
        input_ids, mask, labels = batch_tensors(rows, pad_id)
        logits = self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits[:, :-1]
        targets = labels[:, 1:].reshape(-1)
        summed = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets, reduction="sum")
        loss = summed / predicted  # cross_entropy ignores the padding's -100 labels
        gradients = torch.autograd.grad(loss, self.params, allow_unused=True)
        gradients = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, gradients, strict=True)]
        return gradients, loss.item(), int(mask.sum())
