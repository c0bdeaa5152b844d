"""Each method's search space (`search:` in its algorithm YAML, parsed by harness/tune/space.py) against the config it
tunes: every key an override that lands, every range well formed and around the method's default, the shared KL
strength tuned as `kl_beta` wherever a method reads it, and no knob that changes the training budget."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from harness.app import CONFIG_DIR
from plugins.algorithms import kl

ALGORITHMS = sorted(path.stem for path in (Path(CONFIG_DIR) / "algorithm").glob("*.yaml"))
UNTUNED = ("base", "sft", "checkpoint")  # train nothing of their own: nothing to tune
TUNED = [name for name in ALGORITHMS if name not in UNTUNED]
# settings that set how long or how wide a method trains: each trial trains the method's own default budget
BUDGET = {
    "num_train_epochs", "max_steps", "total_episodes", "rounds", "prompts_per_round", "num_generations",
    "per_device_train_batch_size", "gradient_accumulation_steps", "batch_size", "num_minibatches", "ppo_epochs",
    "num_iterations", "max_completion_length", "max_new_tokens", "max_length",
}  # fmt: skip
BUDGET_EXCEPTIONS = {("best_of_n", "algorithm.n")}  # best-of-n's n is its whole budget and its one knob
MISSING = object()
PROBE = 0.123  # a kl_beta no YAML types: where it lands in a trainer is that method's KL knob


@pytest.fixture(scope="module")
def compose() -> Any:
    """`compose(overrides)`, as the shared fixture, but module-wide and remembered: each config is composed once
    (composing is what this module spends its time on)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    cache: dict[tuple[str, ...], Any] = {}

    def composed(overrides: Any = ()) -> Any:
        key = tuple(overrides)
        if key not in cache:
            cache[key] = hydra_compose("config", overrides=list(key))
        return cache[key]

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield composed
    GlobalHydra.instance().clear()


def space(cfg: Any) -> dict[str, dict[str, Any]]:
    return OmegaConf.to_container(cfg.algorithm.search) if "search" in cfg.algorithm else {}


def knob_fields(compose: Any, algorithm: str) -> list[str]:
    """The trainer fields kl_beta flows into (beta, PPO's kl_coef, online DPO's list of betas); none: ignored."""
    node = OmegaConf.to_container(compose([f"algorithm={algorithm}", f"kl_beta={PROBE}"]).algorithm, resolve=True)
    return sorted(field for field, value in node.get("trainer", {}).items() if value in (PROBE, [PROBE]))


def a_value_inside(spec: dict[str, Any]) -> Any:
    """A value of the range away from its default: the first choice, the geometric or arithmetic mean."""
    if "choices" in spec:
        return spec["choices"][0]
    low, high = spec["low"], spec["high"]
    if isinstance(low, int) and isinstance(high, int):
        return (low + high) // 2
    return math.sqrt(low * high) if spec.get("log") else (low + high) / 2


def test_every_method_that_trains_declares_a_space_and_no_other_does(compose) -> None:
    declared = {name for name in ALGORITHMS if space(compose([f"algorithm={name}"]))}
    assert declared == set(TUNED)
    assert {"dpo", "hinge", "nca", "ppo", "grpo", "best_of_n"} <= declared


@pytest.mark.parametrize("algorithm", TUNED)
def test_each_key_is_an_override_that_lands(compose, algorithm: str) -> None:
    """A key is a path from the config's root that exists in the composed config (kl_beta too: null by default),
    and overriding it with a value of its range puts that value there."""
    values = {key: a_value_inside(spec) for key, spec in space(compose([f"algorithm={algorithm}"])).items()}
    cfg = compose([f"algorithm={algorithm}", *(f"{key}={value!r}" for key, value in values.items())])
    for key, value in values.items():
        assert OmegaConf.select(cfg, key, default=MISSING) == pytest.approx(value), f"{algorithm}: {key}"


@pytest.mark.parametrize("algorithm", TUNED)
def test_each_range_is_well_formed_and_holds_the_default(compose, algorithm: str) -> None:
    """{low, high[, log]} with low < high (low > 0 on a log scale), integers only for an integer setting (the parser
    draws integers when both ends are), or a non-empty {choices}; the method's own default lies inside, so the
    search is around the hand-tuned value (kl_beta's default is null: its range is checked against the knob below)."""
    cfg = compose([f"algorithm={algorithm}"])
    for key, spec in space(cfg).items():
        where = f"{algorithm}: search.{key}={spec}"
        default = OmegaConf.select(cfg, key)
        if "choices" in spec:
            assert set(spec) == {"choices"} and spec["choices"], where
            assert default in spec["choices"], where
            continue
        assert set(spec) <= {"low", "high", "log"}, where
        low, high = spec["low"], spec["high"]
        assert all(isinstance(end, int | float) and not isinstance(end, bool) for end in (low, high)), where
        assert low < high, where
        assert not spec.get("log") or low > 0, where
        if key != "kl_beta":
            assert isinstance(low, int) == isinstance(high, int) == isinstance(default, int), where
            assert low <= default <= high, where


@pytest.mark.parametrize("algorithm", TUNED)
def test_a_method_that_reads_kl_beta_tunes_kl_beta_and_not_its_trainers_knob(compose, algorithm: str) -> None:
    """Shared knobs mean one thing in every space: the KL strength is `kl_beta` (plugins/algorithms/kl.py converts
    it into each trainer's units), never `algorithm.trainer.beta` or `kl_coef`, whose units differ by method. A
    method kl_beta cannot reach (`kl_beta_ignored:`) does not spend trials on it. Where the conversion needs no
    measurement, the method's own default KL strength lies inside the kl_beta range."""
    cfg = compose([f"algorithm={algorithm}"])
    keys = set(space(cfg))
    fields = knob_fields(compose, algorithm)
    assert bool(fields) != ("kl_beta_ignored" in cfg.algorithm), algorithm
    if not fields:
        assert "kl_beta" not in keys, algorithm
        return
    assert "kl_beta" in keys, algorithm
    assert not keys & {f"algorithm.trainer.{field}" for field in fields}, algorithm
    trainer = OmegaConf.to_container(cfg.algorithm.trainer, resolve=True)
    knob = cfg.algorithm.get("kl_knob")
    if knob is None or kl.measurement(knob.kind, trainer) is None:  # the trainer's default is a kl_beta as it is
        spec = space(cfg)["kl_beta"]
        for field in fields:
            (own,) = trainer[field] if isinstance(trainer[field], list) else [trainer[field]]
            assert spec["low"] <= own <= spec["high"], f"{algorithm}: {field}={own} outside {spec}"


@pytest.mark.parametrize("algorithm", TUNED)
def test_no_space_changes_the_training_budget(compose, algorithm: str) -> None:
    """Every trial trains for the method's own default length and width (equal budget per method)."""
    for key in space(compose([f"algorithm={algorithm}"])):
        if (algorithm, key) not in BUDGET_EXCEPTIONS:
            assert key.rsplit(".", 1)[-1] not in BUDGET, f"{algorithm}: {key}"


@pytest.mark.parametrize(("algorithm", "loss_type"), [("hinge", "hinge"), ("nca", "nca_pair")])
def test_hinge_and_nca_are_dpo_with_another_trl_loss(compose, algorithm: str, loss_type: str) -> None:
    """SLiC's hinge and NCA are DPOTrainer losses TRL names in DPOConfig's loss_type (a list); beta multiplies
    summed log-ratios in both, so kl_beta reaches it as it is (kind dpo, nothing measured); the rest and the
    search space are DPO's, so they differ from DPO by the loss alone."""
    from trl import DPOConfig

    assert f"'{loss_type}'" in DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    cfg = compose([f"algorithm={algorithm}", "kl_beta=0.2"])
    dpo = compose(["algorithm=dpo", "kl_beta=0.2"])
    assert cfg.algorithm.name == algorithm and cfg.algorithm.trainer_class == "trl.DPOTrainer"
    assert list(cfg.algorithm.trainer.loss_type) == [loss_type]
    knob = OmegaConf.to_container(cfg.algorithm.kl_knob, resolve=True)
    assert knob == {"field": "beta", "kind": "dpo", "kl_beta": 0.2}
    trainer = OmegaConf.to_container(cfg.algorithm.trainer, resolve=True)
    assert kl.measurement("dpo", trainer) is None and trainer["beta"] == 0.2
    assert {**trainer, "loss_type": ["sigmoid"]} == OmegaConf.to_container(dpo.algorithm.trainer, resolve=True)
    assert space(cfg) == space(dpo)
