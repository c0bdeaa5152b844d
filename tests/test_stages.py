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


# -- verified stages ----------------------------------------------------------------------------------------
def weights_and_config(seed: int):
    """A stage like a model's: 2 MiB of weights (large: sizes checked) and a small config (always hashed)."""

    def build(out: Path) -> dict:
        (out / "model.safetensors").write_bytes(bytes((seed + i) % 251 for i in range(2 << 20)))
        (out / "config.json").write_text('{"n_layer": 2}')
        return {"built": seed}

    return build


def corrupt_then_reuse(tmp_path: Path, damage, verify: str = "sizes") -> tuple:
    cache = StageCache(tmp_path, verify=verify)
    first = cache.run("sft", {"lr": 1}, {}, weights_and_config(1))
    damage(first.path)
    again = StageCache(tmp_path, verify=verify).run("sft", {"lr": 1}, {}, weights_and_config(1))
    return first, again


def truncate(path: Path) -> None:
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # what a full disk or an interrupted copy leaves


def flip_weights(path: Path) -> None:
    weights = path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[12345] ^= 0x01
    weights.write_bytes(bytes(data))


def flip_config(path: Path) -> None:
    (path / "config.json").write_text('{"n_layer": 3}')


@pytest.mark.parametrize(
    ("damage", "verify", "why"),
    [
        (truncate, "sizes", "model.safetensors has 1000 bytes, 2097152 when it was built"),
        (lambda p: (p / "config.json").unlink(), "sizes", "config.json is missing"),
        (flip_config, "sizes", "config.json differs from what was built (SHA-256)"),
        (flip_weights, "hashes", "model.safetensors differs from what was built (SHA-256)"),
    ],
)
def test_a_damaged_stage_is_set_aside_with_one_warning_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, verify: str, why: str
) -> None:
    with caplog.at_level("WARNING", logger="harness.stages"):
        first, again = corrupt_then_reuse(tmp_path, damage, verify)
    assert again.built_now and again.path == first.path
    assert (again.path / "model.safetensors").read_bytes() == bytes((1 + i) % 251 for i in range(2 << 20))
    assert (again.path / "config.json").read_text() == '{"n_layer": 2}'
    [warning] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert why in warning and "set aside as" in warning and "\n" not in warning
    [aside] = [p for p in (tmp_path / "sft").iterdir() if ".corrupt-" in p.name]
    assert aside.name.startswith(f"{first.key}.corrupt-")  # kept for a post-mortem, out of the cache's way
    assert (aside / "model.safetensors").exists()


def test_a_flipped_bit_in_large_weights_passes_the_size_check_but_not_the_hash_check(tmp_path: Path) -> None:
    """Sizes (the default) cost a stat per file; a bit flip in a large file needs verify_stages=hashes."""
    first, again = corrupt_then_reuse(tmp_path, flip_weights, "sizes")
    assert not again.built_now
    cache = StageCache(tmp_path, verify="hashes")
    assert cache.problem("sft", first.key) == "model.safetensors differs from what was built (SHA-256)"


def test_a_stage_built_before_stages_recorded_their_files_is_trusted(tmp_path: Path) -> None:
    import json

    first = StageCache(tmp_path).run("sft", {"lr": 1}, {}, weights_and_config(1))
    meta = json.loads((first.path / "stage.json").read_text())
    del meta["files"]
    (first.path / "stage.json").write_text(json.dumps(meta))
    truncate(first.path)
    assert not StageCache(tmp_path).run("sft", {"lr": 1}, {}, weights_and_config(1)).built_now


def test_an_unknown_verify_setting_is_one_line() -> None:
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match=r"verify_stages='always': expected one of sizes, hashes"):
        StageCache("nowhere", verify="always")


def test_a_truncated_sft_stage_is_rebuilt_and_the_job_matches_a_clean_run(tmp_path: Path) -> None:
    """The issue's report: a cut-short model.safetensors used to end the next run in a 32-line SafetensorError."""
    import json
    import re

    from conftest import run_harness

    args = ["algorithm=sft", "debug=smoke", "eval=[gold]", f"results_dir={tmp_path}"]
    clean = run_harness(*args)
    assert clean.returncode == 0, clean.stderr[-3000:]
    [first] = tmp_path.glob("runs/*/result.json")
    sft = Path(json.loads(first.read_text())["stages"]["sft"]["path"])
    truncate_to = (sft / "model.safetensors").stat().st_size // 2
    with (sft / "model.safetensors").open("r+b") as weights:
        weights.truncate(truncate_to)
    again = run_harness(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr
    output = again.stdout + again.stderr
    warnings = [line for line in output.splitlines() if "failed its check" in line]
    assert len(warnings) == 1, output[-3000:]
    assert re.search(r"stage sft: .* failed its check \(model\.safetensors has \d+ bytes", warnings[0])
    second = next(p for p in tmp_path.glob("runs/*/result.json") if p != first)
    result = json.loads(second.read_text())
    assert result["stages"]["sft"]["built_now"]
    expected = json.loads(first.read_text())["metrics"]
    timeless = {key: value for key, value in expected.items() if "runtime" not in key}
    assert {key: result["metrics"][key] for key in timeless} == pytest.approx(timeless)
    assert "eval/gold/reward" in timeless


def test_weights_that_pass_the_size_check_but_cannot_be_read_are_one_line_naming_the_folder(tmp_path: Path) -> None:
    """A damaged header in large weights: the default check (sizes) cannot see it; reading it says what to run."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from harness.adapters import load_model
    from harness.errors import HarnessError

    torch.manual_seed(0)
    folder = tmp_path / "sft" / "abc"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50)).save_pretrained(folder)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[:8] = b"\xff" * 8  # the header's length: now impossible
    weights.write_bytes(bytes(data))
    with pytest.raises(HarnessError) as error:
        load_model(folder)
    message = str(error.value)
    assert message.startswith(f"{folder}: its weights cannot be read") and "verify_stages=hashes" in message
    assert "\n" not in message


# -- a full disk ---------------------------------------------------------------------------------------------
def no_space(message: str = "No space left on device") -> OSError:
    import errno

    return OSError(errno.ENOSPC, message)


@pytest.mark.parametrize("where", ["build", "record"])
def test_a_build_the_disk_cannot_hold_is_one_line_and_leaves_nothing_to_trust(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """ENOSPC while the build writes its weights, or while the stage records them: no marker, no partial files (only
    whole checkpoints a resumed build can use), and the error says the disk is full and where."""
    import harness.stages as stages
    from harness.errors import HarnessError

    cache = StageCache(tmp_path / "cache")

    def build(out: Path) -> dict:
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / "state.txt").write_text("resumable")
        (out / "weights.txt").write_text("half of the weigh")
        if where == "build":
            raise RuntimeError("file write failed") from no_space()  # as torch wraps it
        return {}

    if where == "record":
        def full(*args, **kwargs):
            raise no_space()

        monkeypatch.setattr(stages, "atomic_write_json", full)
    with pytest.raises(HarnessError) as error:
        cache.run("sft", {"lr": 1}, {}, build)
    message = str(error.value)
    key = stage_key("sft", {"lr": 1}, {})
    folder = tmp_path / "cache" / "sft" / key
    assert "\n" not in message
    assert message.startswith("stage sft: the disk is full (") and str(folder) in message
    assert "not marked complete" in message
    assert not (folder / MARKER).exists()
    assert sorted(p.name for p in folder.iterdir()) == (["checkpoints"] if where == "build" else [])
    monkeypatch.undo()
    again = cache.run("sft", {"lr": 1}, {}, write_file("whole weights"))  # space again: built, and sound
    assert again.built_now and cache.is_sound("sft", key)
    assert (folder / "weights.txt").read_text() == "whole weights"


def test_an_unrelated_failure_is_not_called_a_full_disk(tmp_path: Path) -> None:
    def build(out: Path) -> dict:
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        StageCache(tmp_path).run("sft", {}, {}, build)


FULL_DISK_SITE = '''
import errno, os
import safetensors.torch as st

_save = st.save_file


def save_file(tensors, filename, *args, **kwargs):
    if os.environ["FULL_DISK_STAGE"] in str(filename):
        with open(filename, "wb") as handle:  # what a full disk leaves: a file cut short
            handle.write(b"\\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device", str(filename))
    return _save(tensors, filename, *args, **kwargs)


st.save_file = save_file
'''


def test_a_job_whose_stage_fills_the_disk_stops_in_one_line_and_the_next_run_builds_it(tmp_path: Path) -> None:
    """End to end: the SFT stage's weights hit ENOSPC (injected into safetensors' writer by a sitecustomize); the
    job stops with one line naming the disk and the folder, the stage is not complete, and once there is space
    again the same command builds it and completes."""
    import json

    from conftest import run_harness

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FULL_DISK_SITE)
    args = ["algorithm=sft", "debug=smoke", "eval=[gold]", "logger=none", f"results_dir={tmp_path / 'results'}"]
    with pytest.MonkeyPatch.context() as patch:  # the job inherits them; the second run does not
        patch.setenv("PYTHONPATH", str(site))
        patch.setenv("FULL_DISK_STAGE", f"{os.sep}sft{os.sep}")
        full = run_harness(*args)
    assert full.returncode == 2, full.stderr[-3000:]
    assert "Traceback" not in full.stderr + full.stdout
    last = [line for line in full.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: stage sft: the disk is full (") and "not marked complete" in last, last
    sft_folders = list((tmp_path / "results" / "cache" / "sft").glob("*/"))
    assert sft_folders and not any((folder / MARKER).exists() for folder in sft_folders)
    assert not any((folder / "model.safetensors").exists() for folder in sft_folders)
    [failed] = (tmp_path / "results").glob("runs/*/result.json")
    assert json.loads(failed.read_text())["status"] == "failed"
    again = run_harness(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert all((folder / MARKER).exists() for folder in (tmp_path / "results" / "cache" / "sft").glob("*/"))
