"""A method's search space, declared beside its settings in its algorithm YAML:

    search:
      kl_beta: {low: 0.03, high: 1.0, log: true}                    # a float, log-uniform
      algorithm.trainer.learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true}
      algorithm.n: {choices: [2, 4, 8, 16]}                          # one of these
      algorithm.trainer.some_count: {low: 1, high: 4}                # an integer: both ends are integers

Each key is an override from the config's root, so a trial is a list of `key=value` overrides of one job. Shared
knobs keep one meaning in every space: `kl_beta` is the KL strength of every method that has one
(plugins/algorithms/kl.py), never a trainer's own coefficient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.errors import HarnessError


@dataclass(frozen=True)
class Dimension:
    key: str  # the override path
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        import optuna

        if self.choices:
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.integer:
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log)

    def describe(self) -> str:
        if self.choices:
            return "{" + ", ".join(str(choice) for choice in self.choices) + "}"
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


def parse_space(method: str, declared: Any) -> list[Dimension]:
    """The dimensions of `declared` (an algorithm's `search:` node), each checked; a bad one is a one-line error."""
    if declared is None:
        raise HarnessError(f"algorithm {method!r} declares no search space; expected `search:` in its YAML")
    if not isinstance(declared, Mapping) or not declared:
        raise HarnessError(f"algorithm {method!r}: search={declared!r}; expected a mapping of override -> range")
    return [_dimension(method, str(key), spec) for key, spec in declared.items()]


def _dimension(method: str, key: str, spec: Any) -> Dimension:
    where = f"algorithm {method!r}: search.{key}"
    if not isinstance(spec, Mapping):
        raise HarnessError(f"{where}={spec!r}; expected {{low: ..., high: ..., log: true|false}} or {{choices: [...]}}")
    unknown = set(spec) - {"low", "high", "log", "choices"}
    if unknown:
        raise HarnessError(f"{where} has unknown keys {sorted(unknown)}; expected low, high, log or choices")
    if "choices" in spec:
        choices = tuple(spec["choices"] or ())
        if not choices or set(spec) != {"choices"}:
            raise HarnessError(f"{where}: choices={list(choices)!r}; expected a non-empty list and nothing else")
        return Dimension(key, choices=choices)
    low, high, log = spec.get("low"), spec.get("high"), bool(spec.get("log", False))
    numbers = all(isinstance(end, int | float) and not isinstance(end, bool) for end in (low, high))
    if not numbers or not low < high:
        raise HarnessError(f"{where}: low={low!r}, high={high!r}; expected two numbers with low < high")
    if log and low <= 0:
        raise HarnessError(f"{where}: low={low!r} on a log scale; expected low > 0")
    return Dimension(key, float(low), float(high), log, integer=isinstance(low, int) and isinstance(high, int))


def suggest(trial: Any, space: list[Dimension]) -> dict[str, Any]:
    """The trial's value of every dimension (its own, if the trial was enqueued with them)."""
    values: dict[str, Any] = {}
    for dim in space:
        if dim.choices:
            values[dim.key] = trial.suggest_categorical(dim.key, list(dim.choices))
        elif dim.integer:
            values[dim.key] = trial.suggest_int(dim.key, int(dim.low), int(dim.high), log=dim.log)
        else:
            values[dim.key] = trial.suggest_float(dim.key, dim.low, dim.high, log=dim.log)
    return values


def as_overrides(values: Mapping[str, Any]) -> list[str]:
    """`key=value` overrides of a job; floats with enough digits to be the same number again."""
    return [f"{key}={_text(value)}" for key, value in values.items()]


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)
