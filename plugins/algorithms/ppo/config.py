"""PPO's settings (`algorithm.trainer.*`): every hyperparameter, with what it does and where it comes from, and the
ones that make the stage's cache key."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from harness.api import HarnessError, allowed, check_fields


def _in(spec: str, default: Any) -> Any:
    """A field with its allowed range (harness.ranges): refused before any training, in one line."""
    return field(default=default, metadata=allowed(spec))


@dataclass(frozen=True)
class PPOConfig:
    """`algorithm.trainer.*`, with the defaults of conf/algorithm/ppo.yaml (tuned for the testbed; why: there)."""

    total_episodes: int = _in("[1, inf)", 4096)  # prompts rolled out in all; updates = total_episodes // batch_size
    batch_size: int = _in("[1, inf)", 64)  # prompts per rollout, i.e. per PPO update
    num_minibatches: int = _in("[1, inf)", 2)  # minibatches each rollout is split into per epoch (Schulman 2017)
    ppo_epochs: int = _in("[1, inf)", 2)  # passes over each rollout (Schulman et al. 2017)
    learning_rate: float = _in("(0, inf)", 3e-4)  # AdamW learning rate, decayed linearly to 0 (Huang et al. 2024)
    adam_eps: float = _in("(0, inf)", 1e-5)  # AdamW epsilon (Huang et al. 2022, "The 37 implementation details of PPO")
    weight_decay: float = _in("[0, inf)", 0.0)  # AdamW weight decay
    max_grad_norm: float = _in("(0, inf)", 1.0)  # global gradient-norm clip of policy and value (Huang et al. 2022)
    response_length: int = _in("[1, inf)", 40)  # most response tokens sampled per prompt
    temperature: float = _in("(0, inf)", 1.0)  # sampling temperature; logprobs from logits / temperature (Huang 2024)
    # subtracted from the score of a response with no EOS (Huang et al. 2024); 0 = off. Set as
    # algorithm.missing_eos_penalty, as in every method that samples (a number: the PPO plugin refuses null); the YAML
    # hands it down to here, where the loop and the stage key read it
    missing_eos_penalty: float | None = _in("[0, inf)", 1.0)
    kl_coef: float = _in("[0, inf)", 0.1)  # beta of the per-token KL penalty to the reference (Ziegler et al. 2019)
    kl_estimator: Literal["k1", "k3"] = "k1"  # k1 = log p - log p_ref; k3 = (r - 1) - log r, r = p_ref / p (Schulman)
    adaptive_kl: bool = False  # adapt kl_coef towards target_kl (Ziegler et al. 2019, eq. 2)
    target_kl: float = _in("(0, inf)", 6.0)  # KL (nats per response) the adaptive controller aims for (Ziegler 2019)
    kl_horizon: int = _in("[1, inf)", 10_000)  # episodes over which the adaptive controller moves kl_coef (Ziegler)
    # None: the KL penalty's reference is the frozen SFT policy. A number: after each update the reference moves
    # toward the policy, ref <- ref_ema ref + (1 - ref_ema) policy (Xu et al. 2024; ReaLHF's ref_ema_eta = 1 - ref_ema)
    ref_ema: float | None = _in("[0, 1)", None)
    whiten_rewards: bool = False  # whiten the per-token rewards before GAE (Huang et al. 2024)
    advantage_estimator: Literal["gae", "reinforce++"] = "gae"  # gae: critic + GAE; reinforce++: no critic (Hu 2025)
    normalize_advantages: bool = True  # whiten each batch's advantages (Xu et al. 2024: one of PPO's key factors)
    gamma: float = _in("[0, 1]", 1.0)  # discount (Huang et al. 2024: none within a response)
    gae_lambda: float = _in("[0, 1]", 0.95)  # GAE lambda (Schulman et al. 2016)
    clip_coef: float = _in("(0, inf)", 0.2)  # ratio clip of the policy loss (Schulman et al. 2017, eq. 7)
    cliprange_value: float = _in("(0, inf)", 0.2)  # clip of the value prediction around its rollout value (Huang 2022)
    vf_coef: float = _in("[0, inf)", 0.1)  # weight of the value loss (Ziegler et al. 2019; TRL)
    cpu_threads: int | None = _in("[1, inf)", 1)  # torch threads on CPU (not a hyperparameter: why 1, see the YAML)
    save_every: int = _in("[1, inf)", 16)  # updates between checkpoints a killed job resumes from (not a hyperparam.)

    def __post_init__(self) -> None:
        """What no single range says (harness.ranges runs this on the composed settings, before any training)."""
        check_fields(self)
        if self.batch_size % self.num_minibatches:
            raise ValueError(f"num_minibatches={self.num_minibatches}: must divide batch_size={self.batch_size}")
        if self.total_episodes < self.batch_size:
            raise ValueError(f"total_episodes={self.total_episodes}: less than one batch ({self.batch_size})")
        if self.advantage_estimator == "reinforce++" and self.gamma != 1.0:
            raise ValueError(f"gamma={self.gamma}: REINFORCE++ sums undiscounted rewards to go (Hu 2025); expected 1.0")


def load_config(fields: Mapping[str, Any]) -> PPOConfig:
    """A `PPOConfig` from `algorithm.trainer`; an unknown key, a wrong type or a value out of range is a one-line
    `HarnessError`."""
    hints = typing.get_type_hints(PPOConfig)
    known = {spec.name for spec in dataclasses.fields(PPOConfig)}
    values: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in known:
            raise HarnessError(f"algorithm.trainer.{key}: unknown PPO setting; expected one of {sorted(known)}")
        values[key] = _checked(f"algorithm.trainer.{key}", value, hints[key])
    try:
        return PPOConfig(**values)
    except HarnessError as error:  # a range: name the whole setting
        raise HarnessError(f"algorithm.trainer.{error}") from None
    except ValueError as error:
        raise HarnessError(f"algorithm.trainer.{error}") from None


def _checked(name: str, value: Any, hint: Any) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if value not in args:
            raise HarnessError(f"{name}={value!r}: expected one of {', '.join(map(str, args))}")
        return value
    if type(None) in args:  # `X | None`
        return None if value is None else _checked(name, value, next(a for a in args if a is not type(None)))
    expected = {bool: "true or false", int: "an integer", float: "a number"}[hint]
    if isinstance(value, bool) != (hint is bool):
        raise HarnessError(f"{name}={value!r}: expected {expected}")
    if hint is float and isinstance(value, int | float):
        return float(value)
    if not isinstance(value, hint):
        raise HarnessError(f"{name}={value!r}: expected {expected}")
    return value


# Settings added after PPO stages were cached, with the value that does what PPO did before them: at that value
# a setting stays out of the stage key, so every stage built before it (and every number quoted from one) is
# still found. Any other value is in the key.
ADDED_SETTINGS = {"ref_ema": None, "normalize_advantages": True}
NOT_IN_KEY = {"save_every"}  # where checkpoints go, not what is trained: the same policy


def stage_trainer(config: PPOConfig) -> dict[str, Any]:
    """The settings that go into the PPO stage's key."""
    return {
        key: value
        for key, value in dataclasses.asdict(config).items()
        if key not in NOT_IN_KEY and not (key in ADDED_SETTINGS and value is ADDED_SETTINGS[key])
    }
