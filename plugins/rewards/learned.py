"""`reward=learned`: a reward model trained on the task's preference pairs (TRL `RewardTrainer`).

It starts from the SFT model (as in Ouyang et al. 2022) with a scalar head, is trained with the
Bradley-Terry loss on `preferences`, and is a cached stage shared by every RL job of a sweep. Its held-out
pairwise accuracy is reported both against the (noisy) labels and, where the task has one, against the gold
reward's own ordering. `reward.trainer.max_steps=<few>` makes a deliberately weak one.

The training itself is `train_reward_model`, which `eval=judge` also uses for its held-out reward model (other
pairs, another starting point, its own seed); `load_initial_model` is where the starting weights are read.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from harness.api import (
    Reward,
    Run,
    StageOutput,
    check_rewards,
    context_size,
    keep_last,
    length_groups,
    load_model,
    plain,
)

log = logging.getLogger(__name__)


def join_text(prompt: str, completion: str) -> str:
    if not completion or completion[0].isspace() or not prompt or prompt[-1].isspace():
        return prompt + completion
    return f"{prompt} {completion}"


class RewardModelFn:
    """Scores prompt + completion texts with a sequence-classification reward model.

    Like TRL's `RewardTrainer`, it appends EOS to every text, so scores match what the model was trained on.
    A text longer than the model's context is scored on its last tokens (the completion), with one warning.
    """

    def __init__(self, path: Path, device: str, batch_size: int = 256, name: str = "learned") -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path, use_safetensors=True).to(device).eval()
        self.device = device
        self.batch_size = batch_size
        self.name = name
        self.context = context_size(self.model)
        self.warned = False  # RL calls this every step: one warning is enough

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        texts = [join_text(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        for start in range(0, len(texts), self.batch_size):
            rows = [[*ids, eos] for ids in self.tokenizer(texts[start : start + self.batch_size])["input_ids"]]
            rows = self._fit_context(rows)
            batch_scores = [0.0] * len(rows)
            for group in length_groups([len(r) for r in rows]):  # texts of similar length: less padding
                width = max(len(rows[i]) for i in group)
                input_ids = torch.tensor([rows[i] + [pad] * (width - len(rows[i])) for i in group], device=self.device)
                lengths = torch.tensor([len(rows[i]) for i in group], device=self.device)
                mask = torch.arange(width, device=self.device)[None, :] < lengths[:, None]
                logits = self.model(input_ids=input_ids, attention_mask=mask.long()).logits[:, 0].float().tolist()
                for i, score in zip(group, logits, strict=True):
                    batch_scores[i] = score
            scores.extend(batch_scores)
        return check_rewards(self.name, scores)

    def _fit_context(self, rows: list[list[int]]) -> list[list[int]]:
        if self.context is None or all(len(row) <= self.context for row in rows):
            return rows
        if not self.warned:
            longest = max(len(row) for row in rows)
            log.warning(
                "reward %r: texts of up to %d tokens are longer than the reward model's context (%d); scoring their "
                "last %d tokens",
                self.name,
                longest,
                self.context,
                self.context,
            )
            self.warned = True
        special = set(self.tokenizer.all_special_ids)
        return [keep_last(row, self.context, special) for row in rows]


class LearnedReward:
    def __init__(
        self,
        name: str = "learned",
        init: Any = None,
        trainer: Mapping[str, Any] | None = None,
        eval_fraction: float = 0.1,
    ) -> None:
        self.name = name
        self.init = init  # the SFT method (Hydra builds it from `init: ${sft}`)
        self.trainer = dict(trainer or {})
        self.eval_fraction = eval_fraction

    def load(self, run: Run) -> Reward:
        sft = self.init.stage(run)
        preferences = run.preferences(sft)
        # One reward model per SFT policy (so per seed), shared by every RL algorithm starting from that SFT.
        config = {
            "reward": self.name,
            "trainer": plain(self.trainer),
            "eval_fraction": self.eval_fraction,
            "seed": run.seed,
        }
        stage = run.stage(
            "reward_model",
            config,
            {"preferences": preferences, "sft": sft},
            lambda out: train_reward_model(
                run,
                sft.path,
                preferences,
                out,
                trainer=self.trainer,
                eval_fraction=self.eval_fraction,
                seed=run.seed,
                name=self.name,
            ),
            collective=True,  # a trainer: every process of a multi-process job takes part
        )
        return Reward(
            name=self.name,
            fn=RewardModelFn(stage.path, run.device, name=self.name),
            is_gold=False,
            model_path=stage.path,
            stages=[sft, preferences, stage],
            metrics={f"reward_model/{k}": v for k, v in stage.metrics.items() if isinstance(v, int | float)},
        )


def load_initial_model(init_path: Path, seed: int) -> Any:
    """The model a reward model starts from: the causal LM at `init_path` with a new scalar head.

    The head is drawn from torch's global generator: seeded here, or the reward model (and every RL stage on it)
    depends on what ran earlier in the process (the jobs before it in a sweep)."""
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        # a full model, or an adapter stage merged into its start (peft=lora)
        model = load_model(init_path, AutoModelForSequenceClassification, merge=True, num_labels=1)
    return model


def train_reward_model(
    run: Run,
    init_path: Path,
    preferences: StageOutput | Sequence[StageOutput],
    out_dir: Path,
    *,
    trainer: Mapping[str, Any],
    eval_fraction: float,
    seed: int,
    name: str = "learned",
    namespace: str = "reward_model",
) -> dict[str, Any]:
    """Train a Bradley-Terry reward model (TRL `RewardTrainer`) from `init_path` on the `preferences` split of
    `preferences` (one stage, or several whose pairs are pooled) into `out_dir`, as the build of a stage; returns the
    stage's metrics.

    A fixed `eval_fraction` of the pairs (the same ones for every seed) is held out: `accuracy` is the model's
    pairwise accuracy there against the (noisy) labels, `gold_accuracy` against the task's gold ordering where it
    has one. `seed` seeds the new head and the trainer: a stage shared across jobs passes one of its own, not the
    job's. Used by `reward=learned` and by the held-out judge of `eval=judge`."""
    from datasets import concatenate_datasets
    from transformers import AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from harness.api import fit

    sources = [preferences] if isinstance(preferences, StageOutput) else list(preferences)
    columns = ["prompt", "chosen", "rejected"]
    parts = [run.load_split("preferences", stage).select_columns(columns) for stage in sources]
    pairs = parts[0] if len(parts) == 1 else concatenate_datasets(parts)
    order = list(range(len(pairs)))
    random.Random(0).shuffle(order)
    held_out = max(1, int(len(order) * eval_fraction))
    train, test = pairs.select(order[held_out:]), pairs.select(order[:held_out])

    tokenizer = AutoTokenizer.from_pretrained(init_path)
    model = load_initial_model(init_path, seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    fitted = fit(
        RewardTrainer,
        RewardConfig,
        trainer,
        run=run if seed == run.seed else run.with_seed(seed),
        model=model,
        tokenizer=tokenizer,
        out_dir=out_dir,
        namespace=namespace,
        train_dataset=train,
    )

    score = RewardModelFn(out_dir, run.device, name=name)
    chosen = score(test["prompt"], test["chosen"])
    rejected = score(test["prompt"], test["rejected"])
    metrics: dict[str, Any] = {
        "accuracy": sum(c > r for c, r in zip(chosen, rejected, strict=True)) / len(chosen),
        **fitted.summary("loss"),
        "train_pairs": len(train),
        "test_pairs": len(test),
    }
    gold = run.gold()
    if gold is not None:  # how well it ranks by the truth, not by the noisy labels
        gold_c, gold_r = gold.reward(test["prompt"], test["chosen"]), gold.reward(test["prompt"], test["rejected"])
        decided = [(c > r, gc > gr) for c, r, gc, gr in zip(chosen, rejected, gold_c, gold_r, strict=True) if gc != gr]
        metrics["gold_accuracy"] = sum(a == b for a, b in decided) / len(decided) if decided else float("nan")
    return metrics
