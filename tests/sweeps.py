"""Hand-made sweep folders for report tests: result.json files with known numbers, laid out as Hydra does.

Not a test module: tests import it (`from sweeps import make_job, write_multirun`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from harness.declarations import headline_entries

GROUP = "handmade-2026-01-01_00-00-00"
EVAL_CONF = Path(__file__).resolve().parent.parent / "conf" / "eval"


def suite_headline(suites: tuple[str, ...] = ("gold", "kl", "diversity", "win_rate")) -> list[dict[str, Any]]:
    """The headline metrics the repository's own suite YAMLs declare, as a job records them in result.json."""
    entries: list[dict[str, Any]] = []
    for suite in suites:
        node = yaml.safe_load((EVAL_CONF / f"{suite}.yaml").read_text())[suite]
        entries += headline_entries(suite, node.get("headline"))
    return entries


def make_job(
    root: Path,
    number: int,
    algorithm: str,
    seed: int,
    metrics: dict[str, float],
    *,
    status: str = "complete",
    extra_overrides: tuple[str, ...] = (),
    curve: list[tuple[int, dict[str, float]]] | None = None,
    headline: list[dict[str, Any]] | None = None,
    curves: list[dict[str, Any]] | None = None,
) -> Path:
    """A job folder `<number>_<algorithm>_seed<seed>` with its overrides and a result.json. `headline`: what its
    suites declared (default: the repository's suites); `curves`: what its algorithm declared (default: none)."""
    folder = root / f"{number}_{algorithm}_seed{seed}"
    (folder / ".hydra").mkdir(parents=True)
    overrides = [f"algorithm={algorithm}", f"seed={seed}", *extra_overrides]
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if status == "missing":
        return folder  # Hydra made the folder, the job never wrote its result (killed)
    stages = {"data": 1.0, "base_model": 50.0, "sft": 20.0}
    if algorithm not in ("base", "sft", "best_of_n"):
        stages[algorithm] = 30.0 + seed
    result = {
        "schema_version": 1,
        "status": status,
        "error": "HarnessError: the loss went NaN" if status == "failed" else None,
        "experiment": "handmade",
        "algorithm": algorithm,
        "seed": seed,
        "name": f"{algorithm}-seed{seed}",
        "group": GROUP,
        "overrides": overrides,
        "config": {"generation": {"temperature": 1.0, "max_new_tokens": 40}, "logger": {"name": "none"}},
        "metrics": metrics if status == "complete" else {},
        "headline": suite_headline() if headline is None else headline,
        "curves": curves or [],
        "cost": {
            "wall_s": {**stages, "eval": 3.0, "train_job": 0.1, "job": 5.0},
            "built_now": {name: False for name in stages},
            "tokens_trained": {algorithm: 1000 * (seed + 1)} if algorithm in stages else {},
            "tokens_generated": 3000,
            "peak_memory_mb": 700.0,
        },
        "stages": {name: {"key": f"{name}{seed}", "path": "", "seconds": s} for name, s in stages.items()},
        "versions": {"torch": "2.13.0"},
    }
    (folder / "result.json").write_text(json.dumps(result))
    if curve:
        (folder / "train_log.jsonl").write_text("".join(json.dumps({"step": s, **m}) + "\n" for s, m in curve))
    return folder


def write_multirun(
    root: Path, params: dict[str, str], task: list[str] | None = None, baseline: str | None = "sft"
) -> None:
    """The `multirun.yaml` Hydra leaves in a sweep folder: what the sweep asked for, and the report callback's
    baseline (as conf/config.yaml records it; None: no report callback recorded)."""
    hydra: dict[str, Any] = {"sweeper": {"params": params}, "overrides": {"task": task or []}}
    if baseline is not None:
        hydra["callbacks"] = {"report": {"_target_": "harness.callbacks.ReportCallback", "baseline": baseline}}
    config: dict[str, Any] = {"hydra": hydra, "experiment_name": "handmade"}
    (root / "multirun.yaml").write_text(yaml.safe_dump(config))
