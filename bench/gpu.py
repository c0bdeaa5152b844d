"""GPU check: the harness's SFT, DPO, GRPO and PPO on a Qwen2.5-0.5B-shaped model, against plain TRL scripts.

    python -m bench gpu [--methods sft,dpo,grpo,ppo] [--modes full,lora] [--out results/bench]
    python -m bench gpu --device cpu --tiny [--out DIR]   # the same code path on CPU, a 2-layer model (the tests)

The model is Qwen2-architecture at Qwen2.5-0.5B's shape (24 layers, hidden 896, 14 heads, 2 KV heads, its
151,936-row embedding: 494M parameters), randomly initialised and saved in bf16, with a byte-level BPE tokenizer
(Qwen's special tokens, a ChatML template) trained here on made-up words: nothing comes from a hub. The data are
conversational and of fixed length (random words, a word a token: 128-word prompts and completions, preference
pairs, prompts), so every step does the same work.

For each method (SFT, DPO, GRPO: TRL's trainers) and mode (full fine-tuning; LoRA r=16 on every linear layer,
through TRL's `peft_config`), the same model, data and trainer settings are trained twice in this process, in
alternating order: through `harness.training.fit` (the harness's path: its trainer arguments, callbacks and
save) and by a plain TRL script (the trainer built and `train()`ed directly). Each side reports, over the steps
after the first few (warm-up: kernel selection, allocator growth):
  steps/s    optimizer steps per second, from a callback's timestamps (after a device synchronisation)
  tokens/s   non-pad tokens of the batches trained on (TRL's own count: the attention masks of SFT's and DPO's
             batches; GRPO's prompts and completions) per second
  peak GiB   torch.cuda.max_memory_allocated from trainer construction to the end of train() (the models are
             loaded on the CPU; the trainer moves them); on CPU, the process's VmHWM (reset first)
and the harness / plain ratios of steps/s and peak memory. PPO is the harness's own loop
(plugins/algorithms/ppo/: TRL 1.16 has no PPOTrainer, so there is nothing plain to compare with), full fine-tuning
only (train_ppo takes no LoRA option), its peak including the policy, reference and value models it loads itself.
A cell that fails (out of memory, a TRL API change) is a row with its error; the others still run.

Writes results/bench/gpu.json and gpu.md (gpu-tiny.* with --tiny) and prints the table. Without a CUDA device
(and without --device cpu --tiny) it says so in one line and exits 0. It measures one GPU: on a machine with several,
set CUDA_VISIBLE_DEVICES to one (transformers' Trainer would otherwise spread a batch over all of them).

Budget on one H200: about 5 minutes, 8 at most (an estimate: not yet timed there). Per side: SFT and DPO 3 warm-up
+ 20 measured steps of 8 sequences (266 tokens a sequence with the template, twice that for a DPO pair); GRPO 2 + 8
steps of 8 completions (2 prompts x 4) of 64 tokens; PPO 2 + 8 updates of 8 episodes of 64 tokens. Model loads,
trainer builds and the harness's save are outside the measured span but inside the budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shutil
import string
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import OUT, composed, machine, make_run

NO_DEVICE = "bench gpu: no CUDA device here; nothing measured (run it on a GPU machine, or --device cpu --tiny)"
METHODS = ("sft", "dpo", "grpo", "ppo")
MODES = ("full", "lora")
TRAINERS = {
    "sft": ("SFTTrainer", "SFTConfig"),
    "dpo": ("DPOTrainer", "DPOConfig"),
    "grpo": ("GRPOTrainer", "GRPOConfig"),
}
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Scale:
    """The model's shape, the data's lengths and how many steps each side trains."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int | None  # embedding rows; None: the tokenizer's size
    words: int  # the tokenizer's vocabulary (one word, one token)
    prompt_words: int
    completion_words: int  # SFT completions, each side of a DPO pair
    generated_tokens: int  # GRPO completions and PPO responses (a random model never stops early)
    batch_size: int  # sequences per optimizer step (GRPO: completions; PPO: episodes per update)
    num_generations: int  # GRPO's group size
    warmup_steps: int  # steps before the measured span
    measured_steps: int  # SFT and DPO
    rl_measured_steps: int  # GRPO and PPO, whose steps sample


QWEN25_05B = Scale(896, 24, 14, 2, 4864, 151_936, 2000, 128, 128, 64, 8, 4, 3, 20, 8)
TINY = Scale(64, 2, 4, 2, 128, None, 300, 16, 16, 8, 4, 2, 1, 2, 2)


# -- the testbed: tokenizer, model, data -----------------------------------------------------------------------


def make_words(count: int) -> list[str]:
    """`count` distinct lowercase words of 3-7 letters (letters only: Qwen's pre-tokenizer splits digits apart)."""
    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < count:
        words.add("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(3, 7))))
    return sorted(words)


def make_tokenizer(words: Sequence[str]) -> Any:
    """A byte-level BPE trained on `words` until each is one token (with or without a leading space), as a
    Qwen2Tokenizer with Qwen's special tokens and ChatML template (`<|im_end|>` ends a turn). A text of n words is
    n tokens. (transformers loads any tokenizer beside a Qwen2 model as a Qwen2Tokenizer: it must be one.)"""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1_000_000,  # merge until every word is whole
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([*words, *(f" {word}" for word in words), "system", "user", "assistant"], trainer)
    model = json.loads(backend.to_str())["model"]
    return Qwen2Tokenizer(
        vocab=model["vocab"],
        merges=[tuple(merge) for merge in model["merges"]],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        additional_special_tokens=["<|im_start|>"],
        chat_template=CHATML,
    )


def make_model(folder: Path, scale: Scale, device: str) -> int:
    """A randomly initialised Qwen2 causal LM in bf16 with its tokenizer, saved in `folder`; returns its parameter
    count."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = make_tokenizer(make_words(scale.words))
    config = Qwen2Config(
        vocab_size=scale.vocab_size or len(tokenizer),
        hidden_size=scale.hidden_size,
        num_hidden_layers=scale.num_hidden_layers,
        num_attention_heads=scale.num_attention_heads,
        num_key_value_heads=scale.num_key_value_heads,
        intermediate_size=scale.intermediate_size,
        max_position_embeddings=32_768,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):  # initialising 0.5B parameters is seconds on a GPU, a minute on a CPU
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def make_data(scale: Scale) -> dict[str, Any]:
    """Conversational SFT rows, preference pairs and prompts of random words, enough for every step of a side."""
    from datasets import Dataset

    rng = random.Random(0)
    words = make_words(scale.words)

    def text(length: int) -> str:
        return " ".join(rng.choices(words, k=length))

    def prompt() -> list[dict[str, str]]:
        return [{"role": "user", "content": text(scale.prompt_words)}]

    def reply() -> list[dict[str, str]]:
        return [{"role": "assistant", "content": text(scale.completion_words)}]

    rows = scale.batch_size * (scale.warmup_steps + scale.measured_steps)
    prompts = scale.batch_size // scale.num_generations * (scale.warmup_steps + scale.rl_measured_steps)
    return {
        "sft": Dataset.from_list([{"prompt": prompt(), "completion": reply()} for _ in range(rows)]),
        "dpo": Dataset.from_list([{"prompt": prompt(), "chosen": reply(), "rejected": reply()} for _ in range(rows)]),
        "grpo": Dataset.from_list([{"prompt": prompt()} for _ in range(prompts)]),
    }


def completion_words(prompts: Sequence[Any], completions: Sequence[Any]) -> list[float]:
    """The reward the RL methods chase: words in the completion (per 100); takes text or chat messages."""
    texts = [c if isinstance(c, str) else " ".join(m["content"] for m in c) for c in completions]
    return [len(t.split()) / 100 for t in texts]


def plain_reward(completions: Sequence[Any], **_: Any) -> list[float]:
    """`completion_words` the way a plain TRL script hands a reward to GRPOTrainer."""
    return completion_words([], completions)


# -- measuring --------------------------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> float:
    """Start a peak-memory window; returns what is allocated now (GiB; CPU: resident)."""
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**30
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    return proc_status_kib("VmRSS") / 2**20


def peak_gib(device: str) -> float:
    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return proc_status_kib("VmHWM") / 2**20


def proc_status_kib(field: str) -> int:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1])


def trainer_tokens(trainer: Any) -> int:
    """Non-pad tokens trained on so far: TRL's own running counts (SFT and DPO keep theirs privately; GRPO's is the
    transformers state's)."""
    return max(int(trainer.state.num_input_tokens_seen or 0), int(getattr(trainer, "_total_train_tokens", 0) or 0))


class StepClock:
    """One side of a cell: the time and tokens seen at the end of every optimizer step (after a device
    synchronisation), and the peak memory from `start()` to `finish()` (the end of training). What happens after
    training (the harness's save and bookkeeping) is outside both, and a failure there keeps the numbers."""

    def __init__(self, device: str, warmup: int) -> None:
        self.device = device
        self.warmup = warmup
        self.stamps: list[tuple[float, int]] = []
        self.tokens: Callable[[], int] = lambda: 0  # the running count of whatever trains
        self.memory: dict[str, float] = {}

    def start(self) -> None:
        self.memory["resident_before_gib"] = reset_peak(self.device)

    def stamp(self) -> None:
        synchronize(self.device)
        self.stamps.append((time.perf_counter(), self.tokens()))

    def finish(self) -> None:
        self.memory["peak_gib"] = peak_gib(self.device)

    def numbers(self) -> dict[str, float]:
        """Rates over the steps after the warm-up, and the peak; nothing when training did not get that far."""
        if len(self.stamps) <= self.warmup or "peak_gib" not in self.memory:
            return {}
        (start, tokens_start), (end, tokens_end) = self.stamps[self.warmup - 1], self.stamps[-1]
        steps = len(self.stamps) - self.warmup
        return {
            "steps": steps,
            "seconds": end - start,
            "steps_per_s": steps / (end - start),
            "tokens_per_s": (tokens_end - tokens_start) / (end - start),
            **self.memory,
        }


def clock_callback(clock: StepClock) -> Any:
    """`clock` as a transformers TrainerCallback."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            clock.stamp()

        def on_train_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            clock.finish()

    return Clock()


def clocked(trainer_cls: type, clock: StepClock) -> Callable[..., Any]:
    """Builds `trainer_cls` and hands it the clock: how the clock reaches the trainer inside `fit` (wrapped, not
    subclassed: `fit` takes any callable that builds a trainer)."""

    def build(**kwargs: Any) -> Any:
        trainer = trainer_cls(**kwargs)
        trainer.add_callback(clock_callback(clock))
        clock.tokens = lambda: trainer_tokens(trainer)
        return trainer

    return build


# -- the cells --------------------------------------------------------------------------------------------------


@dataclass
class Bench:
    """What every cell shares."""

    scale: Scale
    device: str
    model_dir: Path
    scratch: Path
    data: dict[str, Any]
    run: Any  # the harness's Run (harness.runner), for fit


def trainer_fields(method: str, mode: str, scale: Scale) -> dict[str, Any]:
    """The trainer settings both sides get (the harness passes them as `algorithm.trainer`)."""
    measured = scale.rl_measured_steps if method == "grpo" else scale.measured_steps
    fields: dict[str, Any] = {
        "per_device_train_batch_size": scale.batch_size,
        "gradient_accumulation_steps": 1,
        "max_steps": scale.warmup_steps + measured,
        "learning_rate": 1e-4 if mode == "lora" else 1e-5,
        "lr_scheduler_type": "constant",
        "logging_steps": 5,
        "save_strategy": "no",
        "activation_checkpointing": False,  # as the harness's algorithm YAMLs set it (TRL's default is on)
    }
    # a word is a token; the chat template adds 8 tokens to a prompt and 2 to a completion: nothing is cut
    if method in ("sft", "dpo"):
        fields["max_length"] = scale.prompt_words + scale.completion_words + 16
    if method == "dpo":
        fields["beta"] = 0.1
    if method == "grpo":
        fields.update(
            num_generations=scale.num_generations,
            max_completion_length=scale.generated_tokens,
            beta=0.04,  # a reference model, as the harness's GRPO has
            temperature=1.0,
            log_completions=False,
        )
    return fields


def lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")


def measure_trl(bench: Bench, method: str, mode: str, side: str, clock: StepClock) -> None:
    """One side of one cell: load, build and train `method` in `mode` through the harness (`side` "harness") or as a
    plain TRL script would; `clock` takes the numbers."""
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    from harness.protocols import Reward
    from harness.training import fit
    from plugins.algorithms.trl_method import as_trl_reward

    trainer_name, config_name = TRAINERS[method]
    trainer_cls, config_cls = getattr(trl, trainer_name), getattr(trl, config_name)
    fields = trainer_fields(method, mode, bench.scale)
    out_dir = bench.scratch / f"{method}-{mode}-{side}"
    set_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(bench.model_dir)
    model = AutoModelForCausalLM.from_pretrained(bench.model_dir, use_safetensors=True)
    kwargs: dict[str, Any] = {"train_dataset": bench.data[method]}
    if mode == "lora":
        kwargs["peft_config"] = lora_config()
    if method == "dpo" and mode == "full":  # with LoRA, TRL's reference is the model with its adapter off
        kwargs["ref_model"] = AutoModelForCausalLM.from_pretrained(bench.model_dir, use_safetensors=True)
    if method == "grpo":
        reward = Reward(name="words", fn=completion_words, is_gold=True)
        kwargs["reward_funcs"] = (
            as_trl_reward(reward, tokenizer.eos_token_id, 1.0) if side == "harness" else plain_reward
        )
    build = clocked(trainer_cls, clock)
    clock.start()
    if side == "harness":
        fit(build, config_cls, fields, run=bench.run, model=model, tokenizer=tokenizer, out_dir=out_dir, **kwargs)
    else:
        device_args = {"bf16": bench.device == "cuda", **({"use_cpu": True} if bench.device == "cpu" else {})}
        args = config_cls(**fields, output_dir=str(out_dir), seed=0, report_to="none", **device_args)
        build(model=model, args=args, processing_class=tokenizer, **kwargs).train()


def measure_ppo(bench: Bench, clock: StepClock) -> None:
    """The harness's PPO (train_ppo), full fine-tuning: policy, reference and value model from the bench model,
    loaded by train_ppo itself (so in the peak). A step is an update; its tokens are the prompts' and responses'."""
    from transformers import AutoTokenizer

    from harness.api import TrainingStage
    from harness.protocols import Reward
    from harness.training import MetricsRecorder
    from plugins.algorithms.ppo import load_config, train_ppo
    from plugins.loggers.none import NoLogger

    scale = bench.scale
    tokenizer = AutoTokenizer.from_pretrained(bench.model_dir)
    prompts = [
        tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
        for row in bench.data["sft"]
    ]
    prompt_tokens = len(tokenizer(prompts[0])["input_ids"])  # every prompt has as many
    updates = scale.warmup_steps + scale.rl_measured_steps
    config = load_config(
        {
            "total_episodes": scale.batch_size * updates,
            "batch_size": scale.batch_size,
            "num_minibatches": 2,
            "response_length": scale.generated_tokens,
            "cpu_threads": None,
            "save_every": updates + 1,  # no checkpoint inside the measured span
        }
    )
    out_dir = bench.scratch / "ppo-full-harness"
    recorder = MetricsRecorder(NoLogger(), "train", out_dir / "log_history.jsonl")
    trained_tokens = [0]
    record = recorder.record

    def record_and_stamp(metrics: dict[str, Any], step: int) -> None:
        record(metrics, step)  # once per update, after its optimizer steps
        response_tokens = metrics["objective/response_length"] * scale.batch_size
        trained_tokens[0] += int(scale.batch_size * prompt_tokens + response_tokens)
        clock.stamp()
        if step == updates:
            clock.finish()

    recorder.record = record_and_stamp  # type: ignore[method-assign]
    clock.tokens = lambda: trained_tokens[0]
    clock.start()
    train_ppo(
        config,
        TrainingStage.outside_a_run(out_dir, bench.model_dir),
        reward=Reward(name="words", fn=completion_words, is_gold=True),
        prompts=prompts,
        recorder=recorder,
        device=bench.device,
        seed=0,
    )


def attempt(bench: Bench, measure: Callable[[StepClock], None]) -> dict[str, Any]:
    """A side's numbers, with its error if it failed: one failing cell (out of memory, a TRL API change) does not end
    the run, and a failure after training (e.g. in the harness's bookkeeping) keeps what training measured."""
    clock = StepClock(bench.device, bench.scale.warmup_steps)
    error = None
    try:
        measure(clock)
    except Exception as caught:  # recorded in the row and printed; the next cell runs
        lines = str(caught).strip().splitlines()
        error = f"{type(caught).__name__}: {lines[0] if lines else ''}"[:300]
    finally:
        clock.tokens = lambda: 0  # the clock's last hold on the trainer (and its models)
        shutil.rmtree(bench.scratch, ignore_errors=True)  # a full model save per cell: do not let them pile up
        bench.scratch.mkdir(parents=True, exist_ok=True)
        reset_peak(bench.device)  # frees what the cell left (gc, CUDA cache)
    return {**clock.numbers(), **({"error": error} if error else {})}


def progress(row: dict[str, Any]) -> None:
    parts = []
    if "steps_per_s" in row:
        parts.append(
            f"{row['steps_per_s']:.2f} steps/s, {row['tokens_per_s']:.0f} tokens/s, peak {row['peak_gib']:.2f} GiB"
        )
    if "error" in row:
        parts.append(f"failed: {row['error']}")
    print(f"bench gpu: {row['method']} {row['mode']} {row['side']}: {'; '.join(parts)}", flush=True)


def with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each harness row gets harness / plain TRL ratios of steps/s and peak memory, from the same cell."""
    plain = {(r["method"], r["mode"]): r for r in rows if r["side"] == "plain TRL" and "steps_per_s" in r}
    for row in rows:
        other = plain.get((row["method"], row["mode"]))
        if row["side"] == "harness" and "steps_per_s" in row and other is not None:
            row["speed_ratio"] = row["steps_per_s"] / other["steps_per_s"]
            row["peak_memory_ratio"] = row["peak_gib"] / other["peak_gib"]
    return rows


def markdown(result: dict[str, Any]) -> str:
    info = result["info"]
    lines = [
        f"# GPU check ({info['finished_at']}, {info['machine']['cuda'] or 'CPU'}, torch {info['machine']['torch']}, "
        f"trl {info['trl']})",
        "",
        f"Qwen2, {info['parameters'] / 1e6:.1f}M parameters, bf16, random init. {info['measured']}",
        "",
        "| method | mode | side | steps/s | tokens/s | peak GiB "
        "| harness / plain steps/s | harness / plain peak | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        cells = [r["method"], r["mode"], r["side"]]
        if "steps_per_s" in r:
            cells += [f"{r['steps_per_s']:.2f}", f"{r['tokens_per_s']:.0f}", f"{r['peak_gib']:.2f}"]
        else:
            cells += ["", "", ""]
        if "speed_ratio" in r:
            cells += [f"{r['speed_ratio']:.3f}", f"{r['peak_memory_ratio']:.3f}"]
        else:
            cells += ["", ""]
        cells.append(r.get("error") or r.get("note") or "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *[f"- {note}" for note in result["notes"]]]
    return "\n".join(lines) + "\n"


def parse_arguments(argv: list[str] | None) -> tuple[argparse.Namespace, list[str], list[str]]:
    """The command line, and the methods and modes it chose (an unknown one is the parser's error)."""
    parser = argparse.ArgumentParser(prog="python -m bench gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help="any of sft,dpo,grpo,ppo")
    parser.add_argument("--modes", default=",".join(MODES), help="any of full,lora")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model and 2-3 steps a side: checks the code")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for gpu.json and gpu.md")
    args = parser.parse_args(argv)
    methods, modes = args.methods.split(","), args.modes.split(",")
    for name, chosen, known in (("--methods", methods, METHODS), ("--modes", modes, MODES)):
        if unknown := [c for c in chosen if c not in known]:
            parser.error(f"{name}: {','.join(unknown)} unknown; expected some of {','.join(known)}")
    if args.device == "cpu" and not args.tiny:
        parser.error("--device cpu: expected --tiny too (a 0.5B model on a CPU measures nothing useful)")
    return args, methods, modes


def measure_all(bench: Bench, methods: list[str], modes: list[str], notes: list[str]) -> list[dict[str, Any]]:
    """A row per method, mode and side (the harness, plain TRL), the sides alternating which goes first; PPO on the
    harness's side only (notes say why)."""
    rows: list[dict[str, Any]] = []
    order = 0
    for method in (m for m in METHODS if m in methods and m != "ppo"):
        for mode in (m for m in MODES if m in modes):
            sides = ("harness", "plain TRL") if order % 2 == 0 else ("plain TRL", "harness")  # neither always first
            order += 1
            for side in sides:
                measure = partial(measure_trl, bench, method, mode, side.split()[0])
                rows.append({"method": method, "mode": mode, "side": side, **attempt(bench, measure)})
                progress(rows[-1])
    if "ppo" in methods:
        rows.append({"method": "ppo", "mode": "full", "side": "harness", **attempt(bench, partial(measure_ppo, bench))})
        progress(rows[-1])
        rows.append({"method": "ppo", "mode": "full", "side": "plain TRL", "note": "not measured: see below"})
        notes.append("PPO: the harness's own loop (train_ppo) only; TRL 1.16 has no PPOTrainer to compare it with")
        notes.append("PPO with LoRA: not measured; plugins/algorithms/ppo/ train_ppo takes no peft/LoRA option")
    return rows


def main(argv: list[str] | None = None) -> int:
    args, methods, modes = parse_arguments(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(NO_DEVICE)
        return 0
    if args.device == "cpu":
        torch.set_num_threads(1)  # the harness's CPU default: on a shared machine more threads only wait on each other
    started = time.perf_counter()
    notes = []
    if "lora" in modes:
        try:
            import peft  # noqa: F401
        except ImportError:
            modes.remove("lora")
            notes.append("LoRA not measured: peft is not installed")
            print(f"bench gpu: {notes[-1]}", flush=True)
    scale = TINY if args.tiny else QWEN25_05B
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as folder:
        bench, parameters = prepare(Path(folder), scale, args.device)
        rows = measure_all(bench, methods, modes, notes)
    import trl

    measured = (
        f"{scale.warmup_steps} warm-up steps, then {scale.measured_steps} measured (GRPO, PPO: "
        f"{scale.rl_measured_steps}) of {scale.batch_size} sequences; prompts {scale.prompt_words} words, "
        f"completions {scale.completion_words} (generated: {scale.generated_tokens} tokens)."
    )
    result = {
        "rows": with_ratios(rows),
        "notes": notes,
        "info": {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_s": time.perf_counter() - started,
            "machine": machine(),
            "trl": trl.__version__,
            "device": args.device,
            "scale": asdict(scale),
            "parameters": parameters,
            "measured": measured,
        },
    }
    from harness.io import atomic_write_json

    stem = "gpu-tiny" if args.tiny else "gpu"
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"{stem}.json", result)
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result), end="")
    return 0


def prepare(folder: Path, scale: Scale, device: str) -> tuple[Bench, int]:
    """The model, data and a harness Run (logger none), built once for every cell."""
    model_dir = folder / "model"
    parameters = make_model(model_dir, scale, device)
    overrides = ["logger=none", "seed=0", f"device={device}", f"results_dir={folder}", f"cache_dir={folder / 'cache'}"]
    with composed(overrides) as cfg:
        run = make_run(cfg, folder / "run")
    scratch = folder / "scratch"
    scratch.mkdir()
    return Bench(scale, device, model_dir, scratch, make_data(scale), run), parameters


if __name__ == "__main__":
    sys.exit(main())
