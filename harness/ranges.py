"""Values of the right type that cannot be right, refused before any work with one line naming the value.

Every setting's allowed range is declared once, where the setting is declared:

- a dataclass setting (HarnessConfig, GenerationConfig, a plugin's config class such as PPOConfig) in its field:
  `kl_coef: float = field(default=0.1, metadata=allowed("[0, inf)"))`;
- a trainer config mirrored from TRL or transformers gets its fields' ranges from `TRAINER_RANGES` in
  harness/schema.py (the mirror is where the harness declares those fields), and the class's own `__post_init__`
  checks (GRPO's batch that must split into groups) run too, before any training, not after the SFT stage;
- a YAML plugin (a task, a reward, a suite) declares `ranges:` next to its settings, keyed by their dotted path
  under the plugin's node; like `headline:` it is taken out before the plugin is built (harness.declarations):

      label_noise: 0.1
      ranges: {label_noise: "[0, 1]", num_prompts: "[1, inf)"}

A range is interval notation: `[0, 1]`, `(0, inf)`, `[1, inf)`, `(0, 1]`. A setting left at null (off, or the
plugin's own default) is not checked; a list is checked item by item.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from harness.errors import HarnessError

KEY = "range"  # the dataclass field metadata key
DECLARATION = "ranges"  # the YAML declaration key (harness.declarations.DECLARATION_KEYS)
_SPEC = re.compile(r"^\s*([\[(])\s*([-+]?(?:inf|[0-9.eE+-]+))\s*,\s*([-+]?(?:inf|[0-9.eE+-]+))\s*([\])])\s*$")


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    low_closed: bool
    high_closed: bool

    def __contains__(self, value: float) -> bool:
        if math.isnan(value):
            return False
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below

    def describe(self) -> str:
        """`> 0`, `>= 1`, `<= 0`, or `in [0, 1]`: how the one-line error states what is allowed."""
        if math.isinf(self.high):
            return f"{'>=' if self.low_closed else '>'} {_number(self.low)}"
        if math.isinf(self.low):
            return f"{'<=' if self.high_closed else '<'} {_number(self.high)}"
        left, right = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
        return f"in {left}{_number(self.low)}, {_number(self.high)}{right}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def parse(spec: str, where: str) -> Range:
    """`"(0, 1]"` -> Range; a malformed spec is the declaring plugin's mistake, named by `where`."""
    match = _SPEC.match(str(spec))
    if match is None:
        raise HarnessError(f"{where}: range {spec!r}; expected interval notation such as '[0, 1]' or '(0, inf)'")
    left, low, high, right = match.groups()
    try:
        bounds = float(low), float(high)
    except ValueError:
        raise HarnessError(f"{where}: range {spec!r}; its bounds must be numbers or inf") from None
    if bounds[0] > bounds[1]:
        raise HarnessError(f"{where}: range {spec!r}; its lower bound is above its upper bound")
    return Range(bounds[0], bounds[1], left == "[", right == "]")


def allowed(spec: str) -> dict[str, str]:
    """Dataclass field metadata declaring a setting's range: `field(default=..., metadata=allowed("(0, inf)"))`."""
    parse(spec, "allowed()")  # a typo fails at import, where the author sees it
    return {KEY: spec}


def check_value(path: str, value: Any, spec: str) -> None:
    """One-line `HarnessError` unless `value` (a number, a list of numbers, or null) lies in `spec`."""
    if value is None or isinstance(value, bool | str):
        return  # off, or a type the schema already checked
    if isinstance(value, list | tuple | ListConfig):
        for index, item in enumerate(value):
            check_value(f"{path}[{index}]", item, spec)
        return
    if not isinstance(value, int | float):
        return
    bounds = parse(spec, path)
    if value not in bounds:
        raise HarnessError(f"{path}={value!r}: out of range; expected a value {bounds.describe()}")


def check_fields(instance: Any) -> None:
    """A dataclass instance's fields against the ranges they declare (`allowed(...)`): for a config class that is
    also built outside a composed config (PPOConfig from a dict), in its `__post_init__`."""
    for spec in dataclasses.fields(instance):
        if KEY in spec.metadata:
            check_value(spec.name, getattr(instance, spec.name), spec.metadata[KEY])


def check_config(cfg: DictConfig, device: str = "cpu") -> None:
    """Every declared range of a composed run config (the first value outside its range is a one-line error).

    A node's own settings are checked before its children's, so `kl_beta=-1` is named as itself rather than as
    the trainer setting it flows into. `device`: where the job trains (a trainer config's checks depend on it)."""
    for path, node in _nodes(cfg, ""):
        for key, spec in _declared(node, path):
            check_value(f"{path}{key}", OmegaConf.select(node, key, throw_on_missing=False), spec)
        _check_class(node, path, device)


def _nodes(node: DictConfig, path: str) -> Iterator[tuple[str, DictConfig]]:
    queue = [(path, node)]
    while queue:
        prefix, current = queue.pop(0)
        yield prefix, current
        for key in current:
            if prefix == "" and key == "hydra":
                continue
            child = current._get_node(key)
            if child is None or child._is_interpolation():  # `init: ${sft}` is checked where it is set
                continue
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_missing():
                queue.append((f"{prefix}{key}.", child))


def _declared(node: DictConfig, path: str) -> Iterator[tuple[str, str]]:
    """(key under the node, range) from the node's dataclass fields and its YAML `ranges:`."""
    kind = OmegaConf.get_type(node)
    if kind is not None and dataclasses.is_dataclass(kind):
        for spec in dataclasses.fields(kind):
            if KEY in spec.metadata:
                yield spec.name, spec.metadata[KEY]
    declared = node.get(DECLARATION) if DECLARATION in node else None
    if declared is None:
        return
    if not isinstance(declared, Mapping | DictConfig):
        raise HarnessError(f"{path}{DECLARATION}: expected a mapping of setting -> range, got {declared!r}")
    for key, spec in declared.items():
        yield str(key), str(spec)


def _check_class(node: DictConfig, path: str, device: str) -> None:
    """A mirrored config class's own checks (`__post_init__`): built once from the node's values, as training
    would build it. A trainer config (transformers' TrainingArguments) is built the way harness.training does."""
    original = getattr(OmegaConf.get_type(node), "__mirrors__", None)
    if original is None:
        return
    fields = OmegaConf.to_container(node, resolve=True)
    where = path.rstrip(".") or "config"
    try:
        from transformers import TrainingArguments
    except ImportError:  # pragma: no cover - transformers is a dependency
        TrainingArguments = ()
    if isinstance(original, type) and issubclass(original, TrainingArguments):
        import tempfile

        from harness.training import trainer_args

        with tempfile.TemporaryDirectory() as scratch:  # nothing is written; TRL only records the path
            trainer_args(original, fields, output_dir=scratch, seed=0, device=device, setting=where, check_only=True)
        return
    try:
        original(**fields)
    except (TypeError, ValueError, HarnessError) as error:
        first_line = str(error).strip().splitlines()[0]
        name = re.split(r"[=:\s]", first_line, maxsplit=1)[0]
        if name in fields:  # `num_minibatches=3: must divide ...` names a field: put the node's path before it
            raise HarnessError(f"{where}.{first_line}") from None
        raise HarnessError(f"{where}: {first_line}") from None
