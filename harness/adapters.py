"""LoRA adapters through `peft`: the run's `peft` node, adapter stages, and loading a stage of either kind.

With `peft=lora` a training stage holds an adapter, not a model: `adapter_model.safetensors` and
`adapter_config.json` (peft's `save_pretrained`), the tokenizer, and `start.json`, the stage it was trained on (its
base). Loading one loads that start first (recursively: an adapter trained on an adapter-SFT loads the base with the
SFT adapter merged into it) and applies the adapter on top, unmerged, so the start policy is the same model with the
adapter switched off (the KL reference, a method's reference model) without a second copy of the base weights.

    model = load_model(stage.path)                    # a full model, or a PeftModel over its merged start
    model = load_model(stage.path, merge=True)        # the same weights as one plain model (to start training from)
    with adapter_disabled(model): ...                 # the start policy, from the same weights
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
START = "start.json"  # the folder an adapter was trained on: relative to the adapter (a moved cache), and absolute
FULL_FINE_TUNING = "none"


@dataclass(frozen=True)
class PeftSettings:
    """The run's `peft` node, checked: `lora` holds `peft.LoraConfig` fields, `quantization` those of
    `transformers.BitsAndBytesConfig` (QLoRA's 4-bit base) or None."""

    name: str
    lora: dict[str, Any]
    quantization: dict[str, Any] | None = None

    def stage_config(self) -> dict[str, Any]:
        """What a training stage's cache key holds of it (with peft's version: it draws the adapters' initial
        weights). Only adapter stages have it, so full fine-tuning keeps the keys it always had."""
        from importlib import metadata

        return {
            "name": self.name,
            "lora": dict(sorted(self.lora.items())),
            "quantization": self.quantization,
            "peft_version": metadata.version("peft"),
        }

    def lora_config(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(task_type="CAUSAL_LM", **self.lora)

    def model_kwargs(self) -> dict[str, Any]:
        """`from_pretrained` arguments of the base weights (QLoRA: quantised to 4 bits on load)."""
        if self.quantization is None:
            return {}
        import torch
        from transformers import BitsAndBytesConfig

        # bitsandbytes quantises as the weights reach the GPU: load them onto this process's own
        return {
            "quantization_config": BitsAndBytesConfig(**self.quantization),
            "device_map": {"": torch.cuda.current_device()},
        }


def settings(node: Any, device: str) -> PeftSettings | None:
    """The `peft` node as `PeftSettings`; None for full fine-tuning (`peft=none`, or no node). A LoRA field peft does
    not know, or `peft=qlora` without bitsandbytes or a GPU, is a one-line `HarnessError`: call this before training."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not node or node.get("name", "lora") == FULL_FINE_TUNING:
        return None
    from peft import LoraConfig

    from harness.declarations import DECLARATION_KEYS

    values = {key: value for key, value in node.items() if key not in DECLARATION_KEYS}  # `ranges:` is not LoRA's
    name = str(values.pop("name", "lora"))
    quantization = values.pop("quantization", None)
    known = {spec.name for spec in dataclasses.fields(LoraConfig) if spec.init} - {"task_type", "peft_type"}
    for key in values:
        if key not in known:
            raise HarnessError(f"peft.{key}: not a peft.LoraConfig field; expected one of {', '.join(sorted(known))}")
    if quantization is not None:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise HarnessError(f"peft={name}: its 4-bit base needs bitsandbytes, not installed; expected peft=lora")
        if device != "cuda":
            raise HarnessError(f"peft={name}: its 4-bit base needs a CUDA GPU, not device={device}; expected peft=lora")
    found = PeftSettings(name=name, lora=values, quantization=quantization)
    try:
        found.lora_config()
    except (TypeError, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        raise HarnessError(f"peft={name}: peft.LoraConfig rejected the settings: {reason}") from None
    return found


def of_run(run: Any) -> PeftSettings | None:
    """The job's `peft` settings (`settings` of `run.cfg.peft`)."""
    cfg = getattr(run, "cfg", None)
    return settings(cfg.get("peft") if cfg is not None else None, run.device)


# -- adapter stages --------------------------------------------------------------------------------------------
def is_adapter(path: Path | str) -> bool:
    """Whether `path` holds a peft adapter rather than a whole model."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_start(path: Path | str) -> Path:
    """The folder the adapter in `path` was trained on: its `start.json` (our stages), else the adapter config's
    `base_model_name_or_path` (an adapter saved elsewhere)."""
    path = Path(path)
    record = path / START
    if record.is_file():
        start = json.loads(record.read_text())
        relative = (path / start["relative"]).resolve()
        return relative if relative.exists() else Path(start["absolute"])
    base = json.loads((path / ADAPTER_CONFIG).read_text()).get("base_model_name_or_path")
    if not base:
        raise HarnessError(f"{path}: an adapter that names no model it was trained on (no {START}, no base model)")
    return Path(base)


def record_start(out_dir: Path, start: Path) -> None:
    """Write `start.json`: the folder the adapter in `out_dir` was trained on. The adapter config's
    `base_model_name_or_path` names it too (peft wrote the root model's there, wrong for an adapter on an adapter).
    In a multi-process job the main process writes it, as it wrote the adapter."""
    from harness import distributed
    from harness.io import atomic_write_json, read_json

    if not distributed.is_main():
        return
    start = Path(start).resolve()
    relative = os.path.relpath(start, Path(out_dir).resolve())
    atomic_write_json(Path(out_dir) / START, {"relative": relative, "absolute": str(start)})
    config = read_json(Path(out_dir) / ADAPTER_CONFIG)
    atomic_write_json(Path(out_dir) / ADAPTER_CONFIG, {**config, "base_model_name_or_path": str(start)})


def save_adapter(model: Any, out_dir: Path, start: Path, tokenizer: Any = None, adapter: str = "default") -> None:
    """One adapter of a PeftModel as safetensors (not the base weights), the tokenizer, and the start record."""
    model.save_pretrained(str(out_dir), selected_adapters=[adapter], safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    record_start(out_dir, start)


def load_model(
    path: Path | str,
    model_class: Any = None,
    device: str | None = None,
    *,
    merge: bool = False,
    trainable: bool = False,
    **kwargs: Any,
) -> Any:
    """The model saved in `path`, safetensors only (a pickled checkpoint can run code when loaded).

    A full model folder loads as `model_class.from_pretrained(path, **kwargs)` (default AutoModelForCausalLM). An
    adapter loads its start (merged, recursively) and applies the adapter as a `PeftModel` (`trainable`: to train it
    further); `merge=True` folds it into the weights and returns the plain model. `kwargs` reach the full model at the
    root of the chain (e.g. `num_labels=1`, `dtype`, QLoRA's `quantization_config`)."""
    if model_class is None:
        from transformers import AutoModelForCausalLM

        model_class = AutoModelForCausalLM
    path = Path(path)
    if not is_adapter(path):
        with unreadable_weights(path):
            model = model_class.from_pretrained(path, use_safetensors=True, **kwargs)
    else:
        from peft import PeftConfig, PeftModel

        if not (path / ADAPTER_WEIGHTS).is_file():
            raise HarnessError(f"{path}: an adapter without {ADAPTER_WEIGHTS}; expected peft's safetensors weights")
        start = load_model(adapter_start(path), model_class, merge=True, **kwargs)
        if merge:  # a plain PeftModel (no task type): only folded in, whatever head the model has (a reward model's)
            config = PeftConfig.from_pretrained(str(path))
            config.task_type = None
            model = PeftModel.from_pretrained(start, str(path), config=config).merge_and_unload()
            for parameter in model.parameters():  # peft froze them for its adapter; merged, they are a model's again
                parameter.requires_grad_(parameter.is_floating_point())  # (not QLoRA's packed 4-bit weights)
        else:
            model = PeftModel.from_pretrained(start, str(path), is_trainable=trainable)
    return model.to(device) if device is not None and "quantization_config" not in kwargs else model


@contextlib.contextmanager
def unreadable_weights(path: Path) -> Iterator[None]:
    """Weights that pass the stage check (sizes) but cannot be read (a damaged header): one line naming the folder
    and what to run, not the loader's traceback."""
    from safetensors import SafetensorError

    try:
        yield
    except SafetensorError as error:
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise HarnessError(
            f"{path}: its weights cannot be read ({reason}); run again with verify_stages=hashes to set the damaged "
            "stage aside and rebuild it, or delete that folder"
        ) from None


# -- what a job holds ------------------------------------------------------------------------------------------
def is_peft_model(model: Any) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def trainable_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total) parameter counts; tied weights count once."""
    trainable = total = 0
    for parameter in model.parameters():
        total += parameter.numel()
        trainable += parameter.numel() if parameter.requires_grad else 0
    return trainable, total


def is_start_of(path: Path | str, reference: Path | str | None) -> bool:
    """Whether `reference` is the folder the adapter in `path` was trained on (then the policy with its adapter off
    is the reference)."""
    if reference is None or not is_adapter(path):
        return False
    return Path(adapter_start(path)).resolve() == Path(reference).resolve()


@contextlib.contextmanager
def _requires_grad_kept(model: Any) -> Iterator[Callable[[], None]]:
    """peft's adapter switches also set `requires_grad` (the active adapter's on, every other's off); a model that
    trains two adapters at once (a policy's and a critic's) must keep both, before and after the switch."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]

    def restore() -> None:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)

    try:
        yield restore
    finally:
        restore()


@contextlib.contextmanager
def adapter_disabled(model: Any) -> Iterator[Any]:
    """The model with every adapter off (its start policy); trainability untouched."""
    with _requires_grad_kept(model) as restore, model.disable_adapter():
        restore()
        yield model


@contextlib.contextmanager
def adapter_active(model: Any, name: str) -> Iterator[Any]:
    """The model through adapter `name` instead of its active one; trainability untouched, so a graph built through
    the other adapter before still sends it its gradients."""
    previous = model.active_adapter
    with _requires_grad_kept(model) as restore:
        model.set_adapter(name)
        restore()
        try:
            yield model
        finally:
            model.set_adapter(previous)


def storage_bytes(*models: Any) -> int:
    """Bytes of the distinct storages behind the models' parameters: what they hold in memory, shared weights once."""
    seen: dict[int, int] = {}
    for model in models:
        if model is None:
            continue
        for parameter in model.parameters():
            storage = parameter.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())
