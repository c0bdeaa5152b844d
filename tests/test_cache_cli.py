"""`harness-cache list | verify | prune`: what the stage cache holds, who uses it, whether it is sound, and
removing what nothing uses, safely while other jobs run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from harness.cache_cli import main
from harness.runner import stage_summary
from harness.stages import MARKER, USE, StageCache, StageOutput, release_stages, stage_key


@pytest.fixture(autouse=True)
def not_held_here() -> Iterator[None]:
    """Stages built in the test process are in use by it (harness.stages.hold) until it lets go of them."""
    yield
    release_stages()


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
    release_stages()
    return tmp_path


def listed(text: str) -> list[str]:
    """Each stage's block in the output of `harness-cache list`: its line and the indented lines below it (what it
    was built from; with --users, who uses it), without the header and the total."""
    blocks: list[str] = []
    for line in text.splitlines()[1:-1]:
        if line.startswith(" ") and blocks:
            blocks[-1] += "\n" + line
        else:
            blocks.append(line)
    return blocks


def test_list_shows_each_stage_with_its_size_inputs_and_users(results: Path, capsys: pytest.CaptureFixture) -> None:
    main(["--results", str(results), "list"])
    lines = {block.split()[0]: block for block in listed(capsys.readouterr().out)}
    assert set(lines) == {"data", "dpo", "sft"}
    assert "sweeps/compare/2026-01-01_00-00-00" in lines["sft"] and "2.0 MB" in lines["sft"]
    assert "(no result)" in lines["dpo"] and "built from start=" in lines["dpo"]
    assert "data=" in lines["sft"] and "complete" in lines["sft"]


def test_list_counts_the_users_of_a_stage_and_lists_them_all_with_users(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A base model 300 sweeps used: its line says how many and the latest, within 120 columns; `--users` lists
    every one of them, one a line, newest first."""
    cache = StageCache(tmp_path / "cache")
    data = cache.run("data", {"n": 1}, {}, tiny("d"))
    base = cache.run("base_model", {"n_layer": 2}, {"data": data}, tiny("b"))
    release_stages()
    names = [f"compare-{n:03d}" for n in range(299)] + ["an-experiment-name-longer-than-the-column-has-room-for"]
    for n, sweep in enumerate(names):
        write_result(tmp_path, sweep, {"data": data, "base_model": base}, when=1_700_000_000 + n)

    main(["--results", str(tmp_path), "list"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 120, out
    stages = {block.split()[0]: block for block in listed(out)}
    line = stages["base_model"].splitlines()[0]  # the latest's name shortened in its middle: its time stays
    assert re.search(r"  300, latest sweeps/an-exp\S*…\S*2026-01-01_00-00-00$", line), line
    assert f"built from data={data.key}" in stages["base_model"] and names[0] not in out
    assert out.splitlines()[-1].endswith("(--users: every sweep or run that uses each)")

    main(["--results", str(tmp_path), "list", "--users"])
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 120
    users = [line.removeprefix("    used by ") for line in listed(out)[0].splitlines() if "used by" in line]
    assert users == [f"sweeps/{sweep}/2026-01-01_00-00-00" for sweep in reversed(names)]


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


# -- prune ----------------------------------------------------------------------------------------------------
def tiny(text: str):
    def build(out: Path) -> dict:
        (out / "weights.bin").write_text(text * 100)
        return {}

    return build


def write_result(results: Path, sweep: str, used: dict[str, StageOutput], when: float | None = None) -> Path:
    """A job's result.json as the runner writes it (`stages` from `stage_summary`); returns the sweep's folder."""
    job = results / "sweeps" / sweep / "2026-01-01_00-00-00" / "0_dpo_seed0"
    job.mkdir(parents=True)
    result = job / "result.json"
    result.write_text(json.dumps({"status": "complete", "stages": stage_summary(used)}))
    if when is not None:
        os.utime(result, (when, when))
    return results / "sweeps" / sweep


def prune(results: Path, *flags: str, capsys: pytest.CaptureFixture) -> dict[str, str]:
    """Run `harness-cache prune`; its per-stage lines by `kind/key`, and the total under "total"."""
    main(["--results", str(results), "prune", *flags])
    *lines, total = capsys.readouterr().out.splitlines()
    return {**{line.split()[0]: line for line in lines}, "total": total}


def folders(results: Path) -> set[str]:
    return {f"{p.parent.name}/{p.name}" for p in (results / "cache").glob("*/*") if p.is_dir()}


def name(stage: StageOutput) -> str:
    return f"{stage.name}/{stage.key}"


def test_prune_removes_exactly_what_only_a_deleted_sweep_used_and_keeps_the_inputs_of_what_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """Sweep "keep" names only its DPO; the chain it was built from (SFT <- base model <- data) stays with it."""
    monkeypatch.chdir(tmp_path)
    cache = StageCache("results/cache")  # the default cache_dir: results record paths relative to the job's folder
    data = cache.run("data", {"n": 1}, {}, tiny("d"))
    base = cache.run("base_model", {"n_layer": 2}, {"data": data}, tiny("b"))
    sft = cache.run("sft", {"lr": 1}, {"data": data, "start": base}, tiny("s"))
    kept_dpo = cache.run("dpo", {"beta": 0.1}, {"start": sft}, tiny("k"))
    pairs = cache.run("preferences", {"n": 8}, {"data": data, "policy": sft}, tiny("p"))
    gone_dpo = cache.run("dpo", {"beta": 0.5}, {"start": sft, "preferences": pairs}, tiny("g"))
    results = tmp_path / "results"
    write_result(results, "keep", {"dpo": kept_dpo})
    gone = write_result(
        results, "gone", {"data": data, "base_model": base, "sft": sft, "preferences": pairs, "dpo": gone_dpo}
    )
    only_gone = {name(pairs), name(gone_dpo)}
    size = sum(f.stat().st_size for s in (pairs, gone_dpo) for f in s.path.iterdir())
    release_stages()
    monkeypatch.chdir(tmp_path.parent)  # prune from another folder: the results' relative paths must still match
    everything = folders(results)
    assert len(everything) == 6

    assert prune(results, capsys=capsys) == {"total": "would remove 0 stages, 0 B (a dry run: --yes removes them)"}
    shutil.rmtree(gone)

    dry = prune(results, capsys=capsys)
    assert set(dry) - {"total"} == only_gone
    assert all("would remove (no result uses it)" in dry[stage] for stage in only_gone)
    assert dry["total"].startswith(f"would remove 2 stages, {size / 1024:.1f} KB (a dry run")
    assert folders(results) == everything

    done = prune(results, "--yes", capsys=capsys)
    assert set(done) - {"total"} == only_gone and done["total"] == f"removed 2 stages, {size / 1024:.1f} KB"
    assert folders(results) == everything - only_gone
    assert all((results / "cache" / name(s) / MARKER).exists() for s in (data, base, sft, kept_dpo))
    main(["--results", str(results), "list"])  # lock files beside the stages are not stages
    assert {block.split()[1] for block in listed(capsys.readouterr().out)} == {
        s.key for s in (data, base, sft, kept_dpo)
    }
    assert (results / "cache" / "dpo" / f"{gone_dpo.key}{USE}").exists()  # left for a job that may wait on it


def test_prune_older_than_removes_stages_last_used_before_the_day_unless_a_newer_one_was_built_from_them(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cache = StageCache(tmp_path / "cache")
    data = cache.run("data", {"n": 1}, {}, tiny("d"))
    sft = cache.run("sft", {"lr": 1}, {"data": data}, tiny("s"))
    old_dpo = cache.run("dpo", {"beta": 0.1}, {"start": sft}, tiny("o"))
    new_dpo = cache.run("dpo", {"beta": 0.5}, {"start": sft}, tiny("n"))  # recent, though no result names it
    long_ago = datetime(2020, 6, 1, 12).timestamp()
    for stage in (data, sft, old_dpo):
        for stamp in (stage.path / MARKER, stage.path.with_name(stage.key + USE)):
            os.utime(stamp, (long_ago, long_ago))
    write_result(tmp_path, "old", {"data": data, "sft": sft, "dpo": old_dpo}, when=long_ago)
    release_stages()

    dry = prune(tmp_path, "--older-than", "2021-01-01", capsys=capsys)
    assert set(dry) == {name(old_dpo), "total"} and "would remove (last used 2020-06-01)" in dry[name(old_dpo)]
    prune(tmp_path, "--older-than", "2021-01-01", "--yes", capsys=capsys)
    assert folders(tmp_path) == {name(data), name(sft), name(new_dpo)}
    assert set(prune(tmp_path, capsys=capsys)) == {name(new_dpo), "total"}  # without the date: no result uses it


def test_prune_removes_set_aside_stages_killed_builds_and_killed_prunes(
    results: Path, capsys: pytest.CaptureFixture
) -> None:
    cache = StageCache(results / "cache")
    [sft] = [p for p in (results / "cache" / "sft").iterdir() if p.is_dir()]
    [dpo] = [p for p in (results / "cache" / "dpo").iterdir() if p.is_dir()]  # no result names it
    before = folders(results)
    aside = cache.set_aside("sft", sft.name, "a test")
    shutil.copytree(aside, sft)  # the rebuilt stage, which the result names

    def dies(out: Path) -> None:
        (out / "half.bin").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run("sft", {"lr": 2}, {}, dies)
    killed = stage_key("sft", {"lr": 2}, {})
    killed_prune = results / "cache" / "dpo" / f"0123456789abcdef.pruning-{2**31 - 1}"  # no such process
    killed_prune.mkdir()
    (killed_prune / "model.safetensors").write_text("half")
    release_stages()

    lines = prune(results, "--yes", capsys=capsys)
    assert "removed (set aside (failed its check))" in lines[f"sft/{aside.name}"]
    assert "removed (a killed build)" in lines[f"sft/{killed}"]
    assert "removed (a killed prune)" in lines[f"dpo/{killed_prune.name}"]
    assert "removed (no result uses it)" in lines[f"dpo/{dpo.name}"]
    assert lines["total"].startswith("removed 4 stages")
    assert folders(results) == before - {f"dpo/{dpo.name}"}  # the rebuilt SFT, which the result names, and its data


# A job in another process: hands out the stage sft{lr: 9}, building it (until the flag "go") if it is not cached,
# says "holding", and keeps it until "go".
JOB = """
import sys, time
from pathlib import Path
from harness.stages import StageCache
root, flags = Path(sys.argv[1]), Path(sys.argv[2])
def wait_for_go():
    while not (flags / "go").exists():
        time.sleep(0.02)
def build(out):
    (flags / "building").touch()
    wait_for_go()
    (out / "weights.bin").write_text("built while a prune ran")
stage = StageCache(root).run("sft", {"lr": 9}, {}, build)
(flags / "holding.tmp").write_text(str(stage.built_now))
(flags / "holding.tmp").rename(flags / "holding")  # whole when it appears
wait_for_go()
"""


def start_job(cache: Path, flags: Path) -> subprocess.Popen:
    flags.mkdir()
    return subprocess.Popen([sys.executable, "-c", JOB, str(cache), str(flags)])


def wait_for(flag: Path, job: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not flag.exists():
        assert job.poll() is None, f"the job exited ({job.returncode}) before {flag.name}"
        assert time.monotonic() < deadline, f"no {flag.name} after 60 s"
        time.sleep(0.02)


def test_prune_keeps_a_stage_another_process_is_building_and_its_build_completes(
    results: Path, capsys: pytest.CaptureFixture
) -> None:
    flags = results / "flags"
    job = start_job(results / "cache", flags)
    try:
        wait_for(flags / "building", job)
        lines = prune(results, "--yes", capsys=capsys)
        key = stage_key("sft", {"lr": 9}, {})
        assert lines[f"sft/{key}"].endswith("being built, kept")
        assert lines["total"].startswith("removed 1 stage,") and lines["total"].endswith("kept 1 in use or being built")
        (flags / "go").touch()
        assert job.wait(timeout=60) == 0
    finally:
        job.kill()
    assert (flags / "holding").read_text() == "True"
    stage = results / "cache" / "sft" / key
    assert (stage / MARKER).exists() and (stage / "weights.bin").read_text() == "built while a prune ran"


def test_prune_keeps_a_stage_a_live_process_loaded_and_removes_it_once_that_process_is_gone(
    results: Path, capsys: pytest.CaptureFixture
) -> None:
    built = StageCache(results / "cache").run("sft", {"lr": 9}, {}, tiny("w"))
    release_stages()
    flags = results / "flags"
    job = start_job(results / "cache", flags)
    try:
        wait_for(flags / "holding", job)
        assert (flags / "holding").read_text() == "False"  # reused, not built
        lines = prune(results, "--yes", capsys=capsys)
        assert lines[name(built)].endswith("in use, kept")
        assert (built.path / MARKER).exists()
        (flags / "go").touch()
        assert job.wait(timeout=60) == 0
    finally:
        job.kill()
    lines = prune(results, "--yes", capsys=capsys)
    assert "removed (no result uses it)" in lines[name(built)] and not built.path.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prune", "--older-than", "2026-13-01"], "error: --older-than='2026-13-01': expected a date, YYYY-MM-DD"),
        (["list", "--yes"], "error: --yes and --older-than are for prune, not list"),
        (["prune", "--users"], "error: --users is for list, not prune"),
    ],
)
def test_bad_prune_flags_are_one_line(
    results: Path, capsys: pytest.CaptureFixture, args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_status:
        main(["--results", str(results), *args])
    assert exit_status.value.code == 2
    assert capsys.readouterr().err.strip() == message
