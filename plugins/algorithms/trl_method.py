"""Any TRL trainer as an algorithm, named in YAML: the one wrapper for every method TRL implements.

A method that TRL trains is a YAML file and nothing else (HALOs' habit: one config per loss):

    defaults:
      - /trl@trainer: KTOConfig        # every KTOConfig field settable (and checked) as algorithm.trainer.<field>
      - _self_
    _target_: plugins.algorithms.trl_method.TRLMethod
    name: kto
    trainer_class: trl.KTOTrainer      # import path of the trainer
    data: unpaired                     # what it eats (below)
    init: ${sft}                       # the policy it starts from (null: the base model)
    reference_model: true              # hand the trainer a frozen copy of the starting policy
    kl_knob: {field: beta, kind: sequence, kl_beta: "${kl_beta}"}   # the trainer's KL coefficient, its units
    config_class: ${schema_class:trainer}   # the config class is the schema above (needed where `args` is unannotated)

`data` is one of
- `demonstrations`: the task's `sft` split (`prompt`, `completion`);
- `preferences`: pairs (`prompt`, `chosen`, `rejected`): the task's own, or samples of `pairs_from` (default: the
  starting policy) labelled by the task (Run.preferences);
- `unpaired`: the same pairs as single completions with a good/bad `label` (KTO's data: each pair gives one of
  each, so it sees exactly the preference methods' completions);
- `prompts`: the task's `prompts` split; the trainer samples completions and is rewarded by the run's `reward=`
  (`reward_funcs`), less `missing_eos_penalty` (a number >= 0, 0 = off) for a completion that never emitted EOS.
  That penalty is applied here, in the reward, for every such trainer; a trainer's own knob of the name (TRL's
  OnlineDPOConfig.missing_eos_penalty) stays null, so it is never applied twice.

`kl_knob` says which trainer field is the KL coefficient and what it multiplies (plugins/algorithms/kl.py, the one
place that converts the shared `kl_beta` into it). The YAML sets that field to `${default:${kl_beta},<own>}`; with
kl_beta set, a conversion that needs a measurement (GRPO's reward scale, IPO's completion length) replaces it when
the stage is built, and the stage records what it measured and the value the trainer got (`kl_beta/*`).

The trainer is wrapped, never subclassed (harness.training.fit): the harness owns the output folder, the seed,
logging and checkpoints; everything else is the trainer's own config.

With `peft=lora` the trainer gets a `peft_config` and no `ref_model`: it wraps the starting policy in a fresh adapter
and takes its reference from the same weights with the adapter off (one copy of them). The stage saves the adapter
alone and the stage it started from (harness.adapters); a start that is itself an adapter is merged first, so the
new adapter's reference is exactly the starting policy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from harness.api import (
    HarnessError,
    PeftSettings,
    Policy,
    Reward,
    Run,
    StageOutput,
    TrainingStage,
    check_rewards,
    peft_settings,
    plain,
    prompt_room,
    warn_long_prompts,
)
from plugins.algorithms import kl

DATA_KINDS = ("demonstrations", "preferences", "unpaired", "prompts")


def import_object(path: str, setting: str) -> Any:
    """`trl.KTOTrainer` -> the class; a one-line error naming the setting when it cannot be imported."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise HarnessError(f"{setting}={path!r}: cannot be imported ({error}); expected e.g. trl.DPOTrainer") from None


def config_class(trainer_cls: type, setting: str, named: str | None = None) -> type:
    """The config class a TRL trainer takes as `args`: the one the YAML's schema names (`config_class:
    ${schema_class:trainer}`, the class of its `- /trl@trainer: ...` default), else what the trainer's signature says
    (`args: KTOConfig | None`). Read from the signature's annotation object: `typing.get_type_hints` fails on TRL
    trainers (other parameters are annotated with names such as "PeftConfig" imported only for type checking).
    Several trainers in `trl.experimental` leave `args` unannotated: for them the YAML's schema is the answer."""
    import inspect
    import typing

    if named:
        return import_object(named, "algorithm.config_class")
    parameter = inspect.signature(trainer_cls.__init__).parameters.get("args")
    hint = getattr(parameter, "annotation", None)
    options = [hint, *typing.get_args(hint)]
    for option in options:
        if isinstance(option, type) and hasattr(option, "__dataclass_fields__"):
            return option
    raise HarnessError(
        f"{setting}={trainer_cls.__name__}: its `args` names no config class; expected a TRL trainer, or the YAML "
        "to name its schema (`- /trl@trainer: <Config>` in defaults and `config_class: ${schema_class:trainer}`)"
    )


def as_trl_reward(
    reward: Reward, eos_token_id: int | None = None, missing_eos_penalty: float = 0.0
) -> Callable[..., list[float]]:
    """Our reward as TRL's online trainers want it: keyword arguments, and a `__name__` its metrics are named after.

    A completion that never emits EOS (cut at `max_completion_length`) loses `missing_eos_penalty`: without
    it the policy learns to ramble until the cut (the missing-EOS penalty of Huang et al. 2024).
    """

    def reward_func(
        prompts: Sequence[str],
        completions: Sequence[str],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **_: Any,
    ) -> list[float]:
        scores = check_rewards(reward.name, reward.fn(list(prompts), list(completions)))
        if missing_eos_penalty and completion_ids is not None and eos_token_id is not None:
            scores = [
                s - missing_eos_penalty * (eos_token_id not in ids)
                for s, ids in zip(scores, completion_ids, strict=True)
            ]
        return scores

    reward_func.__name__ = f"reward_{reward.name}"
    return reward_func


def ships(run: Run, split: str) -> bool:
    """Whether the task's datasets hold `split`."""
    from datasets import load_from_disk

    return split in load_from_disk(str(run.datasets().path))


def unpaired(pairs: Any) -> Any:
    """Preference pairs as single completions labelled good (chosen) or bad (rejected), pair by pair."""
    from datasets import Dataset

    rows = []
    for prompt, chosen, rejected in zip(pairs["prompt"], pairs["chosen"], pairs["rejected"], strict=True):
        rows.append({"prompt": prompt, "completion": chosen, "label": True})
        rows.append({"prompt": prompt, "completion": rejected, "label": False})
    return Dataset.from_list(rows)


class TRLMethod:
    def __init__(
        self,
        name: str,
        trainer_class: str,
        data: str,
        init: Any = None,
        trainer: Mapping[str, Any] | None = None,
        reference_model: bool = False,
        pairs_from: Any = None,
        missing_eos_penalty: float = 0.0,
        logged: Sequence[str] = ("loss",),
        kl_knob: Mapping[str, Any] | None = None,
        config_class: str | None = None,
    ) -> None:
        if data not in DATA_KINDS:
            raise HarnessError(f"algorithm.data={data!r}: expected one of {', '.join(DATA_KINDS)}")
        self.name = name
        self.trainer_class = trainer_class
        self.data = data
        self.init = init  # the algorithm whose stage this one starts from (Hydra builds it from `init: ${sft}`)
        self.trainer = dict(trainer or {})
        self.reference_model = reference_model
        self.pairs_from = pairs_from  # who samples the preference pairs (default: the starting policy)
        self.missing_eos_penalty = missing_eos_penalty
        self.logged = list(logged)
        self.kl_knob = self._check_kl_knob(dict(kl_knob)) if kl_knob else None
        self.config_class = config_class  # the trainer's config class by import path (None: its `args` annotation)

    def _check_kl_knob(self, knob: dict[str, Any]) -> dict[str, Any]:
        """`{field, kind, kl_beta}`, the field present and holding kl_beta when kl_beta is set: a trainer field set
        by hand beside kl_beta would be silently overwritten, so it is refused instead."""
        field, kind = knob.get("field"), kl.check_kind(knob.get("kind", ""))
        if field not in self.trainer:
            raise HarnessError(f"algorithm.kl_knob.field={field!r}: not a field under algorithm.trainer; expected beta")
        kl_beta = knob.get("kl_beta")
        value = self.trainer[field]
        values = list(value) if isinstance(value, list | tuple) else [value]  # online DPO: one beta per epoch
        if kl_beta is not None and any(float(v) != float(kl_beta) for v in values):
            raise HarnessError(
                f"algorithm.trainer.{field}={value} with kl_beta={kl_beta}: kl_beta sets {field} (its {kind} "
                f"conversion, plugins/algorithms/kl.py); expected one of the two"
            )
        return {"field": field, "kind": kind, "kl_beta": kl_beta}

    def _kl_measurement(self) -> str | None:
        """What converting kl_beta into the trainer's knob must measure when the stage is built (None: nothing, the
        YAML's `${default:${kl_beta},...}` already holds the native value)."""
        if self.kl_knob is None or self.kl_knob["kl_beta"] is None:
            return None
        return kl.measurement(self.kl_knob["kind"], self.trainer)

    # -- the stage --------------------------------------------------------------------------------------
    def start(self, run: Run) -> StageOutput:
        """The policy training starts from: the `init` algorithm's stage, or the base model."""
        return self.init.stage(run) if self.init is not None else run.base_model()

    def stage(self, run: Run) -> StageOutput:
        """This method's trained policy as a cached stage (other algorithms start from it through `init`)."""
        self._peft(run)  # a bad `peft` setting stops the job before any stage trains
        return self._stage(run, self.start(run))  # as a start: the plain stage, without the job's snapshots

    def _peft(self, run: Run) -> PeftSettings | None:
        """The run's `peft` settings, and whether this trainer can take them (a one-line error if not)."""
        import inspect

        peft = peft_settings(run)
        if peft is not None:
            trainer_cls = import_object(self.trainer_class, "algorithm.trainer_class")
            if "peft_config" not in inspect.signature(trainer_cls.__init__).parameters:
                raise HarnessError(
                    f"peft={peft.name}: {self.name}'s trainer {self.trainer_class} takes no peft_config; expected "
                    "peft=none for this method"
                )
        return peft

    def _check_missing_eos_penalty(self) -> None:
        """One missing-EOS penalty, `algorithm.missing_eos_penalty`, subtracted in our reward (as_trl_reward): a
        trainer's own field of the name (OnlineDPOConfig's) set beside it would subtract it a second time."""
        own = self.trainer.get("missing_eos_penalty")
        if own is not None:
            raise HarnessError(
                f"algorithm.trainer.missing_eos_penalty={own}: the trainer's own penalty would come on top of the "
                f"harness's; expected algorithm.missing_eos_penalty={own} (subtracted once, as in every method)"
            )
        if not isinstance(self.missing_eos_penalty, int | float) or isinstance(self.missing_eos_penalty, bool):
            raise HarnessError(
                f"algorithm.missing_eos_penalty={self.missing_eos_penalty!r}: expected a number >= 0 (0 = off)"
            )

    def _stage(self, run: Run, start: StageOutput, snapshots: bool = False) -> StageOutput:
        self._check_missing_eos_penalty()  # here, not in __init__: Hydra would wrap the one-line error
        config: dict[str, Any] = {
            "algorithm": self.name,
            "trainer_class": self.trainer_class,
            "data": self.data,
            "trainer": plain(self.trainer),
            "reference_model": self.reference_model,
            "seed": run.seed,
        }
        if self._kl_measurement() is not None:  # only then: trainer.<field> holds kl_beta, converted when built
            config["kl_knob"] = self.kl_knob
        inputs = {"start": start}
        reward = None
        if self.data == "demonstrations":
            inputs["data"] = run.datasets()
        elif self.data == "unpaired" and ships(run, "unpaired"):
            inputs["data"] = run.datasets()  # the task's own labelled completions (KTO's form)
        elif self.data in ("preferences", "unpaired"):
            source = self.pairs_from if self.pairs_from is not None else self.init
            inputs["preferences"] = run.preferences(lambda: source.stage(run) if source is not None else start)
        else:
            reward = run.reward()
            config.update(reward=reward.name, missing_eos_penalty=self.missing_eos_penalty)
            inputs["data"] = run.datasets()
            if reward.stages:
                inputs["reward"] = reward.stages[-1]
        build = lambda stage: self._train(run, stage, inputs, reward)  # noqa: E731
        return run.train_stage(self.name, config, inputs, build, start=start, snapshots=snapshots)

    def train(self, run: Run) -> Policy:
        self._peft(run)
        start = self.start(run)
        stage = self._stage(run, start, snapshots=True)
        reward = run.reward() if self.data == "prompts" else None
        return run.trained_policy(stage, reference=start, reward=reward)

    # -- training ---------------------------------------------------------------------------------------
    def _train(
        self, run: Run, stage: TrainingStage, inputs: Mapping[str, StageOutput], reward: Reward | None
    ) -> dict[str, Any]:
        trainer_cls = import_object(self.trainer_class, "algorithm.trainer_class")
        self._peft(run)
        tokenizer = stage.tokenizer()
        model, kwargs = stage.load_start(reference_model=self.reference_model)
        facts: dict[str, Any] = {}
        fields = dict(self.trainer)
        if self.data == "demonstrations":
            kwargs["train_dataset"] = run.load_split("sft")
        elif self.data == "unpaired" and "preferences" not in inputs:  # the task's own unpaired split
            kwargs["train_dataset"] = run.load_split("unpaired").select_columns(["prompt", "completion", "label"])
            facts["examples"] = len(kwargs["train_dataset"])
        elif self.data in ("preferences", "unpaired"):
            pairs = run.load_split("preferences", inputs["preferences"])
            pairs = pairs.select_columns(["prompt", "chosen", "rejected"])
            kwargs["train_dataset"] = pairs if self.data == "preferences" else unpaired(pairs)
            facts["pairs"] = len(pairs)
            if self._kl_measurement() == "completion_tokens":
                completions = [*pairs["chosen"], *pairs["rejected"]]
                facts["kl_beta/completion_tokens"] = kl.mean_completion_tokens(completions, tokenizer)
        else:
            assert reward is not None
            kwargs["reward_funcs"] = as_trl_reward(reward, tokenizer.eos_token_id, self.missing_eos_penalty)
            kwargs["train_dataset"] = self._prompts_that_fit(run, model, tokenizer)
            if self._kl_measurement() == "reward_std":
                facts["kl_beta/reward_std"] = self._measure_reward_std(run, model, tokenizer, kwargs)
        if self._kl_measurement() is not None:
            assert self.kl_knob is not None
            native = kl.native_beta(
                self.kl_knob["kind"],
                float(self.kl_knob["kl_beta"]),
                self.trainer,
                reward_std=facts.get("kl_beta/reward_std"),
                completion_tokens=facts.get("kl_beta/completion_tokens"),
            )
            fields[self.kl_knob["field"]] = native
            facts["kl_beta/native"] = native
        config_cls = config_class(trainer_cls, "algorithm.trainer_class", self.config_class)
        fitted = stage.fit(trainer_cls, config_cls, fields, model=model, tokenizer=tokenizer, **kwargs)
        # the trainer wrapped `model` in place (LoRA): its parameters are what trained
        return {**fitted.summary(*self.logged), **facts, **stage.parameters(model)}

    def _measure_reward_std(self, run: Run, model: Any, tokenizer: Any, kwargs: Mapping[str, Any]) -> float:
        """sigma of kl.native_beta: the starting policy's reward spread on a seeded draw of the training prompts,
        scored as the trainer will score them; the tokenizer's padding sides are left as the trainer expects."""
        prompts = kwargs["train_dataset"].shuffle(seed=run.seed)["prompt"]
        if run.device != "cpu" and getattr(model, "hf_device_map", None) is None:
            model.to(run.device)  # where the trainer puts it anyway; sampled there, not on the CPU
        sides = tokenizer.padding_side, tokenizer.truncation_side
        try:
            return kl.measure_reward_std(model, tokenizer, prompts, kwargs["reward_funcs"], self.trainer, run.seed)
        finally:
            tokenizer.padding_side, tokenizer.truncation_side = sides

    def _prompts_that_fit(self, run: Run, model: Any, tokenizer: Any) -> Any:
        """The training prompts, less those with no room beside `max_completion_length` in the model's context
        (TRL would fail on them deep inside the model). Dropped, not cut: TRL tokenises the text itself, and text
        cut by tokens does not come back as the same tokens with every tokenizer."""
        prompts = run.load_split("prompts")
        setting = "algorithm.trainer.max_completion_length"
        length = int(self.trainer.get("max_completion_length") or 0)
        room = prompt_room(model, length, setting) if length else None
        action = "training without them"
        longer = warn_long_prompts(self.name, tokenizer, prompts["prompt"], room, length, setting, action)
        if longer and len(longer) == len(prompts):
            raise HarnessError(
                f"{self.name}: no training prompt fits the model's context of {room + length} tokens beside "
                f"{setting}={length}; expected shorter prompts or a smaller {setting}"
            )
        return prompts.select(sorted(set(range(len(prompts))) - set(longer))) if longer else prompts
