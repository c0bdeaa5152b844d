"""Defaults are stated once: a run setting's value and help in its schema dataclass (harness/schema.py), never again in
conf/config.yaml; a length that means "as long as the evaluation's completions" interpolates the evaluation's."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from harness.app import CONFIG_DIR, apply_smoke
from harness.schema import GenerationConfig, HarnessConfig

CONF = Path(CONFIG_DIR)
# the sampling lengths of methods that sample online, "as long as the evaluation's completions"
LENGTHS = {
    "grpo": "trainer.max_completion_length",
    "dapo": "trainer.max_completion_length",
    "dr_grpo": "trainer.max_completion_length",
    "rloo": "trainer.max_completion_length",
    "online_dpo": "trainer.max_new_tokens",
    "raft": "max_new_tokens",
}
LENGTH_KEYS = ("max_new_tokens", "max_completion_length")


def test_config_yaml_holds_the_defaults_list_and_hydras_settings_only() -> None:
    """Every run setting is a field of HarnessConfig: restating one in config.yaml would be a second default."""
    config = yaml.safe_load((CONF / "config.yaml").read_text())
    assert set(config) == {"defaults", "hydra"}


def test_the_composed_run_settings_are_the_schemas_defaults(compose) -> None:
    cfg = OmegaConf.to_container(compose(), resolve=False)
    for spec in dataclasses.fields(HarnessConfig):
        if spec.default is not dataclasses.MISSING and spec.type != "Any":  # not a group (task, sft, ...)
            assert cfg[spec.name] == spec.default, spec.name
    assert cfg["generation"] == cfg["pair_generation"] == dataclasses.asdict(GenerationConfig())


@pytest.mark.parametrize("algorithm", sorted(LENGTHS))
def test_a_sampling_length_follows_the_evaluations_and_pairs_keep_their_own(compose, algorithm: str) -> None:
    """Pairs are data: changing the evaluation's length must not re-sample them (nor retrain what learns on them)."""
    cfg = compose([f"algorithm={algorithm}", "generation.max_new_tokens=30"])
    assert OmegaConf.select(cfg.algorithm, LENGTHS[algorithm]) == 30
    assert cfg.pair_generation.max_new_tokens == GenerationConfig().max_new_tokens == 40
    assert OmegaConf.select(compose([f"algorithm={algorithm}"]).algorithm, LENGTHS[algorithm]) == 40


@pytest.mark.parametrize("algorithm", sorted(LENGTHS))
def test_smoke_shortens_the_evaluation_and_not_the_training_completions(compose, algorithm: str) -> None:
    """debug=smoke samples 24 tokens for evaluation; training keeps the full run's length, as it always did."""
    overrides = [f"algorithm={algorithm}", "debug=smoke"]
    cfg = compose(overrides)
    apply_smoke(cfg, overrides)
    assert cfg.generation.max_new_tokens == 24
    assert OmegaConf.select(cfg.algorithm, LENGTHS[algorithm]) == GenerationConfig().max_new_tokens


def _lengths(node: Any, path: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every sampling-length key in a YAML tree."""
    if isinstance(node, dict):
        found = [(f"{path}{key}", value) for key, value in node.items() if key in LENGTH_KEYS]
        for key, value in node.items():
            if key != "ranges":  # a declaration of allowed values, not a setting
                found += _lengths(value, f"{path}{key}.")
        return found
    return []


def test_no_yaml_types_the_evaluations_length_again() -> None:
    """A sampling length in a plugin's YAML names the evaluation's (or the schema's, to pin it under debug=smoke);
    debug=smoke's own 24 is the one number: its budget for the evaluation."""
    typed = []
    for path in sorted(CONF.rglob("*.yaml")):
        if path == CONF / "debug" / "smoke.yaml":
            continue
        for key, value in _lengths(yaml.safe_load(path.read_text()) or {}):
            if not (isinstance(value, str) and value.startswith("${")) and value is not None:
                typed.append(f"{path.relative_to(CONF)}: {key}={value}")
    assert not typed


@pytest.mark.parametrize("algorithm", ["ppo", "reinforce_pp"])
def test_a_yaml_over_our_own_config_class_restates_none_of_its_defaults(algorithm: str) -> None:
    """PPO's settings and their defaults are PPOConfig's: its YAML keeps what differs, and interpolations (kl_beta's
    `${default:...}` falls back to `${schema_default:...}`, never to the value typed again)."""
    from plugins.algorithms.ppo import PPOConfig

    text = (CONF / "algorithm" / f"{algorithm}.yaml").read_text()
    defaults = dataclasses.asdict(PPOConfig())
    trainer = (yaml.safe_load(text) or {}).get("trainer") or {}
    restated = {key: value for key, value in trainer.items() if not str(value).startswith("${")}
    assert not {key: value for key, value in restated.items() if defaults[key] == value}
    assert "${kl_beta}," not in text.replace("${default:${kl_beta},${schema_default:", "")
