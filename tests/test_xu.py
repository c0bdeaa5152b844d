"""experiment=xu (Xu et al. 2024's PPO ablations in miniature): what it sweeps is what its header says, every variant
is a valid PPO setting, and the report can tell the variants apart and find the baseline. No training: the smoke
run of every experiment is tests/test_experiments.py's."""

from __future__ import annotations

import dataclasses

from omegaconf import OmegaConf

from harness.report.aggregate import expected_jobs
from plugins.algorithms.ppo import PPOConfig, load_config, stage_trainer


def variants(cfg) -> list[dict]:
    """The sweep's `algorithm.trainer` values, as the jobs get them (merged over PPO's trainer settings)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = cfg.hydra.sweeper.params
    (override,) = OverridesParser.create().parse_overrides([f"algorithm.trainer={params['algorithm.trainer']}"])
    return list(override.sweep_iterator())


def test_xu_is_ppo_on_the_learned_reward_judged_by_gold_and_kl(compose) -> None:
    cfg = compose(["experiment=xu"])
    assert cfg.experiment_name == "xu" and cfg.algorithm.name == "ppo" and cfg.reward.name == "learned"
    assert list(cfg.eval) == ["gold", "kl"]
    assert cfg.cpu_threads == 1 and cfg.hydra.launcher.n_jobs == 2
    assert cfg.hydra.sweeper.params.seed == "0,1,2"


def test_each_variant_changes_one_factor_at_the_same_training_budget(compose) -> None:
    """Baseline, advantage normalisation off, batch 32 and 256, EMA references 0.99 and 0.9. Every variant trains
    on 4096 episodes in minibatches of 32 for 2 epochs: 256 optimiser steps, so a batch size is not a budget."""
    cfg = compose(["experiment=xu"])
    trainer = OmegaConf.to_container(cfg.algorithm.trainer, resolve=True)
    configs = [load_config({**trainer, **variant}) for variant in variants(cfg)]
    baseline = configs[0]
    assert baseline == PPOConfig() and variants(cfg)[0] == {}
    changed = [
        {f.name for f in dataclasses.fields(PPOConfig) if getattr(c, f.name) != getattr(baseline, f.name)}
        for c in configs[1:]
    ]
    assert changed == [
        {"normalize_advantages"},
        {"batch_size", "num_minibatches"},
        {"batch_size", "num_minibatches"},
        {"ref_ema"},
        {"ref_ema"},
    ]
    assert [c.batch_size for c in configs] == [64, 64, 32, 256, 64, 64]
    for config in configs:
        updates = config.total_episodes // config.batch_size
        assert config.total_episodes == 4096 and config.batch_size // config.num_minibatches == 32
        assert updates * config.num_minibatches * config.ppo_epochs == 256
    assert len({tuple(sorted(stage_trainer(c).items())) for c in configs}) == len(configs)  # six PPO stages


def test_the_report_labels_each_variant_and_finds_the_baseline(compose) -> None:
    """Groups are labelled by the swept values as the jobs' overrides spell them (harness/report/aggregate.py);
    the report callback's baseline must be one of those labels, or no paired differences are drawn."""
    cfg = compose(["experiment=xu"])
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    swept, jobs = expected_jobs({"hydra": {"sweeper": {"params": params}, "overrides": {"task": ["experiment=xu"]}}})
    assert swept == ["algorithm.trainer", "seed"] and len(jobs) == 6 * 3
    labels = list(dict.fromkeys(f"ppo algorithm.trainer={job['algorithm.trainer']}" for job in jobs))
    assert len(labels) == 6
    assert cfg.hydra.callbacks.report.baseline == labels[0] == "ppo algorithm.trainer={}"
    assert "ppo algorithm.trainer={'ref_ema': 0.9}" in labels
