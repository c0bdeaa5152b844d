"""One training stage for every trained method: what each of them would otherwise repeat, done once.

A method hands `Run.train_stage` the settings that make its stage (its cache key), the stages it reads, the policy
it starts from and a `build(stage)` function that trains; the stage owns the rest:

- the cache key: the method's settings, plus the run's LoRA settings (only with `peft=lora`, so full fine-tuning
  keeps the keys it always had) and the number of snapshots along training (only when the job asks for them);
- LoRA: the starting policy loaded as training takes it (an adapter start merged first, so a new adapter sits on
  exactly the starting policy), and an adapter saved with the stage it was trained on (`start.json`);
- snapshots along training (harness.snapshots): a trainer callback, or `save_snapshot` for a loop of one's own;
- cost: the stage's wall time (Run.stage), and its trainable and total parameters;
- the `Policy` evaluation gets (`Run.trained_policy`): the stage, its reference, the reward's metrics and proxy,
  the training curve's finals and the snapshots.

    def build(stage: TrainingStage) -> dict[str, float]:
        model, kwargs = stage.load_start(reference_model=True)
        fitted = stage.fit(trl.DPOTrainer, trl.DPOConfig, fields, model=model, tokenizer=stage.tokenizer(), **kwargs)
        return {**fitted.summary("loss"), **stage.parameters(model)}

    trained = run.train_stage("dpo", config, {"start": start, "preferences": pairs}, build, start=start, snapshots=True)
    return run.trained_policy(trained, reference=start, reward=None)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import adapters
from harness import snapshots as snapshot_files
from harness.protocols import Policy, Reward, Snapshot, StageOutput

# A method's training: the stage it builds (an empty folder and the shared concerns) -> the stage's metrics.
TrainingBuild = Callable[["TrainingStage"], Mapping[str, Any] | None]


@dataclass
class TrainingStage:
    """The stage a method is training: where it writes, what it starts from, and the concerns every method shares."""

    run: Any
    out_dir: Path
    start: StageOutput
    peft: adapters.PeftSettings | None
    snapshot_count: int  # snapshots this stage keeps along its training (0: none)
    snapshot_fractions: tuple[float, ...] = ()  # or these fractions of it (a method trained in rounds)
    # with LoRA, the stage the trained adapter sits on: the start (merged, a new adapter on it), or, for a start that
    # is itself an adapter trained further (`continue_start`), the stage that adapter sits on
    adapter_base: Path | None = None

    @classmethod
    def outside_a_run(
        cls, out_dir: Path, start_path: Path, peft: adapters.PeftSettings | None = None, snapshot_count: int = 0
    ) -> TrainingStage:
        """A stage for a caller with no Run (a benchmark, a test): `out_dir` to write in, the policy saved in
        `start_path` to start from. It has no logger: `recorder` and `fit` need a Run."""
        start = StageOutput(name="start", key="", path=Path(start_path), built_now=False, seconds=0.0)
        return cls(run=None, out_dir=Path(out_dir), start=start, peft=peft, snapshot_count=snapshot_count)

    @property
    def base(self) -> Path:
        return self.adapter_base if self.adapter_base is not None else self.start.path

    # -- the starting policy ----------------------------------------------------------------------------------
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.start.path)

    def load_start(self, reference_model: bool = False, device: str | None = None) -> tuple[Any, dict[str, Any]]:
        """The starting policy as a trainer takes it, and the trainer's model arguments: a `peft_config` with LoRA
        (the reference is then the start with the adapter off: one copy of the weights), else a frozen copy of the
        start as `ref_model` when the method has a reference. An adapter start comes merged."""
        kwargs = self.peft.model_kwargs() if self.peft else {}
        model = adapters.load_model(self.start.path, device=device, merge=True, **kwargs)
        if self.peft is not None:
            return model, {"peft_config": self.peft.lora_config()}
        return model, {"ref_model": adapters.load_model(self.start.path)} if reference_model else {}

    def continue_start(self, device: str | None = None) -> Any:
        """The starting policy to train further as it is: with LoRA, an adapter start stays that adapter (trainable,
        on the stage it sits on), so a method trained in rounds grows one adapter; else `load_start`'s model."""
        if self.peft is None or not adapters.is_adapter(self.start.path):
            return self.load_start(device=device)[0]
        self.adapter_base = adapters.adapter_start(self.start.path)
        return adapters.load_model(self.start.path, device=device, trainable=True, **self.peft.model_kwargs())

    # -- training -------------------------------------------------------------------------------------------
    def recorder(self, namespace: str = "train") -> Any:
        return self.run.recorder(namespace, self.out_dir)

    def fit(
        self, trainer_cls: type, config_cls: type, fields: Mapping[str, Any], *, model: Any, tokenizer: Any,
        namespace: str = "train", **trainer_kwargs: Any,
    ) -> Any:
        """`harness.training.fit` in this stage: its folder, its snapshots, its adapter's start."""
        from harness.training import fit

        return fit(
            trainer_cls, config_cls, fields, run=self.run, model=model, tokenizer=tokenizer, out_dir=self.out_dir,
            namespace=namespace, snapshots=self.snapshot_count, snapshot_fractions=self.snapshot_fractions,
            start=self.base if self.peft is not None else None, **trainer_kwargs,
        )

    # -- snapshots, for a training loop of one's own ----------------------------------------------------------
    def snapshot_steps(self, total_steps: int) -> dict[int, float]:
        """Step -> fraction of training at which `save_snapshot` should be called."""
        if self.snapshot_fractions:
            return snapshot_files.targets_at(total_steps, self.snapshot_fractions)
        return snapshot_files.targets(total_steps, self.snapshot_count)

    def save_snapshot(self, model: Any, tokenizer: Any, step: int, total_steps: int) -> Path:
        return snapshot_files.save(model, tokenizer, self.out_dir, step, total_steps, start=self.base)

    # -- the result -----------------------------------------------------------------------------------------
    def save_policy(self, model: Any, tokenizer: Any) -> None:
        """The trained policy (safetensors) and its tokenizer: an adapter with its start, or every weight."""
        if adapters.is_peft_model(model):
            adapters.save_adapter(model, self.out_dir, start=self.base, tokenizer=tokenizer)
        else:
            model.save_pretrained(self.out_dir, safe_serialization=True)
            tokenizer.save_pretrained(self.out_dir)

    @staticmethod
    def parameters(*models: Any) -> dict[str, int]:
        """What training moved, as the stage reports it: trainable and total parameters of `models`."""
        trainable = total = 0
        for model in models:
            if model is not None:
                counted = adapters.trainable_parameters(model)
                trainable, total = trainable + counted[0], total + counted[1]
        return {"trainable_parameters": trainable, "total_parameters": total}

    def finish(self) -> None:
        """After `build`: an adapter a trainer saved names the stage it was trained on."""
        if self.peft is not None and adapters.is_adapter(self.out_dir) and not (self.out_dir / adapters.START).exists():
            adapters.record_start(self.out_dir, self.base)


def train_stage(
    run: Any,
    name: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, StageOutput],
    build: TrainingBuild,
    *,
    start: StageOutput,
    snapshots: bool | Sequence[float] = False,
    parts: Sequence[StageOutput] = (),
) -> StageOutput:
    """A method's training as a cached stage (Run.train_stage). `snapshots`: True keeps the job's `snapshots=N`
    along this stage's training (a method's own stage; not a stage another method starts from), or the explicit
    fractions of it to keep (a stage that is one round of several)."""
    peft = adapters.of_run(run)  # a bad `peft` setting is a one-line error before anything trains
    config = dict(config)
    if peft is not None:  # only then: full fine-tuning keeps the keys its stages always had
        config["peft"] = peft.stage_config()
    fractions = tuple(snapshots) if not isinstance(snapshots, bool) else ()
    count = len(fractions) if fractions else (snapshot_files.requested(run) if snapshots else 0)
    if fractions:
        config["snapshot_fractions"] = list(fractions)
    elif count:  # likewise: the policy along training
        config["snapshots"] = count

    def build_stage(out_dir: Path) -> Mapping[str, Any] | None:
        stage = TrainingStage(run, out_dir, start, peft, count, fractions)
        with snapshot_files.training_from(start.path):
            metrics = build(stage)
        stage.finish()
        return metrics

    return run.stage(name, config, inputs, build_stage, collective=True, parts=parts)  # every process trains


def trained_policy(
    run: Any,
    stage: StageOutput,
    *,
    reference: StageOutput | Path | None,
    reward: Reward | None = None,
    snapshots: Sequence[Snapshot] | None = None,
) -> Policy:
    """What evaluation gets of a trained stage: the policy, the reference its KL is measured to, the reward's own
    metrics and (a learned one) its proxy, the stage's training finals, and its snapshots along training."""
    reference_path = reference.path if isinstance(reference, StageOutput) else reference
    return Policy(
        path=stage.path,
        reference_path=reference_path,
        metrics={**(reward.metrics if reward is not None else {}), **run.training_metrics(stage)},
        proxy_reward=reward.fn if reward is not None and not reward.is_gold else None,
        snapshots=list(snapshots) if snapshots is not None else snapshot_files.of_stage(stage.path),
    )


def link_policy(source: Path, target: Path) -> None:
    """The files of the policy saved in stage `source` (not the stage's own records) into `target`: hard links, else
    copies. A stage that is another's policy under its own name (a method's rounds joined) costs no disk."""
    import os
    import shutil

    from harness.stages import HISTORY, MARKER, META

    for path in Path(source).iterdir():
        if path.is_file() and path.name not in (HISTORY, META, MARKER):
            try:
                os.link(path, Path(target) / path.name)
            except OSError:  # another filesystem, or links not allowed
                shutil.copy2(path, Path(target) / path.name)


def training_log(stage: StageOutput) -> list[dict[str, Any]]:
    """A stage's training curve as its recorder kept it: one row per logged step (`step` and the metrics)."""
    import json

    from harness.stages import HISTORY

    path = stage.path / HISTORY
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
