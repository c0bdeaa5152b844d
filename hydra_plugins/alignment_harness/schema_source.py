"""Config groups `trl` and `schema`: the fields of any dataclass config, named by import path, as a schema.

An algorithm YAML that wraps a trainer takes its `trainer:` fields from the trainer's own config class:

    defaults:
      - /trl@trainer: KTOConfig                            # trl.KTOConfig
      - /trl@trainer: experimental.orpo.ORPOConfig         # trl.experimental.orpo.ORPOConfig
      - /schema@trainer: plugins.algorithms.ppo.PPOConfig  # any dataclass, by its full import path

Hydra then accepts every field of that class under `algorithm.trainer.*`, with the class's own defaults, and
rejects a misspelled key or a wrong type while composing. No list of classes is kept anywhere: the class is
imported when a config names it.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from functools import cache
from typing import Any

from hydra.core.object_type import ObjectType
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin

SCHEME = "harness-schema"
# group -> what a name in it is prefixed with to make an import path
GROUPS = {"trl": "trl.", "schema": ""}


def class_path(config_path: str) -> str | None:
    """`trl/KTOConfig` -> `trl.KTOConfig`; `schema/pkg.mod.Class` -> `pkg.mod.Class`; None if not ours."""
    group, _, name = config_path.strip("/").partition("/")
    if group not in GROUPS or not name:
        return None
    name = name.removesuffix(".yaml")
    return GROUPS[group] + name if "." in GROUPS[group] + name else None


@cache
def _dataclass(path: str) -> type | None:
    module, _, name = path.rpartition(".")
    # a YAML that names trl.experimental.* does so on purpose (its header says so): not a warning per import
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return cls if dataclasses.is_dataclass(cls) and isinstance(cls, type) else None


@cache
def _schema(path: str) -> Any:
    from omegaconf import OmegaConf

    from harness.schema import mirror_dataclass

    cls = _dataclass(path)
    if cls is None:
        raise ConfigLoadError(f"{path}: not an importable dataclass (expected a config class such as trl.DPOConfig)")
    return OmegaConf.structured(mirror_dataclass(cls))


class SchemaSource(ConfigSource):
    """Serves `trl/<Name>` and `schema/<module.Class>` as structured configs mirrored from the class."""

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def load_config(self, config_path: str) -> ConfigResult:
        path = class_path(config_path)
        if path is None:
            raise ConfigLoadError(f"{config_path}: not a schema of this source")
        return ConfigResult(
            config=_schema(path), path=f"{SCHEME}://{path}", provider=self.provider, header={"package": None}
        )

    def available(self) -> bool:
        return True

    def is_group(self, config_path: str) -> bool:
        return config_path.strip("/") in GROUPS

    def is_config(self, config_path: str) -> bool:
        path = class_path(config_path)
        return path is not None and _dataclass(path) is not None

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        return []  # any importable class: there is nothing finite to list


class SchemaSearchPath(SearchPathPlugin):
    """Puts the schema source on every Hydra app's search path (it answers only for `trl/` and `schema/`)."""

    def manipulate_search_path(self, search_path: Any) -> None:
        search_path.append(provider="alignment-harness", path=f"{SCHEME}://")
