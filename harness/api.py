"""The harness as a plugin sees it: the one module a plugin imports. Everything else in `harness/` is internal
and may change; an import-linter contract (`make test`, pyproject.toml's [tool.importlinter]) holds plugins to this.

    from harness.api import HarnessError, Policy, Run

What is here:
- the plugin kinds (`typing.Protocol`s: implement the methods, no base class): Algorithm, Task, ModelSource,
  RewardSource, EvalSuite, Logger; what they are handed: Run (the job), EvalContext (the shared samples);
  what they hand back: Policy, Snapshot, Reward, Sampled (a procedure's samples: what it kept, what it drew);
  the error a user can cause: HarnessError (one line);
- the training stage every trained method goes through: `run.train_stage(...)` builds a `TrainingStage`
  (cache key, LoRA, snapshots, cost) and `run.trained_policy(...)` the Policy;
- the helpers plugins share: a TRL trainer run as a stage (`fit`, `trainer_args`, `MetricsRecorder`), sampling
  (`load_policy`, `sample_completions`, `token_logprobs`), chat rendering, LoRA adapters, range declarations
  (`allowed`, `check_fields`), guards on rewards and prompt lengths, atomic writes, progress for a sweep's view,
  the cores a build may use now (`build_cores`: its own and those its waiting jobs lend it);
- a section of the report (`Section`, and `job_files`: what each job of a report group wrote) for a plugin that adds
  one (an entry point of `harness.report_sections`);
- verifiable tasks (`Verifier`, `is_verifiable`: `run.verifier()` checks completions against a task's problems).
"""

from __future__ import annotations

from harness.adapters import (
    ADAPTER_WEIGHTS,
    PeftSettings,
    adapter_active,
    adapter_disabled,
    adapter_start,
    is_adapter,
    is_peft_model,
    load_model,
    save_adapter,
)
from harness.adapters import of_run as peft_settings
from harness.batching import length_groups
from harness.chat import (
    check_messages,
    is_conversation,
    joinable,
    render_plain,
    use_end_of_turn_as_eos,
)
from harness.cores import build_cores
from harness.devices import torch_threads
from harness.errors import HarnessError
from harness.generation import load_policy, sample_completions, token_logprobs
from harness.guards import (
    check_rewards,
    context_size,
    finite_reward,
    keep_last,
    prompt_room,
    warn_long_prompts,
)
from harness.io import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_json
from harness.progress import step as progress_step
from harness.progress import steps as progress_steps
from harness.protocols import (
    Algorithm,
    EvalContext,
    EvalSuite,
    GoldStandard,
    Logger,
    ModelSource,
    Policy,
    Reward,
    RewardFn,
    RewardSource,
    Run,
    Sampled,
    Sampler,
    Snapshot,
    StageOutput,
    Task,
)
from harness.ranges import allowed, check_fields
from harness.report.sections import Section, job_files
from harness.results import redact_overrides
from harness.schema import plain
from harness.snapshots import of_stage as snapshots_of
from harness.snapshots import requested as snapshots_requested
from harness.train_stage import TrainingBuild, TrainingStage, link_policy, training_log
from harness.training import Fitted, MetricsRecorder, fit, trainer_args, truncate_history
from harness.verifiable import Verifier, is_verifiable

__all__ = [
    "ADAPTER_WEIGHTS",
    "Algorithm",
    "EvalContext",
    "EvalSuite",
    "Fitted",
    "GoldStandard",
    "HarnessError",
    "Logger",
    "MetricsRecorder",
    "ModelSource",
    "PeftSettings",
    "Policy",
    "Reward",
    "RewardFn",
    "RewardSource",
    "Run",
    "Sampled",
    "Sampler",
    "Section",
    "Snapshot",
    "StageOutput",
    "Task",
    "TrainingBuild",
    "TrainingStage",
    "Verifier",
    "adapter_active",
    "adapter_disabled",
    "adapter_start",
    "allowed",
    "atomic_write_json",
    "atomic_write_jsonl",
    "atomic_write_text",
    "build_cores",
    "check_fields",
    "check_messages",
    "check_rewards",
    "context_size",
    "finite_reward",
    "fit",
    "is_adapter",
    "is_conversation",
    "is_peft_model",
    "is_verifiable",
    "job_files",
    "joinable",
    "keep_last",
    "length_groups",
    "link_policy",
    "load_model",
    "load_policy",
    "peft_settings",
    "plain",
    "progress_step",
    "progress_steps",
    "prompt_room",
    "read_json",
    "redact_overrides",
    "render_plain",
    "sample_completions",
    "save_adapter",
    "snapshots_of",
    "snapshots_requested",
    "token_logprobs",
    "torch_threads",
    "trainer_args",
    "training_log",
    "truncate_history",
    "use_end_of_turn_as_eos",
    "warn_long_prompts",
]
