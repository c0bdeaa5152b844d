"""Every config composes; bad keys, types and choices fail while composing, with Hydra's clear message."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from harness.app import CONFIG_DIR, apply_smoke

GROUPS = ["task", "model", "sft", "algorithm", "reward", "eval", "logger", "experiment", "debug"]


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (Path(CONFIG_DIR) / group).glob("*.yaml"))


def test_every_group_has_options() -> None:
    for group in GROUPS:
        assert options(group), f"conf/{group}/ has no options"


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group in GROUPS for option in options(group) if group != "eval"]
)
def test_each_option_composes(compose, override: str) -> None:
    cfg = compose([override, "task.path=x.jsonl"] if "hf_preferences" in override else [override])
    OmegaConf.resolve(cfg)  # every interpolation resolves
    group, option = override.split("=")
    if group in ("task", "model", "algorithm", "reward", "logger"):
        assert cfg[group].name == option
        assert cfg[group]._target_.startswith("plugins.")


def test_eval_suites_compose_as_a_list_each_under_its_own_key(compose) -> None:
    cfg = compose([f"eval=[{','.join(options('eval'))}]"])
    assert sorted(cfg.eval) == options("eval")
    assert all(cfg.eval[name].name == name for name in cfg.eval)
    assert compose(["eval=[]"]).eval == {}


def test_defaults_follow_the_house_order(compose) -> None:
    cfg = compose()
    assert (cfg.task.name, cfg.model.name, cfg.algorithm.name, cfg.logger.name) == (
        "testbed",
        "tiny_gpt2",
        "sft",
        "wandb",
    )
    assert cfg.seed == 0 and cfg.results_dir == "results"
    assert cfg.cache_dir == "results/cache"
    assert cfg.hydra.run.dir.startswith("results/runs/")


def test_any_trl_field_can_be_set_under_algorithm_trainer(compose) -> None:
    cfg = compose(["algorithm=dpo", "algorithm.trainer.weight_decay=0.1", "algorithm.trainer.max_grad_norm=0.5"])
    assert cfg.algorithm.trainer.weight_decay == 0.1 and cfg.algorithm.trainer.max_grad_norm == 0.5
    # untouched fields keep TRL's default
    from trl import DPOConfig, SFTConfig

    assert cfg.algorithm.trainer.adam_beta1 == DPOConfig.__dataclass_fields__["adam_beta1"].default
    cfg = compose(["sft.trainer.weight_decay=0.1"])  # the SFT every method starts from: its own node
    assert cfg.sft.trainer.weight_decay == 0.1
    assert cfg.sft.trainer.adam_beta1 == SFTConfig.__dataclass_fields__["adam_beta1"].default


def test_misspelled_trainer_field_is_rejected(compose) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose(["sft.trainer.lerning_rate=1"])
    assert "lerning_rate" in str(error.value.__cause__ or error.value)


def test_wrong_type_is_rejected(compose) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose(["algorithm=dpo", "algorithm.trainer.learning_rate=fast"])
    assert isinstance(error.value.__cause__, ValidationError)
    with pytest.raises(ConfigCompositionException):
        compose(["seed=zero"])


def test_unknown_top_level_key_is_rejected(compose) -> None:
    with pytest.raises(ConfigCompositionException) as error:
        compose(["sed=1"])
    assert "Key 'sed' not in 'HarnessConfig'" in str(error.value.__cause__)


def test_unknown_choice_is_rejected(compose) -> None:
    with pytest.raises(MissingConfigException) as error:
        compose(["algorithm=nope"])
    assert "algorithm/nope" in str(error.value)


def test_smoke_merges_each_plugins_own_budget(compose) -> None:
    cfg = compose(["debug=smoke"])
    assert cfg.smoke is True and cfg.logger.name == "none"
    full_steps = compose().model.train.steps
    apply_smoke(cfg)
    assert cfg.model.train.steps < full_steps
    assert cfg.sft.trainer.max_steps == 8
    assert cfg.task.num_pretrain < 10_000
    assert "smoke" not in cfg.task and "smoke" not in cfg.sft and "smoke" not in cfg.algorithm


def test_the_users_own_values_win_over_smoke_budgets(compose) -> None:
    overrides = ["debug=smoke", "algorithm=dpo", "model.train.steps=123", "sft.trainer.max_steps=7"]
    cfg = compose(overrides)
    apply_smoke(cfg, overrides)
    assert cfg.model.train.steps == 123 and cfg.algorithm.init.trainer.max_steps == 7
    assert cfg.algorithm.trainer.max_steps == 6  # from dpo's own smoke block
    assert cfg.algorithm.name == "dpo"


def test_a_dict_valued_override_keeps_the_smoke_budget_of_the_keys_it_does_not_name(compose) -> None:
    """experiment=xu sweeps `algorithm.trainer={ref_ema:0.9}`: under debug=smoke it must still be a smoke run."""
    overrides = ["debug=smoke", "algorithm=ppo", "algorithm.trainer={ref_ema:0.9,batch_size:64}"]
    cfg = compose(overrides)
    full = compose(["algorithm=ppo"]).algorithm.trainer
    apply_smoke(cfg, overrides)
    trainer = cfg.algorithm.trainer
    assert trainer.ref_ema == 0.9 and trainer.batch_size == 64  # the user's values
    assert trainer.total_episodes == 96 < full.total_episodes  # ppo's smoke budget, kept
    assert trainer.learning_rate == full.learning_rate  # and the keys neither names


def test_without_smoke_the_budget_blocks_are_dropped_unapplied(compose) -> None:
    cfg = compose()
    steps = cfg.model.train.steps
    apply_smoke(cfg)
    assert cfg.model.train.steps == steps and "smoke" not in cfg.model


def test_experiments_are_global_and_name_themselves(compose) -> None:
    for option in options("experiment"):
        cfg = compose([f"experiment={option}"])
        assert cfg.experiment_name == option
        assert "experiment" not in cfg
