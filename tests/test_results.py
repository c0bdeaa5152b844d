"""The Result type: the one writer and reader of result.json. A result.json written before the type existed
(tests/data/result_v1.json: `harness debug=smoke algorithm=dpo snapshots=2 logger=none`, and a failed job's) reads
through it and through the report's aggregation with its numbers unchanged; a result writes and reads back equal;
the schema in harness/results.py's docstring names every field a job writes."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest

import harness.results
from harness.report.aggregate import load_sweep
from harness.report.frontier import trajectory_points
from harness.report.tables import compare, cost_metrics
from harness.results import (
    RESULT_FILE,
    SCHEMA_VERSION,
    Cost,
    Result,
    StageRecord,
    TrajectoryPoint,
    read_all,
    read_results,
)

DATA = Path(__file__).resolve().parent / "data"
V1, V1_FAILED = DATA / "result_v1.json", DATA / "result_v1_failed.json"
GOLD, KL = "eval/gold/reward", "eval/kl/seq_kl"


def _written(name: str) -> list[str]:
    """The keys a dataclass of harness.results writes: its fields but `extra` (unknown keys) and `dir`."""
    return [f.name for f in dataclasses.fields(getattr(harness.results, name)) if f.name not in ("extra", "dir")]


def test_a_result_json_written_before_the_type_reads_through_it() -> None:
    raw = json.loads(V1.read_text())
    result = Result.read(V1)
    assert result.dir == DATA and result.schema_version == 1 and not result.extra
    assert (result.status, result.error, result.algorithm, result.seed) == ("complete", None, "dpo", 0)
    assert (result.experiment, result.name, result.group) == ("default", "dpo-snapshots=2-seed0", "default")
    assert result.overrides[:3] == ["debug=smoke", "algorithm=dpo", "snapshots=2"]
    assert result.metrics == raw["metrics"] and result.metrics[GOLD] == 0.4433802263385069
    assert result.config["generation"]["max_new_tokens"] == 24
    assert [(p.step, p.fraction) for p in result.trajectory] == [(2, 0.333333), (4, 0.666667)]
    assert result.trajectory[1].metrics[KL] == -0.00019768299534916878
    assert result.curves == [{"key": "rewards/margins", "label": "reward margin", "role": None}]
    assert result.headline[0]["key"] == GOLD and result.headline[0]["bounds"] == [0.0, 1.0]
    cost = result.cost
    assert (cost.tokens_generated, cost.peak_memory_mb, cost.wall_s["dpo"]) == (354, 588.5, 1.605)
    assert cost.tokens_trained == {"base_model": 49556, "dpo": 5598, "sft": 3928}
    assert cost.trainable_parameters["dpo"] == [111872, 111872] and cost.built_now["dpo"] is True
    assert list(result.stages) == ["base_model", "data", "dpo", "preferences", "sft"]
    dpo = result.stages["dpo"]
    assert isinstance(dpo, StageRecord) and dpo.key == "cec50cd1b5b70e1c"
    assert dpo.path == "results/cache/dpo/cec50cd1b5b70e1c"
    assert dpo.built_now is True and dpo.seconds == 1.605 and dpo.metrics == raw["stages"]["dpo"]["metrics"]
    assert (result.resumed, result.resumed_from) == (False, {})
    assert result.versions["torch"] == "2.13.0+cpu" and result.started_at == "2026-12-07T02:31:29+00:00"
    assert result.to_dict() == raw  # nothing lost, nothing converted


def test_a_failed_result_json_reads_through_the_type() -> None:
    raw = json.loads(V1_FAILED.read_text())
    result = Result.read(V1_FAILED)
    assert result.status == "failed" and result.error == raw["error"] and "needs the nope suite" in result.error
    assert result.metrics == {} and result.stages == {} and result.trajectory == []
    assert result.cost == Cost(wall_s=raw["cost"]["wall_s"], tokens_generated=0, peak_memory_mb=478.5)
    assert result.to_dict() == raw


def test_the_report_aggregates_a_result_json_written_before_the_type(tmp_path: Path) -> None:
    """A folder of runs with today's result.json (and one failed job): the report reads both, with their values."""
    for number, (source, name) in enumerate(((V1, "dpo_seed0"), (V1_FAILED, "dpo_seed1"))):
        (tmp_path / f"{number}_{name}").mkdir()
        shutil.copy(source, tmp_path / f"{number}_{name}" / RESULT_FILE)
    sweep = load_sweep(tmp_path)
    complete, failed = sweep.jobs
    assert (complete.status, complete.dir, complete.seed) == ("complete", tmp_path / "0_dpo_seed0", "0")
    assert (failed.status, failed.reason) == ("failed", Result.read(V1_FAILED).error)
    assert isinstance(complete.result, Result) and complete.metrics[GOLD] == 0.4433802263385069
    assert sweep.experiment == "default" and sweep.config["generation"]["max_new_tokens"] == 24
    assert [group.label for group in sweep.groups] == ["dpo"]
    assert trajectory_points(complete, GOLD, KL) == [
        (3.210222348570824e-05, 0.4433802263385069),
        (-0.00019768299534916878, 0.4433802263385069),
    ]
    cost = cost_metrics(complete)
    assert cost["cost/train_s"] == 1.605 and cost["cost/tokens_trained"] == 5598.0
    assert cost["cost/tokens_generated"] == 354.0 and cost["cost/peak_memory_mb"] == 588.5
    assert cost["cost/trainable_parameters"] == 111872.0
    assert cost["cost/pipeline_s"] == pytest.approx(1.593 + 0.313 + 1.605 + 0.226 + 1.185)
    comparison = compare(sweep)
    assert comparison.headline[0].key == GOLD and comparison.headline[0].label == "gold reward"
    assert [curve.key for curve in comparison.curves] == ["rewards/margins"]
    (group,) = comparison.groups
    assert group.summary(GOLD).mean == 0.4433802263385069
    assert group.summary("cost/tokens_generated").mean == 354.0


def test_a_result_writes_and_reads_back_equal(tmp_path: Path) -> None:
    result = Result(
        status="complete",
        experiment="e",
        algorithm="ppo",
        seed=3,
        name="ppo-seed3",
        group="e-2026",
        overrides=["algorithm=ppo", "seed=3"],
        config={"generation": {"temperature": 1.0}, "logger": {"name": "none"}},
        metrics={GOLD: 0.5, KL: 1.25, "train/loss": 0.1},
        trajectory=[TrajectoryPoint(10, 0.5, {GOLD: 0.4, KL: 0.5})],
        headline=[{"key": GOLD, "label": "gold reward", "bounds": [0.0, 1.0]}],
        curves=[{"key": "loss", "label": "loss", "role": None}],
        cost=Cost({"ppo": 1.5, "job": 3.0}, {"ppo": True}, {"ppo": 100}, {"ppo": [10, 20]}, 50, 700.5),
        stages={"ppo": StageRecord("abc", "cache/ppo/abc", True, 1.5, {"loss": 0.1})},
        resumed=True,
        resumed_from={"ppo": 4},
        versions={"torch": "2"},
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:03+00:00",
    )
    path = result.write(tmp_path)
    assert path == tmp_path / RESULT_FILE
    again = Result.read(path)
    assert again == result and again.dir == tmp_path
    assert json.loads(path.read_text()) == result.to_dict()
    assert read_all(tmp_path) == [result]
    (as_dict,) = read_results(tmp_path)
    assert as_dict == {**result.to_dict(), "dir": str(tmp_path)}


def test_unknown_keys_are_kept_and_a_missing_version_is_version_1(tmp_path: Path) -> None:
    """A key this version does not know (a newer harness's), at any level, reads and writes back; a file without
    `schema_version` is version 1; what is written carries the current version."""
    raw = json.loads(V1.read_text())
    del raw["schema_version"]
    raw["judge_model"] = {"name": "tiny"}
    raw["cost"]["energy_j"] = 12.5
    raw["stages"]["dpo"]["host"] = "node1"
    raw["trajectory"][0]["tokens"] = 99
    result = Result.from_dict(raw)
    assert result.schema_version == 1 and result.extra == {"judge_model": {"name": "tiny"}}
    assert result.cost.extra == {"energy_j": 12.5} and result.stages["dpo"].extra == {"host": "node1"}
    assert result.trajectory[0].extra == {"tokens": 99}
    written = json.loads(result.write(tmp_path).read_text())
    assert written == {**raw, "schema_version": SCHEMA_VERSION}


def test_a_hand_made_result_takes_the_defaults() -> None:
    """Missing keys (a result written by hand, or before a key existed) read as their defaults; counts of cost
    not on record are None, and the report reads them as not a number."""
    result = Result.from_dict({"algorithm": "sft", "metrics": {GOLD: 0.5}})
    assert (result.status, result.schema_version, result.seed, result.stages) == ("complete", 1, None, {})
    assert result.cost.tokens_generated is None and result.cost.wall_s == {}
    from harness.report.aggregate import Job

    cost = cost_metrics(Job({"algorithm": "sft", "seed": "0"}, "complete", result))
    assert math.isnan(cost["cost/tokens_generated"]) and math.isnan(cost["cost/peak_memory_mb"])
    with pytest.raises(ValueError):
        Result.from_dict([1, 2])  # type: ignore[arg-type]


def test_the_documented_schema_names_every_field_a_job_writes() -> None:
    """The dataclasses write exactly the keys a real job wrote (result_v1.json), and harness/results.py's docstring
    names each of them."""
    raw = json.loads(V1.read_text())
    assert set(_written("Result")) == set(raw)
    assert set(_written("Cost")) == set(raw["cost"])
    assert set(_written("StageRecord")) == set(raw["stages"]["dpo"])
    assert set(_written("TrajectoryPoint")) == set(raw["trajectory"][0])
    doc = harness.results.__doc__
    assert f"version {SCHEMA_VERSION}" in doc
    for name in ("Result", "Cost", "StageRecord", "TrajectoryPoint"):
        for key in _written(name):
            assert key in doc, f"{name}.{key} is not in the schema of harness/results.py's docstring"
