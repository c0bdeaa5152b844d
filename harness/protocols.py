"""What a plugin is. Each plugin kind is a structural type: implement the methods, no base class needed.

A plugin is a module under `plugins/` plus a YAML in the matching `conf/` group whose `_target_` names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from harness.runner import EvalContext, Run
    from harness.stages import StageOutput


@runtime_checkable
class RewardFn(Protocol):
    """Scores whole texts: each prompt followed by its completion. Higher is better."""

    def __call__(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]: ...


@runtime_checkable
class GoldStandard(Protocol):
    """What a synthetic task knows exactly: the true reward and whether a text is well formed."""

    def reward(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]: ...

    def grammatical(self, prompts: Sequence[str], completions: Sequence[str]) -> list[bool]: ...


@runtime_checkable
class Task(Protocol):
    """Data for every stage. `build_datasets` writes a `datasets.DatasetDict` with `save_to_disk`.

    Splits a task may provide: `pretrain` and `pretrain_heldout` (`text`), `sft` (`prompt`, `completion`),
    `prompts` and `eval_prompts` (`prompt`), `preferences` (`prompt`, `chosen`, `rejected`).
    """

    name: str

    def build_datasets(self, out_dir: Path) -> Mapping[str, Any]: ...

    def gold(self) -> GoldStandard | None: ...


@runtime_checkable
class ModelSource(Protocol):
    """Makes the base model: `save_pretrained` of a causal LM and its tokenizer into `out_dir`."""

    name: str

    def build(self, out_dir: Path, datasets_dir: Path) -> Mapping[str, Any]: ...


# Samples one completion per prompt: (prompts, generation settings, device) -> (completions, token counts).
Sampler = Callable[[Sequence[str], Mapping[str, Any], str], tuple[list[str], list[int]]]


@dataclass
class Policy:
    """What an algorithm hands to evaluation: the trained model and the one it should stay close to.

    A policy that is a procedure rather than one model (best-of-n) supplies `sampler`; evaluation then calls
    it instead of sampling `path`. `analytic_kl` is its exact KL to the reference when known in closed form.
    `proxy_reward` is the learned reward the policy was optimised against, evaluated beside the gold one.
    """

    path: Path
    reference_path: Path | None
    metrics: dict[str, float] = field(default_factory=dict)
    sampler: Sampler | None = None
    analytic_kl: float | None = None
    proxy_reward: RewardFn | None = None


@dataclass
class Reward:
    """A loaded reward: what RL algorithms optimise and best-of-n ranks by."""

    name: str
    fn: RewardFn
    is_gold: bool
    model_path: Path | None = None  # a learned reward model's directory (PPO starts its value model here)
    stages: list[StageOutput] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class RewardSource(Protocol):
    """`reward=<name>`: makes the `Reward` (a task's gold function, or a reward model trained as a stage)."""

    name: str

    def load(self, run: Run) -> Reward: ...


@runtime_checkable
class Algorithm(Protocol):
    """Turns the run's inputs into a policy. Expensive work goes through `run.stage` so it is cached."""

    name: str

    def train(self, run: Run) -> Policy: ...


@runtime_checkable
class EvalSuite(Protocol):
    """Reads the shared evaluation samples (and models, if it needs them); returns `{metric: value}`.

    Metric names are bare (`reward`); the harness files them under `eval/<suite>/`.
    """

    name: str

    def evaluate(self, context: EvalContext) -> Mapping[str, float]: ...


@runtime_checkable
class Logger(Protocol):
    def start(self, *, config: Mapping[str, Any], name: str, group: str, job_type: str) -> None: ...

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def summary(self, metrics: Mapping[str, Any]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...
