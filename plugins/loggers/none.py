"""`logger=none`: metrics go only to `result.json` and the job log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NoLogger:
    def __init__(self, name: str = "none") -> None:
        self.name = name

    def start(self, *, config: Mapping[str, Any], name: str, group: str, job_type: str) -> None:
        pass

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def summary(self, metrics: Mapping[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass
