"""Jobs waiting for a stage lend their cores to its build (harness.cores), and the testbed's pretraining uses them
without changing a bit of what it trains."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from harness import cores
from harness.stages import META, StageCache


def _build_until_lent(cache_dir: str, started: str) -> float:
    """Build a stage that runs until a waiting job lends it a core (or 60 s); returns the most cores it got."""
    torch.set_num_threads(1)  # its own core: one (a sweep's cpu_threads)
    cores.machine_cores = lambda: 8  # a 1-core machine would cap the build at its own core
    most = 0

    def build(out: Path) -> dict:
        nonlocal most
        Path(started).write_text("building")
        deadline = time.time() + 60
        while most < 2 and time.time() < deadline:
            most = max(most, cores.build_cores())
            time.sleep(0.05)
        time.sleep(0.3)  # held 2 cores for a while: core-seconds above seconds
        (out / "weights.txt").write_text("shared")
        return {}

    StageCache(cache_dir).run("base_model", {"n": 1}, {}, build)
    return most


def _wait_for_stage(cache_dir: str, started: str) -> bool:
    torch.set_num_threads(1)  # the one core it lends
    while not Path(started).exists():
        time.sleep(0.05)
    output = StageCache(cache_dir).run("base_model", {"n": 1}, {}, lambda out: pytest.fail("built twice"))
    return output.built_now


def test_a_job_waiting_for_a_stage_lends_its_core_to_the_build_and_takes_it_back(tmp_path: Path) -> None:
    cache, started = tmp_path / "cache", tmp_path / "started"
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        building = pool.apply_async(_build_until_lent, (str(cache), str(started)))
        waiting = pool.apply_async(_wait_for_stage, (str(cache), str(started)))
        most, built_by_waiter = building.get(timeout=120), waiting.get(timeout=120)
    assert most == 2, "the build never saw the waiting job's core (own 1 + lent 1)"
    assert built_by_waiter is False
    (stage,) = [p for p in (cache / "base_model").iterdir() if p.is_dir()]
    meta = json.loads((stage / META).read_text())
    assert meta["seconds"] < meta["core_seconds"] <= 2 * meta["seconds"]
    assert not list(stage.parent.glob(f"*{cores.WAITING}*")), "a waiting job left its note behind"


def test_only_live_waiters_on_this_host_lend_cores(tmp_path: Path) -> None:
    stage = tmp_path / "base_model" / "0123456789abcdef"
    stage.parent.mkdir()
    host = cores._host()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    notes = {
        f"{host}-{os.getpid()}": "3",  # this process: alive, here
        f"otherhost-{os.getpid()}": "5",  # a shared cache's other machine: its cores are not ours
        f"{host}-{dead}": "7",  # killed while waiting: its note is cleared
    }
    for suffix, count in notes.items():
        stage.with_name(f"{stage.name}{cores.WAITING}{suffix}").write_text(count)
    (stage.parent / f"fedcba9876543210{cores.WAITING}{host}-{os.getpid()}").write_text("11")  # another stage's
    assert cores.lent_to(stage) == 3
    assert not stage.with_name(f"{stage.name}{cores.WAITING}{host}-{dead}").exists()


def test_a_build_that_never_asks_holds_its_own_cores_and_outside_a_build_a_process_has_its_own(tmp_path: Path) -> None:
    assert cores.build_cores() == cores.own_cores()
    with cores.building(tmp_path / "stage") as held:
        time.sleep(0.2)
    assert held.core_seconds == pytest.approx(0.2 * held.own, rel=0.5)


def test_a_build_inside_another_gets_the_cores_lent_to_either_and_gives_them_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outer_path, inner_path = tmp_path / "sft" / "aa", tmp_path / "base_model" / "bb"
    monkeypatch.setattr(cores, "lent_to", lambda path: {outer_path: 2, inner_path: 1}[path])
    monkeypatch.setattr(cores, "machine_cores", lambda: 8)
    monkeypatch.setattr(cores, "own_cores", lambda: 1)
    with cores.building(outer_path) as outer:
        with cores.building(inner_path):
            assert cores.build_cores() == 1 + 2 + 1  # jobs waiting for the outer stage wait for this one too
        assert outer.cores == outer.own == 1  # until it asks again
        monkeypatch.setattr(cores, "machine_cores", lambda: 2)
        assert cores.build_cores() == 2  # never more than the machine's


# -- the testbed's pretraining on lent cores -------------------------------------------------------------------
def tiny_pretraining(monkeypatch: pytest.MonkeyPatch, lent: int, micro_batches: int) -> tuple[dict, float]:
    from transformers import GPT2Config, GPT2LMHeadModel

    from plugins.models import scratch

    monkeypatch.setattr(scratch, "build_cores", lambda: lent)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=20, n_layer=1, n_embd=16, n_head=2, n_positions=32, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh")  # fmt: skip
    model = GPT2LMHeadModel(config)
    rng = random.Random(0)
    rows = [[1] + [rng.randrange(4, 20) for _ in range(rng.randrange(3, 20))] + [2] for _ in range(64)]
    settings = {"steps": 4, "batch_size": 16, "learning_rate": 1e-2, "warmup_steps": 1, "weight_decay": 0.01,
                "micro_batches": micro_batches}  # fmt: skip
    loss, _ = scratch.pretrain(model, rows, 0, settings, 0, "test")
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}, loss


def test_micro_batches_train_the_same_bits_on_one_core_or_several(monkeypatch: pytest.MonkeyPatch) -> None:
    alone, loss_alone = tiny_pretraining(monkeypatch, lent=1, micro_batches=3)
    helped, loss_helped = tiny_pretraining(monkeypatch, lent=3, micro_batches=3)
    assert all(torch.equal(alone[name], helped[name]) for name in alone)
    assert loss_alone == loss_helped


def test_micro_batches_compute_the_whole_batch_mean_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each part's summed token loss over the whole batch's predicted tokens adds up to the batch's mean loss, the
    one the model's own loss takes: the same training, to rounding."""
    whole, loss_whole = tiny_pretraining(monkeypatch, lent=1, micro_batches=1)
    parts, loss_parts = tiny_pretraining(monkeypatch, lent=1, micro_batches=2)
    assert loss_parts == pytest.approx(loss_whole, rel=1e-5)
    assert all(torch.allclose(whole[name], parts[name], atol=1e-5) for name in whole)
