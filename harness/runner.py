"""One job: the run's stages, the shared evaluation samples, and the link from training to the logger.

The runner knows stages by role (datasets, base model), never algorithms by name: an algorithm asks for what
it needs through `Run` and puts its own expensive work through `Run.stage`, so it is cached and shared.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from harness.errors import HarnessError
from harness.io import atomic_write_jsonl
from harness.protocols import GoldStandard, ModelSource, Policy, Reward, RewardFn, RewardSource, Task
from harness.stages import StageCache, StageOutput

log = logging.getLogger(__name__)

HISTORY = "log_history.jsonl"


def plain(node: Any) -> Any:
    """A resolved, JSON-ready copy of a config node (what stage keys and results are made of)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested not in ("cpu", "cuda"):
        raise HarnessError(f"device={requested!r} is not a device; expected auto, cpu or cuda")
    if requested == "cuda" and not torch.cuda.is_available():
        raise HarnessError("device=cuda but torch sees no CUDA device; use device=auto or device=cpu")
    return requested


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block on `threads` torch threads (None: leave them), then restore the previous count."""
    import torch

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_plugin(node: DictConfig) -> Any:
    """Instantiate a plugin from its config node; a user error raised by its constructor stays one line."""
    try:
        return instantiate(node, _convert_="all")
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
    ) -> StageOutput:
        """A cached stage. `collective`: a build every process of a multi-process job takes part in (a
        trainer's); otherwise the main process builds it while the others wait (harness.distributed)."""
        output = self.cache.run(name, config, inputs, build, collective=collective)
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
            raise HarnessError("this algorithm needs a reward; choose one with reward=gold or reward=learned")
        source: RewardSource = build_plugin(self.cfg.reward)
        return source.load(self)

    def reward(self) -> Reward:
        """The reward chosen with `reward=...` (built once per job; a learned one is a cached stage)."""
        return self._reward

    def preferences(self, policy: StageOutput) -> StageOutput:
        """Preference pairs: the task's own `preferences` split if it ships one, else pairs sampled from
        `policy` on the task's prompts and labelled by the task (`label_pairs`, e.g. the gold reward with
        Bradley-Terry noise, as in the DPO paper's IMDb experiment). Either way a `preferences` split."""
        from datasets import load_from_disk

        data = self.datasets()
        if "preferences" in load_from_disk(str(data.path)):
            return data
        label_pairs = getattr(self.task, "label_pairs", None)
        if label_pairs is None:
            raise HarnessError(f"task {self.task.name!r} has no preferences split and cannot label sampled pairs")
        settings = {**plain(self.cfg.generation), "num_prompts": None}
        config = {"generation": settings, "task": plain(self.cfg.task)}

        def build(out_dir: Path) -> dict[str, Any]:
            from datasets import Dataset, DatasetDict

            from harness.generation import load_policy, sample_completions

            prompts = list(self.load_split("prompts")["prompt"])
            model, tokenizer = load_policy(policy.path, self.device)
            pairs = [*prompts, *prompts]  # two independent samples per prompt
            completions = sample_completions(model, tokenizer, pairs, settings, self.device).completions
            first, second = completions[: len(prompts)], completions[len(prompts) :]
            rows, info = label_pairs(prompts, first, second)
            DatasetDict({"preferences": Dataset.from_list(rows)}).save_to_disk(str(out_dir))
            return {"pairs": len(rows), **info}

        return self.stage("preferences", config, {"data": data, "policy": policy}, build)

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


@dataclass
class EvalContext:
    """What every evaluation suite reads: the same prompts and the same samples for every algorithm."""

    prompts: list[str]
    completions: list[str]
    completion_tokens: list[int]
    policy: Policy
    gold: GoldStandard | None
    device: str
    generation: Mapping[str, Any]
    proxy_reward: RewardFn | None = None  # the learned reward an RL policy was optimised against
    run: Run | None = None
    completion_ids: list[list[int]] | None = None  # the sampled token ids (None for procedural policies)
    model: Any = None  # the policy as loaded for sampling, and its tokenizer
    tokenizer: Any = None
    # per-sample values the suites add (`annotate`); they land in samples.jsonl
    columns: dict[str, list[Any]] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def policy_logprobs(self) -> tuple[list[list[float]], list[list[float]]]:
        """Per-token log-probabilities of the samples under the policy, and its entropy at each token.
        Computed once, whichever suites ask."""
        if "policy" not in self._memo:
            self._memo["policy"] = self._score(self.model, self.tokenizer)
        return self._memo["policy"]

    def reference_logprobs(self) -> list[list[float]]:
        """Per-token log-probabilities of the samples under the reference policy (loaded once)."""
        if "reference" not in self._memo:
            from harness.generation import load_policy

            if self.policy.reference_path is None:
                raise HarnessError("this policy has no reference model to compare with")
            if self.policy.reference_path == self.policy.path:
                self._memo["reference"] = self.policy_logprobs()[0]
            else:
                model, tokenizer = load_policy(self.policy.reference_path, self.device)
                self._memo["reference"] = self._score(model, tokenizer)[0]
        return self._memo["reference"]

    def _score(self, model: Any, tokenizer: Any) -> tuple[list[list[float]], list[list[float]]]:
        from harness.generation import token_logprobs

        if self.completion_ids is None or model is None:
            raise HarnessError("these samples come from a procedure, not one model; token log-probs are undefined")
        temperature = float(self.generation["temperature"])
        return token_logprobs(model, tokenizer, self.prompts, self.completion_ids, temperature, self.device)

    def annotate(self, name: str, values: Sequence[Any]) -> None:
        if len(values) != len(self.prompts):
            raise ValueError(f"annotation {name!r} has {len(values)} values for {len(self.prompts)} samples")
        self.columns[name] = list(values)

    def write_samples(self, path: Path) -> None:
        rows = []
        for i, (prompt, completion) in enumerate(zip(self.prompts, self.completions, strict=True)):
            row = {"prompt": prompt, "completion": completion, "completion_tokens": self.completion_tokens[i]}
            row.update({name: values[i] for name, values in self.columns.items()})
            rows.append(row)
        atomic_write_jsonl(path, rows)


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
