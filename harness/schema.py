"""Structured configs: the typed shape of a run, stored in Hydra's ConfigStore.

Hydra then rejects a misspelled key or a value of the wrong type while composing, before any work starts.
A trainer's config class is mirrored field by field on demand (hydra_plugins/alignment_harness/schema_source.py),
so an algorithm YAML that starts with `defaults: [/trl@trainer: SFTConfig]` accepts every TRL field under
`algorithm.trainer.*` (with TRL's own defaults) and nothing else; `mirror_dataclass` below makes the copy.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from harness.ranges import KEY as RANGE_KEY
from harness.ranges import allowed

_PRIMITIVES = (int, float, str, bool)

# The ranges of the trainer settings TRL and transformers declare (they state none): one table for every mirrored
# trainer config, by field name, or `Class.field` where one class means something else by the name. Zero is allowed
# where it means "off" as the method defines it: GRPO's and RLOO's beta = 0 drops the KL term (DAPO, Dr. GRPO do),
# while DPO's beta = 0 leaves no loss at all.
TRAINER_RANGES = {
    "learning_rate": "(0, inf)",
    "beta": "(0, inf)",
    "GRPOConfig.beta": "[0, inf)",
    "RLOOConfig.beta": "[0, inf)",
    "num_train_epochs": "(0, inf)",
    "per_device_train_batch_size": "[1, inf)",
    "per_device_eval_batch_size": "[1, inf)",
    "gradient_accumulation_steps": "[1, inf)",
    "warmup_ratio": "[0, 1]",
    "warmup_steps": "[0, inf)",
    "weight_decay": "[0, inf)",
    "max_grad_norm": "[0, inf)",
    "adam_beta1": "[0, 1)",
    "adam_beta2": "[0, 1)",
    "adam_epsilon": "(0, inf)",
    "label_smoothing": "[0, 0.5]",  # cDPO's epsilon: the probability a label is flipped; above 0.5 it inverts them
    "temperature": "(0, inf)",
    "top_p": "(0, 1]",
    "min_p": "[0, 1]",
    "top_k": "[0, inf)",
    "num_generations": "[2, inf)",  # a group needs two completions for a baseline
    "max_length": "[1, inf)",
    "max_prompt_length": "[1, inf)",
    "max_completion_length": "[1, inf)",
    "logging_steps": "(0, inf)",
    "save_steps": "(0, inf)",
    "epsilon": "(0, inf)",
    "epsilon_high": "(0, inf)",
    "desirable_weight": "(0, inf)",
    "undesirable_weight": "(0, inf)",
    "cpo_alpha": "[0, inf)",
    "simpo_gamma": "[0, inf)",
    "alpha": "[0, inf)",
    "missing_eos_penalty": "[0, inf)",
    "center_rewards_coefficient": "[0, inf)",
}


@dataclass
class GenerationConfig:
    """How every policy is sampled for evaluation (`generation`): one setting for every algorithm, so every algorithm
    is judged alike. An algorithm that samples "as long as the evaluation's completions" says so in its YAML with
    `${generation.max_new_tokens}`. `pair_generation` has the same fields and defaults."""

    max_new_tokens: int = field(default=40, metadata=allowed("[1, inf)"))  # longest completion
    temperature: float = field(default=1.0, metadata=allowed("(0, inf)"))  # 1.0 samples the policy itself
    top_k: int = field(default=0, metadata=allowed("[0, inf)"))  # 0 = off
    top_p: float = field(default=1.0, metadata=allowed("(0, 1]"))  # 1.0 = off
    batch_size: int = field(default=256, metadata=allowed("[1, inf)"))  # prompts per generate() call
    # sampling seed, the same for every algorithm and training seed
    seed: int = field(default=1234, metadata=allowed("[0, inf)"))
    # first N eval prompts; None = all (more than the task has is refused before training: harness.job)
    num_prompts: int | None = field(default=None, metadata=allowed("[1, inf)"))


@dataclass
class TuneConfig:
    """Equal-budget tuning (`tune`; hydra/sweeper=tune, experiment=blur|zoo_tuned; harness/tune/, docs/tuning.md).

    Every method in `methods` gets a study of `trials` trials over the search space its algorithm YAML declares
    (`search:`), each trial trained at `seed` and evaluated on the task's validation prompts; poor trials are pruned
    from their snapshots along training. Then each method's best settings run on the fresh `seeds` and are evaluated
    on the test prompts: the comparison the report shows."""

    methods: list[str] = field(default_factory=list)  # algorithms tuned, each with the same budget
    baselines: list[str] = field(default_factory=lambda: ["sft"])  # run untuned in the final comparison
    trials: int = field(default=8, metadata=allowed("[1, inf)"))  # per method, pruned ones included
    seed: int = field(default=1000, metadata=allowed("[0, inf)"))  # training seed of every trial
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # fresh seeds of the final comparison
    # evaluation suites of a trial: what the objective reads (the final comparison runs the experiment's `eval`)
    trial_eval: list[str] = field(default_factory=lambda: ["gold", "kl"])
    rungs: int = field(default=3, metadata=allowed("[0, inf)"))  # snapshots a trial is judged at along training
    pruner: str = "successive_halving"  # successive_halving (asynchronous) | hyperband | none
    reduction_factor: int = field(default=2, metadata=allowed("[2, inf)"))  # 1/this of a rung's trials go on
    sampler_seed: int = field(default=1234, metadata=allowed("[0, inf)"))
    startup_trials: int = field(default=3, metadata=allowed("[0, inf)"))  # random trials before TPE models the space
    storage: str | None = None  # SQLAlchemy URL of the studies; None: sqlite in the sweep folder (tuning.db)
    phase: str = "all"  # all | tune (a worker that only tunes, beside one that runs all) | final
    defaults_on_test: bool = False  # also run every method at its own defaults on `seeds` (hand-tuned vs tuned)
    heartbeat_s: int = field(default=10, metadata=allowed("[1, inf)"))  # a running trial says it is alive
    grace_s: int = field(default=60, metadata=allowed("[1, inf)"))  # silent this long: its worker died; rerun it
    # set by the sweeper for one trial's job (not by hand)
    study: str | None = None
    trial_id: int | None = None


@dataclass
class HarnessConfig:
    task: Any = MISSING
    model: Any = MISSING
    algorithm: Any = MISSING
    reward: Any = None
    eval: dict[str, Any] = field(default_factory=dict)
    logger: Any = MISSING
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    # how preference pairs are sampled from the starting policy and labelled by the task (data, not evaluation: its
    # own settings, so changing the evaluation's sampling never re-samples the pairs nor retrains what learns from them)
    pair_generation: GenerationConfig = field(default_factory=GenerationConfig)
    # the policy every method starts from (an algorithm config; conf/sft/): one node, so a change to it reaches
    # every method, the reward model and the win-rate baseline alike
    sft: Any = None
    # how training stages train: `name: none` is full fine-tuning, `lora`/`qlora` train peft adapters (conf/peft/)
    peft: Any = None
    # policies along training evaluated as the final one: N snapshots evenly spaced in the training stage's steps
    # (harness/snapshots.py; result.json `trajectory`), so each run traces a reward-vs-KL curve; 0: the final only
    snapshots: int = field(default=0, metadata=allowed("[0, inf)"))
    objective: str | None = "eval/gold/reward"  # the metric `harness` returns to a sweeper (e.g. Optuna)
    # the prompts a job is evaluated on: `test` (the task's eval_prompts, what every table reports) or `validation`
    # (its validation_prompts: what tuning chooses settings on, so the test prompts never reach an objective)
    eval_split: str = "test"
    tune: TuneConfig = field(default_factory=TuneConfig)
    # the KL a `kl_budget` is measured in (eval/<suite>/<metric>); its suite must be in `eval`
    kl_metric: str | None = "eval/kl/seq_kl"
    # nats of `kl_metric`; above it the objective ranks below every in-budget job (harness/objective.py)
    kl_budget: float | None = field(default=None, metadata=allowed("[0, inf)"))
    experiment_name: str = "default"  # groups the runs of one comparison (W&B group, report title)
    # training seed of the algorithm stage (the data and the base model have their own)
    seed: int = field(default=0, metadata=allowed("[0, inf)"))
    results_dir: str = "results"  # runs/, sweeps/ and the cache go under it
    cache_dir: str = "${results_dir}/cache"  # stages (datasets, base model, SFT, ...) shared by every job
    # what reusing a cached stage checks against what its build recorded: sizes (and small files' hashes), or hashes
    verify_stages: str = "sizes"
    device: str = "auto"  # auto | cpu | cuda
    # torch threads per job on CPU (None: torch's default); 1 when jobs run in parallel
    cpu_threads: int | None = field(default=None, metadata=allowed("[1, inf)"))
    # torch threads while the base model stage is built on CPU (None: cpu_threads). A sweep's jobs all wait for that
    # stage, so it can have the cores they leave idle
    base_model_threads: int | None = field(default=None, metadata=allowed("[1, inf)"))
    smoke: bool = False  # set by debug=smoke: tiny budgets everywhere
    # beta of the KL-regularised objective r - beta KL(policy || SFT), KL summed over a completion's tokens, one knob
    # for every algorithm that has it; each trainer's own knob (DPO/IPO/KTO `beta`, PPO `kl_coef`, GRPO/RLOO `beta`)
    # is derived from it as the algorithm's YAML declares. None: each algorithm's own default. Sweep it to trace
    # reward-vs-KL frontiers on one axis (experiment=frontier).
    kl_beta: float | None = field(default=None, metadata=allowed("(0, inf)"))


def _omegaconf_type(hint: Any) -> Any:
    """The closest type OmegaConf can check; `Any` where it cannot (unions of several types, objects)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _PRIMITIVES:
        return hint
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return str
    if origin is Literal:
        return str
    if origin in (Union, types.UnionType):
        options = [arg for arg in args if arg is not type(None)]
        inner = _omegaconf_type(options[0]) if len(options) == 1 else Any
        if len(options) > 1 and all(_omegaconf_type(o) is str for o in options):
            inner = str  # e.g. `SchedulerType | str`
        return Optional[inner] if type(None) in args and inner is not Any else inner
    if origin in (list, list):
        item = _omegaconf_type(args[0]) if args else Any
        return list[item if item in _PRIMITIVES else Any]
    if origin in (dict, dict):
        return dict[str, Any]
    return Any


def plain(node: Any) -> Any:
    """A resolved, JSON-ready copy of a config node (what stage keys and results are made of)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return node


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def mirror_dataclass(cls: type) -> type:
    """An OmegaConf-compatible copy of a dataclass: same fields, same defaults, types it can check, and each field's
    range (its own `allowed(...)` metadata, else TRAINER_RANGES). `__mirrors__` names the class, whose own checks
    harness.ranges runs on the composed values before any training."""
    hints = typing.get_type_hints(cls)
    fields = []
    for spec in dataclasses.fields(cls):
        if not spec.init or spec.name.startswith("_"):
            continue
        declared = spec.metadata.get(RANGE_KEY) or TRAINER_RANGES.get(f"{cls.__name__}.{spec.name}")
        metadata = allowed(declared or TRAINER_RANGES[spec.name]) if declared or spec.name in TRAINER_RANGES else {}
        hint = _omegaconf_type(hints[spec.name])
        if spec.default is not dataclasses.MISSING:
            default = _plain(spec.default)
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = None
        if default is None and hint is not Any and typing.get_origin(hint) is not Union:
            hint = Optional[hint]
        if isinstance(default, list | dict):
            fields.append((spec.name, hint, field(default_factory=lambda d=default: d.copy(), metadata=metadata)))
        elif isinstance(default, _PRIMITIVES) or default is None:
            fields.append((spec.name, hint, field(default=default, metadata=metadata)))
        else:
            fields.append((spec.name, Any, field(default=None, metadata=metadata)))
    return dataclasses.make_dataclass(f"{cls.__name__}Fields", fields, namespace={"__mirrors__": cls})


_registered = False


def _value_or_default(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _schema_class(key: str, *, _parent_: Any) -> str | None:
    """`${schema_class:trainer}`: the import path of the class whose schema typed the sibling node `key` (a YAML's
    `- /trl@trainer: experimental.x.XConfig` default), so a YAML names its trainer's config class once."""
    node = _parent_.get(key) if isinstance(_parent_, DictConfig) else None
    mirrored = getattr(OmegaConf.get_type(node), "__mirrors__", None) if isinstance(node, DictConfig) else None
    return f"{mirrored.__module__}.{mirrored.__qualname__}" if mirrored is not None else None


def _schema_default(path: str, *, _root_: DictConfig) -> Any:
    """`${schema_default:algorithm.trainer.kl_coef}`: the default that the schema of the key's node declares (its
    dataclass field's), whatever the key holds now, so a YAML that must restate a default (inside an interpolation,
    or to pin it under debug=smoke) names it instead of typing the value a second time."""
    parent_path, _, key = path.rpartition(".")
    parent = OmegaConf.select(_root_, parent_path, throw_on_missing=False) if parent_path else _root_
    kind = OmegaConf.get_type(parent) if isinstance(parent, DictConfig) else None
    fields = {spec.name: spec for spec in dataclasses.fields(kind)} if dataclasses.is_dataclass(kind) else {}
    spec = fields.get(key)
    if spec is None or (spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING):
        raise ValueError(f"schema_default:{path}: no schema declares a default for {key!r}; expected a schema's key")
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return _plain(spec.default)


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (once per process)."""
    global _registered
    if _registered:
        return
    # `${default:${kl_beta},0.3}`: the shared knob when it is set, else the algorithm's own value.
    OmegaConf.register_new_resolver("default", _value_or_default, replace=True)
    OmegaConf.register_new_resolver("schema_class", _schema_class, replace=True)
    OmegaConf.register_new_resolver("schema_default", _schema_default, replace=True)
    store = ConfigStore.instance()
    store.store(name="harness_schema", node=HarnessConfig)
    _registered = True
