"""The content-addressed stage cache: same config and inputs -> same stage, built once, never half-built."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from harness.stages import MARKER, StageCache, stage_key


def write_file(text: str):
    def build(out: Path) -> dict:
        (out / "weights.txt").write_text(text)
        return {"tokens_trained": len(text)}

    return build


def test_key_depends_on_config_and_inputs_not_on_dict_order(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    data = cache.run("data", {"n": 1}, {}, write_file("a"))
    assert stage_key("sft", {"lr": 1, "steps": 2}, {"data": data}) == stage_key(
        "sft", {"steps": 2, "lr": 1}, {"data": data}
    )
    assert stage_key("sft", {"lr": 1}, {"data": data}) != stage_key("sft", {"lr": 2}, {"data": data})
    other = cache.run("data", {"n": 2}, {}, write_file("b"))
    assert stage_key("sft", {"lr": 1}, {"data": data}) != stage_key("sft", {"lr": 1}, {"data": other})
    assert stage_key("sft", {"lr": 1}, {}) != stage_key("dpo", {"lr": 1}, {})


def test_second_run_reuses_the_stage_without_building(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    first = cache.run("base_model", {"n_layer": 2}, {}, write_file("w"))
    assert first.built_now and (first.path / "weights.txt").read_text() == "w"
    assert (first.path / MARKER).exists()

    def must_not_build(out: Path) -> None:
        raise AssertionError("a complete stage was built again")

    second = StageCache(tmp_path).run("base_model", {"n_layer": 2}, {}, must_not_build)
    assert not second.built_now
    assert second.path == first.path
    assert second.metrics == {"tokens_trained": 1}
    assert second.seconds == pytest.approx(first.seconds)


def test_a_killed_build_leaves_no_complete_stage_and_is_rebuilt(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)

    def dies(out: Path) -> None:
        (out / "half.bin").write_text("partial")
        raise KeyboardInterrupt  # stands in for a kill in the middle of training

    with pytest.raises(KeyboardInterrupt):
        cache.run("sft", {"lr": 1}, {}, dies)
    key = stage_key("sft", {"lr": 1}, {})
    assert not cache.is_complete("sft", key)
    rebuilt = cache.run("sft", {"lr": 1}, {}, write_file("whole"))
    assert rebuilt.built_now
    assert sorted(p.name for p in rebuilt.path.iterdir()) == [MARKER, "stage.json", "weights.txt"]


def _build_in_process(root: str, counter: str) -> str:
    def slow_build(out: Path) -> dict:
        with open(counter, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        (out / "weights.txt").write_text("shared")
        return {}

    return str(StageCache(root).run("sft", {"lr": 1}, {}, slow_build).path)


def test_concurrent_jobs_build_a_shared_stage_once(tmp_path: Path) -> None:
    counter = tmp_path / "builds.txt"
    context = multiprocessing.get_context("spawn")
    with context.Pool(3) as pool:
        paths = pool.starmap(_build_in_process, [(str(tmp_path / "cache"), str(counter))] * 3)
    assert len(set(paths)) == 1
    assert len(counter.read_text().splitlines()) == 1
    assert (Path(paths[0]) / "weights.txt").read_text() == "shared"
