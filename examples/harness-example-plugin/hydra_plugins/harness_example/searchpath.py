"""Puts this package's configs on Hydra's search path, so `pip install` alone makes its choices appear.

Hydra imports every module in the `hydra_plugins` namespace when an app starts and calls each SearchPathPlugin;
this one appends `pkg://harness_example.conf`, the same as `hydra.searchpath=[pkg://harness_example.conf]` on the
command line. Appended, not prepended: the app's own configs win where names clash. Keep this module light
(no harness or torch imports): it is imported by every Hydra app in the environment.
"""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class HarnessExampleSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        search_path.append(provider="harness-example-plugin", path="pkg://harness_example.conf")
