"""hydra/sweeper=tune: equal-budget tuning of every method of a comparison, then the comparison itself
(harness/tune/sweep.py; experiment=blur, experiment=zoo_tuned; docs/tuning.md). Its settings are `tune.*`.

No `from __future__ import annotations` here: Hydra scans this module for its dataclass before it is imported."""


from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class TuneSweeperConf:
    _target_: str = "hydra_plugins.harness_tuner.TuneSweeper"
    # written by the sweeper into multirun.yaml (the final comparison's grid, for the report); not a setting
    params: Any = None


ConfigStore.instance().store(group="hydra/sweeper", name="tune", node=TuneSweeperConf, provider="alignment-harness")


class TuneSweeper(Sweeper):
    def __init__(self, params: Any = None) -> None:
        super().__init__()
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: Sequence[str]) -> Any:
        from harness.tune.sweep import Tuning

        assert self.config is not None and self.hydra_context is not None
        loader = self.hydra_context.config_loader

        def compose(overrides: list[str]) -> DictConfig:
            return loader.load_sweep_config(self.config, list(overrides))

        def launch(batch: list[list[str]], first: int) -> Any:
            return self.launcher.launch(batch, initial_job_idx=first)

        slots = int(self.config.hydra.launcher.get("n_jobs") or 1)
        Tuning(self.config, list(arguments), launch, compose, slots).run()
        return []
