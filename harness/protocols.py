"""What a plugin is, and everything a plugin sees of the harness. Each plugin kind is a structural type:
implement the methods, no base class needed. A plugin imports this module (and the helpers harness.training,
harness.generation, harness.guards, harness.batching), never harness.runner or harness.job.

A plugin is a module under `plugins/` (or any installed package) plus a YAML in the matching `conf/` group whose
`_target_` names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from harness.errors import HarnessError
from harness.io import atomic_write_jsonl
from harness.stages import StageOutput

__all__ = [
    "Algorithm",
    "EvalContext",
    "EvalSuite",
    "GoldStandard",
    "HarnessError",
    "Logger",
    "ModelSource",
    "Policy",
    "Reward",
    "RewardFn",
    "RewardSource",
    "Run",
    "Sampled",
    "Sampler",
    "StageOutput",
    "Task",
]


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
    `prompts`, `eval_prompts` (the test prompts every table reports on) and `validation_prompts` (the prompts
    tuning chooses settings on; disjoint from `eval_prompts` and from every split a stage trains on) (`prompt`),
    `preferences` (`prompt`, `chosen`, `rejected`), `unpaired` (`prompt`, `completion`, `label`: KTO's form), and
    for a held-out judge that no method trains on, `judge_preferences` or `judge_prompts` (pairs sampled there
    and labelled by `label_pairs`). Prompts and completions are text or messages (harness/chat.py); the harness
    renders them for each model.

    A task with checkable answers also defines `verify(problem, completion) -> float` (and may define
    `format_reward` and `final_answer`); one with nothing but problems defines `problems(split)` and `verify` in
    place of `build_datasets` and `gold` (harness/verifiable.py).
    """

    name: str

    def build_datasets(self, out_dir: Path) -> Mapping[str, Any]: ...

    def gold(self) -> GoldStandard | None: ...


@runtime_checkable
class ModelSource(Protocol):
    """Makes the base model: `save_pretrained` of a causal LM and its tokenizer into `out_dir`."""

    name: str

    def build(self, out_dir: Path, datasets_dir: Path) -> Mapping[str, Any]: ...


class Sampled(NamedTuple):
    """What a sampler returns: one completion per prompt, its length in tokens, and the tokens generated to get it.
    They differ for a procedure that draws several completions and keeps one (best-of-n keeps one of n draws: its
    length is the kept draw's, the tokens generated are all n draws'). samples.jsonl and the report show `lengths`;
    the job's cost counts `tokens_generated`."""

    completions: list[str]
    lengths: list[int]
    tokens_generated: list[int]


# Samples one completion per prompt: (prompts, generation settings, device) -> Sampled, or (completions, lengths)
# when the lengths are also every token generated (one draw per prompt).
Sampler = Callable[[Sequence[str], Mapping[str, Any], str], Sampled | tuple[list[str], list[int]]]


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
    # the policy along its training (`snapshots=N`, harness.snapshots): each evaluated as this one is
    snapshots: list[Snapshot] = field(default_factory=list)


@dataclass(frozen=True)
class Snapshot:
    """The policy at `step` of its training (`fraction` of it), saved in `path` as a policy stage is. A procedure
    (best-of-n at a smaller n) gives its `sampler` and `analytic_kl` instead, as its Policy does."""

    step: int
    fraction: float
    path: Path
    sampler: Sampler | None = None
    analytic_kl: float | None = None


@dataclass
class Reward:
    """A loaded reward: what RL algorithms optimise and best-of-n ranks by."""

    name: str
    fn: RewardFn
    is_gold: bool
    model_path: Path | None = None  # a learned reward model's folder (full fine-tuning PPO starts its value model here)
    stages: list[StageOutput] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


class Run(Protocol):
    """What an algorithm (or reward, or suite) may call on the job it runs in. Expensive work goes through
    `stage`, so it is cached by content and shared by every job of a sweep that needs the same thing."""

    cfg: Any  # the job's composed config (read-only by convention)
    seed: int  # the job's training seed
    device: str  # "cpu" or "cuda"
    output_dir: Path  # the job's own folder
    logger: Any
    task: Task
    stages: dict[str, StageOutput]  # the stages this job has used so far, by name

    def stage(
        self,
        name: str,
        config: Any,
        inputs: Mapping[str, StageOutput],
        build: Callable[[Path], Mapping[str, Any] | None],
        collective: bool = False,
        parts: Sequence[StageOutput] = (),
    ) -> StageOutput:
        """A cached stage under `<cache_dir>/<name>/<key>`, the key hashing `config` and the inputs' keys; `build`
        fills an empty folder and returns metrics. `collective`: every process of a multi-process job builds it.
        `parts`: stages it is made of (rounds): its cost includes theirs, and the job lists it in their place."""
        ...

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
        """A method's training as a cached stage: `build(stage)` gets a `harness.api.TrainingStage` (its folder, the
        starting policy loaded for training, LoRA, snapshots, saving) and returns metrics. The stage adds the run's
        LoRA settings and snapshot count to the key, records an adapter's start, and trains in every process.
        `snapshots`: True keeps the job's `snapshots=N` along it; a list of fractions keeps those (one round of
        several). One call does all of it, so a new method repeats none of it."""
        ...

    def trained_policy(
        self,
        stage: StageOutput,
        *,
        reference: StageOutput | Path | None,
        reward: Reward | None = None,
        snapshots: Sequence[Snapshot] | None = None,
    ) -> Policy:
        """The `Policy` evaluation gets of a trained stage: its reference, the reward's metrics and proxy, the training
        finals and the snapshots along training."""
        ...

    def datasets(self) -> StageOutput: ...

    def with_seed(self, seed: int) -> Run:
        """This job with another training seed (same cache, data and logger): for stages every job shares."""
        ...

    def base_model(self) -> StageOutput: ...

    def reward(self) -> Reward: ...

    def preferences(self, policy: StageOutput | Callable[[], StageOutput], purpose: str = "train") -> StageOutput:
        """A stage with a `preferences` split: the task's own, else pairs sampled from `policy`. `purpose="judge"`:
        pairs reserved for a held-out judge, which no method trains on."""
        ...

    def load_split(self, split: str, stage: StageOutput | None = None) -> Any:
        """A split of the task's datasets (or of `stage`), prompts and completions rendered as the base model reads
        them (its chat template for messages; text unchanged)."""
        ...

    def gold(self) -> GoldStandard | None:
        """The task's gold standard (None without one); it accepts prompts as rendered by `load_split`."""
        ...

    def verifier(self) -> Any:
        """A verifiable task's checks (`harness.verifiable.Verifier`: verify, format, answers) on prompts as rendered
        by `load_split`; a one-line HarnessError for a task without `verify(problem, completion)`."""
        ...

    chat: Any  # harness.chat.ChatFormat of the base model's tokenizer

    def recorder(self, namespace: str, out_dir: Path) -> Any:
        """`record(metrics, step)` streams to the logger and keeps the stage's training curve."""
        ...

    def trainer_callback(self, namespace: str, out_dir: Path) -> Any: ...

    def training_metrics(self, stage: StageOutput, namespace: str = "train") -> dict[str, float]: ...


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
        """Per-token log-probabilities of the samples under the reference policy (loaded once). A LoRA policy whose
        reference is the stage its adapter was trained on scores them with the adapter off: no second copy."""
        if "reference" not in self._memo:
            from harness.adapters import adapter_disabled, is_peft_model, is_start_of
            from harness.generation import load_policy

            if self.policy.reference_path is None:
                raise HarnessError("this policy has no reference model to compare with")
            if self.policy.reference_path == self.policy.path:
                self._memo["reference"] = self.policy_logprobs()[0]
            elif is_start_of(self.policy.path, self.policy.reference_path) and is_peft_model(self.model):
                with adapter_disabled(self.model):
                    self._memo["reference"] = self._score(self.model, self.tokenizer)[0]
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

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """`compute()` once per job for every suite that asks with the same key (a baseline's samples)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

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
