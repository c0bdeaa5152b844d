"""`algorithm=raft`: rejection-sampling fine-tuning (RAFT, Dong et al. 2023; ReST, Gulcehre et al. 2023).

Each round: 1. sample n completions per training prompt from the current policy (round 1: the SFT policy),
2. score them with `reward=...`, 3. keep the best completion of each prompt, dropping completions that never
emitted EOS (the missing-EOS idea of Huang et al. 2024) and, optionally, prompts whose best is outside the top
fraction, 4. fine-tune the current policy on the kept samples with TRL's `SFTTrainer` (loss on completions only).
The next round starts from those weights. The KL reference is the SFT policy.

Every round is its own cached stage (`raft_round<r>`, keyed on the previous round), so a killed job resumes at
the last finished round and a sweep over `rounds` reuses the rounds it shares. A light stage named like the
algorithm joins them: one training curve, per-round metrics, and the train seconds and tokens of all rounds.

With `peft=lora` the rounds train one LoRA adapter on the SFT weights: round 1 starts it, each later round trains the
previous round's further. Every round's adapter thus sits on the SFT policy, which is the KL reference with the
adapter switched off (harness.adapters).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.api import (
    HarnessError,
    Policy,
    Reward,
    Run,
    Snapshot,
    StageOutput,
    TrainingStage,
    check_rewards,
    link_policy,
    load_policy,
    peft_settings,
    plain,
    sample_completions,
    snapshots_of,
    snapshots_requested,
    training_log,
)

# Sampling for the training data is ancestral (no top-k / top-p cut), as the evaluation's default is.
TOP_K, TOP_P = 0, 1.0


def choose_best(
    scores: Sequence[float],
    ended: Sequence[bool],
    n: int,
    top_fraction: float = 1.0,
    min_reward: float | None = None,
) -> list[int]:
    """Indexes of the kept samples, ascending. `scores` and `ended` hold consecutive groups of n samples of a prompt.

    Per group: the highest-scoring sample that ended with EOS (the first one on ties); a group where none ended
    keeps nothing, nor one whose best scores below `min_reward` (rejection sampling on a verifier: only right
    answers are kept). Then only the `top_fraction` of groups with the highest best scores stay (at least one; ties
    at the cut go to the earlier group).
    """
    if len(scores) != len(ended) or len(scores) % n:
        raise ValueError(f"{len(scores)} scores and {len(ended)} EOS flags do not form groups of {n}")
    best = []
    for start in range(0, len(scores), n):
        finished = [i for i in range(start, start + n) if ended[i]]
        if finished:
            top = max(finished, key=lambda i: scores[i])  # max keeps the first of equal scores
            if min_reward is None or scores[top] >= min_reward:
                best.append(top)
    keep = max(1, math.ceil(top_fraction * len(best))) if best else 0
    ranked = sorted(best, key=lambda i: -scores[i])  # stable: the earlier group wins a tie at the cut
    return sorted(ranked[:keep])


def ended_with_eos(token_ids: Sequence[Sequence[int]], eos_token_id: int) -> list[bool]:
    """Whether each sample emitted EOS (`sample_completions` cuts a sample just after its first EOS)."""
    return [bool(ids) and ids[-1] == eos_token_id for ids in token_ids]


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


class RAFT:
    def __init__(
        self,
        name: str = "raft",
        init: Any = None,
        trainer: Mapping[str, Any] | None = None,
        rounds: int = 2,
        n: int = 4,
        prompts_per_round: int | None = 1024,
        top_fraction: float = 1.0,
        min_reward: float | None = None,
        max_new_tokens: int = 40,
        temperature: float = 0.7,
        batch_size: int = 256,
    ) -> None:
        for field, value in (("rounds", rounds), ("n", n), ("max_new_tokens", max_new_tokens)):
            if not isinstance(value, int) or value < 1:
                raise HarnessError(f"algorithm.{field}={value!r}: expected a positive integer")
        if prompts_per_round is not None and (not isinstance(prompts_per_round, int) or prompts_per_round < 1):
            raise HarnessError(
                f"algorithm.prompts_per_round={prompts_per_round!r}: expected a positive integer or null"
            )
        if not 0 < top_fraction <= 1:
            raise HarnessError(f"algorithm.top_fraction={top_fraction!r}: expected a fraction in (0, 1]")
        if not temperature > 0:
            raise HarnessError(f"algorithm.temperature={temperature!r}: expected a positive temperature")
        self.name = name
        self.init = init  # the SFT method (Hydra builds it from `init: ${sft}`)
        self.trainer = dict(trainer or {})
        self.rounds = rounds
        self.n = n
        self.prompts_per_round = prompts_per_round
        self.top_fraction = top_fraction
        self.min_reward = None if min_reward is None else float(min_reward)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.batch_size = batch_size

    def train(self, run: Run) -> Policy:
        peft_settings(run)  # a bad `peft` setting stops the job before the SFT stage trains
        sft = self.init.stage(run)
        reward = run.reward()
        along = snapshot_plan(snapshots_requested(run), self.rounds)
        policy, rounds = sft, []
        for number in range(1, self.rounds + 1):
            policy = self._round(run, number, policy, reward, along.get(number, []))
            rounds.append(policy)
        final = self._join(run, rounds)
        return run.trained_policy(final, reference=sft, reward=reward, snapshots=joined_snapshots(rounds, along))

    # -- one round: sample, score, select, fine-tune ----------------------------------------------------------
    def _round(
        self, run: Run, number: int, policy: StageOutput, reward: Reward, snapshots: Sequence[float] = ()
    ) -> StageOutput:
        """Round `number` as a cached stage. Its key holds everything but `rounds`, so more rounds reuse these;
        `snapshots`: the fractions of this round at which the policy is kept along training."""
        config = {
            "algorithm": self.name,
            "round": number,
            "n": self.n,
            "prompts_per_round": self.prompts_per_round,
            "top_fraction": self.top_fraction,
            "sampling": self._sampling(run, number),
            "trainer": plain(self.trainer),
            "seed": run.seed,
            "reward": reward.name,
            **({"min_reward": self.min_reward} if self.min_reward is not None else {}),  # set: RFT's filter
        }
        inputs = {"policy": policy, **({"reward": reward.stages[-1]} if reward.stages else {})}
        build = lambda stage: self._train_round(run, number, stage, reward)  # noqa: E731
        return run.train_stage(f"{self.name}_round{number}", config, inputs, build, start=policy, snapshots=snapshots)

    def _sampling(self, run: Run, number: int) -> dict[str, Any]:
        """`sample_completions` settings of a round; its seed is derived from the run's seed and the round."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_k": TOP_K,
            "top_p": TOP_P,
            "batch_size": self.batch_size,
            "seed": 1_000 * run.seed + number,
        }

    def _train_round(self, run: Run, number: int, stage: TrainingStage, reward: Reward) -> dict[str, Any]:
        from datasets import Dataset
        from trl import SFTConfig, SFTTrainer

        # 1. prompts of this round (a seeded draw when `prompts_per_round` is set: each round sees new ones)
        prompts = run.load_split("prompts")
        if self.prompts_per_round is not None and self.prompts_per_round < len(prompts):
            prompts = prompts.shuffle(seed=1_000 * run.seed + number).select(range(self.prompts_per_round))
        prompts = list(prompts["prompt"])
        # 2. n samples per prompt from the current policy, scored by the run's reward; the model sampled is the one
        # trained. With LoRA: round 1 puts a fresh adapter on the SFT weights (merged, if SFT is an adapter), a later
        # round trains the previous round's adapter further (its start stays the SFT stage)
        trainer_kwargs: dict[str, Any] = {}
        if stage.peft is None:
            model, tokenizer = load_policy(stage.start.path, run.device)
        elif number == 1:
            model, trainer_kwargs = stage.load_start(device=run.device)
            model, tokenizer = model.eval(), stage.tokenizer()
        else:
            model, tokenizer = stage.continue_start(device=run.device).eval(), stage.tokenizer()
        expanded = [prompt for prompt in prompts for _ in range(self.n)]
        samples = sample_completions(model, tokenizer, expanded, self._sampling(run, number), run.device)
        scores = check_rewards(reward.name, reward.fn(expanded, samples.completions))
        ended = ended_with_eos(samples.token_ids, tokenizer.eos_token_id)
        # 3. the best ended sample of each prompt (RAFT's per-prompt best-of-n; ReST's filter when top_fraction < 1)
        kept = choose_best(scores, ended, self.n, self.top_fraction, self.min_reward)
        if not kept and any(ended):
            raise HarnessError(
                f"{self.name} round {number}: no problem's best of {self.n} samples reached algorithm.min_reward="
                f"{self.min_reward} (the best scored {max(scores)}); expected more samples (algorithm.n) or a lower "
                "min_reward"
            )
        if not kept:
            raise HarnessError(
                f"{self.name} round {number}: none of {len(expanded)} samples emitted EOS within "
                f"algorithm.max_new_tokens={self.max_new_tokens}; expected a larger max_new_tokens"
            )
        selection = {
            "sample_reward": mean(scores),
            "kept_reward": mean([scores[i] for i in kept]),
            "kept_samples": len(kept),
            "prompts": len(prompts),
            "ended_fraction": mean([float(e) for e in ended]),
            "sample_tokens": mean([float(length) for length in samples.lengths]),
            "kept_tokens": mean([float(samples.lengths[i]) for i in kept]),
        }
        recorder = stage.recorder(f"{self.name}_round{number}")
        if not recorder.history_path.exists():  # a resumed build has it already (it is the first row written)
            recorder.record(selection, step=0)
        # 4. supervised fine-tuning on the kept samples, from the current policy (the demonstrations' format:
        # the completion continues the prompt after a space); the tokenizer as saved, not as sampling set it up
        rows = [{"prompt": expanded[i], "completion": " " + samples.completions[i]} for i in kept]
        fitted = stage.fit(
            SFTTrainer,
            SFTConfig,
            self.trainer,
            model=model,
            tokenizer=stage.tokenizer(),
            namespace=f"{self.name}_round{number}",
            train_dataset=Dataset.from_list(rows),
            **trainer_kwargs,
        )
        # with a peft_config, the trainer wrapped `model`: its parameters are what trained
        return {**selection, **fitted.summary("loss", "mean_token_accuracy"), **stage.parameters(model)}

    # -- the algorithm's stage: the rounds joined -------------------------------------------------------------
    def _join(self, run: Run, rounds: list[StageOutput]) -> StageOutput:
        """The stage named like the algorithm: the last round's weights (hard links, no copy), the rounds' curves as
        one (steps run on across rounds; each round's sample and kept rewards at its first step), per-round metrics
        and the rounds' summed cost.

        Cost: the rounds are this stage's `parts` (Run.stage), so the job's `cost.wall_s[<name>]` (the report's train
        seconds) is this stage's own seconds plus each round's build seconds as measured when that round was built: a
        policy costs the same whichever job built which round, and no round is counted twice.
        """
        config = {"algorithm": self.name, "rounds": len(rounds)}
        inputs = {f"round{number}": stage for number, stage in enumerate(rounds, start=1)}

        def build(out_dir: Path) -> dict[str, Any]:
            link_policy(rounds[-1].path, out_dir)
            recorder = run.recorder("train", out_dir)
            offset = 0
            for number, stage in enumerate(rounds, start=1):
                for row in training_log(stage):
                    step = offset + int(row.pop("step", 0))
                    recorder.record({**row, "round": number}, step=step)
                offset += int(stage.metrics.get("global_step", 0))
            return _joined_metrics(rounds)

        return run.stage(self.name, config, inputs, build, parts=rounds)


def snapshot_plan(count: int, rounds: int) -> dict[int, list[float]]:
    """Round -> the fractions of it at which to keep the policy, for `count` snapshots evenly spaced over all rounds
    (at i/(count+1) of the training, rounds taken as equal shares). A point on a boundary between rounds is that
    round's own end (its stage), so it is listed as fraction 1.0 of the round before."""
    plan: dict[int, list[float]] = {}
    for index in range(1, count + 1):
        position = rounds * index / (count + 1)  # in rounds: 1.5 is halfway through round 2
        number, within = int(position) + 1, position - int(position)
        if within == 0:
            number, within = number - 1, 1.0
        plan.setdefault(number, []).append(within)
    return plan


def joined_snapshots(rounds: Sequence[StageOutput], plan: Mapping[int, Sequence[float]]) -> list[Snapshot]:
    """The snapshots of the rounds (and the ends of rounds the plan names), in the joined stage's steps: a round's
    steps run on after the rounds before it, and each fraction is of all the rounds' optimiser steps."""
    total = sum(int(stage.metrics.get("global_step", 0)) for stage in rounds) or 1
    found, offset = [], 0
    for number, stage in enumerate(rounds, start=1):
        steps = int(stage.metrics.get("global_step", 0))
        for snapshot in snapshots_of(stage.path):
            step = offset + snapshot.step
            found.append(Snapshot(step=step, fraction=step / total, path=snapshot.path))
        if 1.0 in plan.get(number, ()) and number < len(rounds):  # the round's end: its own stage
            found.append(Snapshot(step=offset + steps, fraction=(offset + steps) / total, path=stage.path))
        offset += steps
    return sorted(found, key=lambda snapshot: snapshot.step)


def _joined_metrics(rounds: Sequence[StageOutput]) -> dict[str, Any]:
    """Last round's values under their own names, the first round's as `first_<name>`, every round's as
    `round<r>/<name>`, and the cost summed over rounds."""
    per_round = ("sample_reward", "kept_reward", "kept_samples", "ended_fraction", "kept_tokens", "loss")
    summed = ("global_step", "train_runtime_s", "tokens_trained")
    first, last = rounds[0].metrics, rounds[-1].metrics
    metrics: dict[str, Any] = {name: last.get(name, math.nan) for name in per_round}
    metrics.update({f"first_{name}": first.get(name, math.nan) for name in per_round})
    for number, stage in enumerate(rounds, start=1):
        metrics.update({f"round{number}/{name}": stage.metrics.get(name, math.nan) for name in per_round})
        metrics[f"round{number}/params_changed"] = stage.metrics.get("params_changed", math.nan)
        metrics[f"round{number}/seconds"] = stage.seconds
    metrics.update({name: sum(stage.metrics.get(name, 0) for stage in rounds) for name in summed})
    metrics["params_changed"] = min(stage.metrics.get("params_changed", 0.0) for stage in rounds)
    metrics.update({name: last[name] for name in ("trainable_parameters", "total_parameters") if name in last})
    metrics["rounds"] = len(rounds)
    return metrics
