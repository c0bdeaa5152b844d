"""One job: the run's stages, the shared evaluation samples, and the link from training to the logger.

The runner knows stages by role (datasets, base model), never algorithms by name: an algorithm asks for what
it needs through `Run` and puts its own expensive work through `Run.stage`, so it is cached and shared.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from harness.declarations import split_declarations
from harness.devices import resolve_device, torch_threads
from harness.errors import HarnessError
from harness.protocols import EvalContext, ModelSource, Policy, Reward, RewardSource, Task
from harness.schema import plain
from harness.stages import HISTORY, StageCache, StageOutput

__all__ = ["EvalContext", "Policy", "Run", "build_plugin", "plain", "resolve_device", "stage_summary", "torch_threads"]

log = logging.getLogger(__name__)



def build_plugin(node: DictConfig) -> Any:
    """Instantiate a plugin from its config node; a user error raised by its constructor stays one line."""
    try:
        return instantiate(split_declarations(node)[0], _convert_="all")  # what the report reads is not an argument
    except InstantiationException as error:
        cause = error.__cause__
        if isinstance(cause, HarnessError):
            raise cause from None
        reason = str(cause or error).strip().splitlines()[0]
        raise HarnessError(f"{node.get('_target_')}: cannot be built from its config: {reason}") from error


class Run:
    """What an algorithm sees of the job it runs in."""

    def __init__(self, cfg: DictConfig, output_dir: Path, logger: Any) -> None:
        self.cfg = cfg
        self.seed: int = cfg.seed
        self.output_dir = output_dir
        self.logger = logger
        self.cache = StageCache(cfg.cache_dir)
        self.device = resolve_device(cfg.device)
        self.task: Task = build_plugin(cfg.task)
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

    @cached_property
    def _datasets(self) -> StageOutput:
        config = plain(self.cfg.task)
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

        return self.stage("base_model", plain(self.cfg.model), {"data": data}, build)

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

    def preferences(self, policy: StageOutput | Callable[[], StageOutput]) -> StageOutput:
        """Preference pairs: the task's own `preferences` split if it ships one, else pairs sampled from `policy`
        (a stage, or a function that builds it, called only when pairs must be sampled) on the task's prompts and
        labelled by the task (`label_pairs`, e.g. the gold reward with Bradley-Terry noise, as in the DPO paper's
        IMDb experiment). Sampled with `pair_generation` settings, not the evaluation's: changing how policies are
        evaluated does not re-sample the pairs (nor retrain what is trained on them)."""
        from datasets import load_from_disk

        data = self.datasets()
        if "preferences" in load_from_disk(str(data.path)):
            return data
        label_pairs = getattr(self.task, "label_pairs", None)
        if label_pairs is None:
            raise HarnessError(f"task {self.task.name!r} has no preferences split and cannot label sampled pairs")
        source = policy() if callable(policy) else policy
        settings = {**plain(self.cfg.pair_generation), "num_prompts": None}
        config = {"generation": settings, "task": plain(self.cfg.task)}

        def build(out_dir: Path) -> dict[str, Any]:
            from datasets import Dataset, DatasetDict

            from harness.generation import load_policy, sample_completions

            prompts = list(self.load_split("prompts")["prompt"])
            model, tokenizer = load_policy(source.path, self.device)
            pairs = [*prompts, *prompts]  # two independent samples per prompt
            completions = sample_completions(model, tokenizer, pairs, settings, self.device).completions
            first, second = completions[: len(prompts)], completions[len(prompts) :]
            rows, info = label_pairs(prompts, first, second)
            DatasetDict({"preferences": Dataset.from_list(rows)}).save_to_disk(str(out_dir))
            return {"pairs": len(rows), **info}

        return self.stage("preferences", config, {"data": data, "policy": source}, build)

    def load_split(self, split: str) -> Any:
        from datasets import load_from_disk

        splits = load_from_disk(str(self.datasets().path))
        if split not in splits:
            raise HarnessError(f"task {self.task.name!r} has no {split!r} split; it has {sorted(splits)}")
        return splits[split]

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
