"""One job: the run's stages, the shared evaluation samples, and the link from training to the logger.

The runner knows stages by role (datasets, base model), never algorithms by name: an algorithm asks for what
it needs through `Run` and puts its own expensive work through `Run.stage`, so it is cached and shared.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import DictConfig

from harness.declarations import build_plugin, split_declarations
from harness.devices import resolve_device, torch_threads
from harness.errors import HarnessError
from harness.protocols import EvalContext, GoldStandard, ModelSource, Policy, Reward, RewardSource, Task
from harness.schema import plain
from harness.stages import HISTORY, StageCache, StageOutput
from harness.verifiable import ProblemSet, Verifier, is_problem_set, problem_table

__all__ = ["EvalContext", "Policy", "Run", "build_plugin", "plain", "resolve_device", "stage_summary", "torch_threads"]

log = logging.getLogger(__name__)


def settings_of(node: DictConfig) -> Any:
    """A plugin's settings as a stage key holds them: resolved, without what it declares (harness.declarations),
    so declaring a range or a headline never invalidates a cached stage."""
    return split_declarations(node)[0]


class Run:
    """What an algorithm sees of the job it runs in."""

    def __init__(self, cfg: DictConfig, output_dir: Path, logger: Any) -> None:
        self.cfg = cfg
        self.seed: int = cfg.seed
        self.output_dir = output_dir
        self.logger = logger
        self.cache = StageCache(cfg.cache_dir, verify=cfg.get("verify_stages") or "sizes")
        self.device = resolve_device(cfg.device)
        task = build_plugin(cfg.task)
        self.task: Task = ProblemSet(task) if is_problem_set(task) else task  # problems + verify: we write its data
        self.model_source: ModelSource = build_plugin(cfg.model)
        self.stages: dict[str, StageOutput] = {}

    # -- stages -----------------------------------------------------------------------------------------
    def stage(
        self,
        name: str,
        config: Any,
        inputs: Mapping[str, StageOutput],
        build: Callable[[Path], Mapping[str, Any] | None],
        collective: bool = False,
        parts: Sequence[StageOutput] = (),
    ) -> StageOutput:
        """A cached stage. `collective`: a build every process of a multi-process job takes part in (a
        trainer's); otherwise the main process builds it while the others wait (harness.distributed).
        `parts`: stages this one is made of (a method trained in rounds, each round cached on its own): its cost
        includes theirs, as each was measured when built, and the job lists it alone, so nothing counts twice."""
        output = self.cache.run(name, config, inputs, build, collective=collective)
        if parts:
            for part in parts:
                self.stages.pop(part.name, None)
            metrics = dict(output.metrics)
            resumed = [p.metrics.get("resumed_from_step") for p in parts if p.built_now]
            if any(resumed):  # a part this job built went on from a killed build's checkpoint
                metrics["resumed_from_step"] = [step for step in resumed if step][-1]
            output = dataclasses.replace(
                output,
                seconds=output.seconds + sum(part.seconds for part in parts),
                built_now=output.built_now or any(part.built_now for part in parts),
                metrics=metrics,
            )
        # the first use counts: a suite asking again (win_rate's SFT baseline) must not turn "built now" into cached
        self.stages.setdefault(name, output)
        return output

    def train_stage(
        self,
        name: str,
        config: Mapping[str, Any],
        inputs: Mapping[str, StageOutput],
        build: Callable[[Any], Mapping[str, Any] | None],
        *,
        start: StageOutput,
        snapshots: bool | Sequence[float] = False,
        parts: Sequence[StageOutput] = (),
    ) -> StageOutput:
        """A method's training as a cached stage, with LoRA, snapshots and cost handled once (harness.train_stage)."""
        from harness.train_stage import train_stage

        return train_stage(self, name, config, inputs, build, start=start, snapshots=snapshots, parts=parts)

    def trained_policy(
        self,
        stage: StageOutput,
        *,
        reference: StageOutput | Path | None,
        reward: Reward | None = None,
        snapshots: Sequence[Any] | None = None,
    ) -> Policy:
        """What evaluation gets of a trained stage (harness.train_stage.trained_policy)."""
        from harness.train_stage import trained_policy

        return trained_policy(self, stage, reference=reference, reward=reward, snapshots=snapshots)

    def with_seed(self, seed: int) -> Run:
        """This job with another training seed: the same cache, data, logger and stage record. For a stage every
        job of a sweep shares (a judge) that must not depend on which job happened to build it."""
        twin = copy.copy(self)
        twin.seed = seed
        return twin

    @cached_property
    def _datasets(self) -> StageOutput:
        config = settings_of(self.cfg.task)
        fingerprint = getattr(self.task, "fingerprint", None)
        if fingerprint is not None and (identity := fingerprint()) is not None:
            config["data_fingerprint"] = identity  # local files: their path, sizes and modification times
        return self.stage("data", config, {}, self.task.build_datasets)

    def datasets(self) -> StageOutput:
        """The task's datasets (a `DatasetDict` saved to disk), built once per task config."""
        return self._datasets

    @cached_property
    def _base_model(self) -> StageOutput:
        data = self.datasets()

        def build(out_dir: Path) -> Mapping[str, Any] | None:
            # every other job of a sweep waits for this stage: it may use their cores
            threads = self.cfg.get("base_model_threads") if self.device == "cpu" else None
            with torch_threads(threads):
                return self.model_source.build(out_dir, data.path)

        return self.stage("base_model", settings_of(self.cfg.model), {"data": data}, build)

    def base_model(self) -> StageOutput:
        """The base model every algorithm starts from (`save_pretrained` directory with its tokenizer)."""
        return self._base_model

    @cached_property
    def _reward(self) -> Reward:
        if self.cfg.get("reward") is None:
            raise HarnessError("this algorithm needs a reward: choose one with reward=<option> (see harness --help)")
        source: RewardSource = build_plugin(self.cfg.reward)
        return source.load(self)

    def reward(self) -> Reward:
        """The reward chosen with `reward=...` (built once per job; a learned one is a cached stage)."""
        return self._reward

    # purpose -> (the task's own pairs, else the prompts to sample pairs on)
    SPLITS: ClassVar[dict[str, tuple[str, str]]] = {
        "train": ("preferences", "prompts"),
        "judge": ("judge_preferences", "judge_prompts"),
    }

    def preferences(self, policy: StageOutput | Callable[[], StageOutput], purpose: str = "train") -> StageOutput:
        """Preference pairs: the task's own `preferences` split if it ships one, else pairs sampled from `policy`
        (a stage, or a function that builds it, called only when pairs must be sampled) on the task's prompts and
        labelled by the task (`label_pairs`, e.g. the gold reward with Bradley-Terry noise, as in the DPO paper's
        IMDb experiment). Sampled with `pair_generation` settings, not the evaluation's: changing how policies are
        evaluated does not re-sample the pairs (nor retrain what is trained on them).

        `purpose="judge"`: pairs no method trains on, for a held-out judge: the task's `judge_preferences` split,
        else pairs sampled on its `judge_prompts`. The returned stage holds them as its `preferences` split; read
        them with `load_split("preferences", stage)`."""
        from datasets import load_from_disk

        if purpose not in self.SPLITS:
            raise HarnessError(f"preferences purpose={purpose!r}: expected one of {sorted(self.SPLITS)}")
        pairs_split, prompts_split = self.SPLITS[purpose]
        data = self.datasets()
        shipped = load_from_disk(str(data.path))
        if pairs_split in shipped:
            if pairs_split == "preferences":
                return data
            return self.stage(
                f"{purpose}_preferences",
                {"split": pairs_split},
                {"data": data},
                lambda out: self._copy_split(data, pairs_split, out),
            )
        label_pairs = getattr(self.task, "label_pairs", None)
        if label_pairs is None:
            raise HarnessError(f"task {self.task.name!r} has no {pairs_split} split and cannot label sampled pairs")
        if prompts_split not in shipped:
            raise HarnessError(f"task {self.task.name!r} has neither a {pairs_split} nor a {prompts_split} split")
        source = policy() if callable(policy) else policy
        settings = {**plain(self.cfg.pair_generation), "num_prompts": None}
        config: dict[str, Any] = {"generation": settings, "task": settings_of(self.cfg.task)}
        if purpose != "train":
            config["prompts"] = prompts_split

        def build(out_dir: Path) -> dict[str, Any]:
            from datasets import Dataset, DatasetDict

            from harness.generation import load_policy, sample_completions

            raw = list(load_from_disk(str(data.path))[prompts_split]["prompt"])
            prompts = [self.chat.prompt(p) for p in raw]
            model, tokenizer = load_policy(source.path, self.device)
            pairs = [*prompts, *prompts]  # two independent samples per prompt
            completions = sample_completions(model, tokenizer, pairs, settings, self.device).completions
            first, second = completions[: len(prompts)], completions[len(prompts) :]
            rows, info = label_pairs(raw, first, second)  # the task labels its own prompts, as it wrote them
            DatasetDict({"preferences": Dataset.from_list(rows)}).save_to_disk(str(out_dir))
            return {"pairs": len(rows), **info}

        name = "preferences" if purpose == "train" else f"{purpose}_preferences"
        return self.stage(name, config, {"data": data, "policy": source}, build)

    @staticmethod
    def _copy_split(data: StageOutput, split: str, out_dir: Path) -> dict[str, Any]:
        from datasets import DatasetDict, load_from_disk

        pairs = load_from_disk(str(data.path))[split]
        DatasetDict({"preferences": pairs}).save_to_disk(str(out_dir))
        return {"pairs": len(pairs)}

    def load_split(self, split: str, stage: StageOutput | None = None) -> Any:
        """A split of the task's datasets (or of `stage`, e.g. a preferences stage), its prompts and completions
        rendered for the base model: its chat template for messages, text unchanged (harness.chat)."""
        from datasets import load_from_disk

        source = stage if stage is not None else self.datasets()
        splits = load_from_disk(str(source.path))
        if split not in splits:
            owner = f"task {self.task.name!r}" if stage is None else f"stage {source.name!r}"
            raise HarnessError(f"{owner} has no {split!r} split; it has {sorted(splits)}")
        return self.chat.dataset(splits[split])

    @cached_property
    def chat(self) -> Any:
        """How this run's models read the task's conversations (`harness.chat.ChatFormat` of the base model's
        tokenizer; every policy, reward model and judge trained here shares that tokenizer)."""
        from transformers import AutoTokenizer

        from harness.chat import ChatFormat

        return ChatFormat(AutoTokenizer.from_pretrained(self.base_model().path))

    def gold(self) -> GoldStandard | None:
        """The task's gold standard, called with prompts as the task wrote them (messages stay messages) whatever
        the rendered text the policies were given."""
        gold = self.task.gold()
        if gold is None or not self._raw_prompts:
            return gold
        return RawPromptGold(gold, self._raw_prompts)

    @cached_property
    def _verifier(self) -> Verifier:
        from datasets import load_from_disk

        splits = load_from_disk(str(self.datasets().path))
        return Verifier(self.task, problem_table(splits, self.chat.prompt))

    def verifier(self) -> Verifier:
        """The task's checks (`verify`, and `format_reward`, `final_answer` where it has them) on prompts as the
        policies read them (harness.verifiable); a one-line error for a task without `verify`."""
        return self._verifier

    @cached_property
    def _raw_prompts(self) -> dict[str, Any]:
        """Rendered prompt text -> the task's own prompt, for tasks whose prompts are messages (else empty)."""
        from datasets import load_from_disk

        from harness.chat import is_conversation

        raw: dict[str, Any] = {}
        for split in load_from_disk(str(self.datasets().path)).values():
            if "prompt" not in split.column_names or not is_conversation(split[0]["prompt"] if len(split) else ""):
                continue  # a split is all text or all messages
            for prompt in split["prompt"]:
                raw.setdefault(self.chat.prompt(prompt), prompt)
        return raw

    # -- logging ----------------------------------------------------------------------------------------
    def recorder(self, namespace: str, out_dir: Path) -> Any:
        """A `MetricsRecorder`: `record(metrics, step)` streams to the logger and keeps the stage's history."""
        from harness.training import MetricsRecorder

        return MetricsRecorder(self.logger, namespace, out_dir / HISTORY)

    def trainer_callback(self, namespace: str, out_dir: Path) -> Any:
        """A transformers `TrainerCallback` that streams a trainer's logs to the logger and to the stage."""
        from harness.training import LogForwarder

        return LogForwarder(self.recorder(namespace, out_dir))

    def training_metrics(self, stage: StageOutput, namespace: str = "train") -> dict[str, float]:
        """The job's own training stage as `train/<metric>` finals. A cached stage's curves are logged
        again, so every job's dashboard shows them; a stage built now streamed them while training."""
        path = stage.path / HISTORY
        if not stage.built_now and path.exists():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                step = row.pop("step", None)
                self.logger.log({f"{namespace}/{k}": v for k, v in row.items()}, step=step)
        return {f"{namespace}/{k}": v for k, v in stage.metrics.items() if isinstance(v, int | float)}


class RawPromptGold:
    """A gold standard handed rendered prompts that answers for the task's own (its messages)."""

    def __init__(self, gold: GoldStandard, raw: Mapping[str, Any]) -> None:
        self.inner, self.raw = gold, raw

    def _prompts(self, prompts: Sequence[Any]) -> list[Any]:
        return [self.raw.get(p, p) if isinstance(p, str) else p for p in prompts]

    def reward(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float]:
        return self.inner.reward(self._prompts(prompts), completions)

    def grammatical(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[bool]:
        return self.inner.grammatical(self._prompts(prompts), completions)


def stage_summary(stages: Mapping[str, StageOutput]) -> dict[str, Any]:
    return {
        name: {
            "key": out.key,
            "path": str(out.path),
            "built_now": out.built_now,
            "seconds": round(out.seconds, 3),
            "metrics": out.metrics,
        }
        for name, out in stages.items()
    }
