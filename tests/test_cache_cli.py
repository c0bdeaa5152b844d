"""`harness-cache list | verify`: what the stage cache holds, who uses it, and whether it is sound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cache_cli import main
from harness.stages import StageCache


def build(out: Path) -> dict:
    (out / "model.safetensors").write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    (out / "config.json").write_text("{}")
    return {}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder: a data stage and an SFT stage on it; one sweep's result names both, nothing names a DPO."""
    cache = StageCache(tmp_path / "cache")
    data = cache.run("data", {"n": 1}, {}, build)
    sft = cache.run("sft", {"lr": 1}, {"data": data}, build)
    cache.run("dpo", {"beta": 0.1}, {"start": sft}, build)
    job = tmp_path / "sweeps" / "compare" / "2026-01-01_00-00-00" / "0_sft_seed0"
    job.mkdir(parents=True)
    stages = {name: {"key": out.key, "path": str(out.path)} for name, out in {"data": data, "sft": sft}.items()}
    (job / "result.json").write_text(json.dumps({"status": "complete", "stages": stages}))
    return tmp_path


def test_list_shows_each_stage_with_its_size_inputs_and_users(results: Path, capsys: pytest.CaptureFixture) -> None:
    main(["--results", str(results), "list"])
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:-1]}
    assert set(lines) == {"data", "dpo", "sft"}
    assert "sweeps/compare/2026-01-01_00-00-00" in lines["sft"] and "2.0 MB" in lines["sft"]
    assert "(no result)" in lines["dpo"] and "start=" in lines["dpo"]
    assert "data=" in lines["sft"] and "complete" in lines["sft"]


def test_verify_passes_a_sound_cache_and_fails_a_flipped_bit(results: Path, capsys: pytest.CaptureFixture) -> None:
    main(["--results", str(results), "verify"])
    assert "3 of 3 complete stages sound, 0 failed" in capsys.readouterr().out
    [weights] = (results / "cache" / "sft").glob("*/model.safetensors")
    data = bytearray(weights.read_bytes())
    data[100_000] ^= 1  # same size: only the full hash check sees it
    weights.write_bytes(bytes(data))
    with pytest.raises(SystemExit) as exit_status:
        main(["--results", str(results), "verify"])
    assert exit_status.value.code == 1
    out = capsys.readouterr().out
    assert "FAILED sft/" in out and "model.safetensors differs from what was built (SHA-256)" in out


def test_a_missing_cache_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["--results", str(tmp_path / "nowhere"), "list"])
    assert exit_status.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --cache=") and "no such folder" in err and "\n" not in err
