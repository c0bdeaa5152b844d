"""One small real sweep shared by every test that reads a sweep as a user would (the sample browser, the arena, the
sweep's plain progress lines): built once per test session, whichever xdist worker asks first.

Not a test module: tests import it (`from smoke_sweep import shared_smoke_sweep`).

    def test_something(tmp_path_factory):
        sweep = shared_smoke_sweep(tmp_path_factory)
        sweep.dir            # results/sweeps/smoke/<time>: three job folders, comparison.md, report.html
        sweep.stdout         # what the sweep printed (no terminal: plain lines)
        sweep.copy(tmp_path) # a private copy to change (the shared one must stay as built)

The sweep: `harness -m algorithm=base,sft,dpo seed=0 debug=smoke` through the parallel launcher (the experiments'
launcher; here three jobs at once, so that they meet at the stages all three need), logging to W&B in offline
mode. Its stage cache (`sweep.cache`) can be handed to another sweep (`cache_dir=...`) that then only evaluates.

Sharing across xdist workers follows pytest-xdist's recipe: the folder above each worker's base temp is common to
the session, and a file lock makes the first worker build while the others wait. Without xdist the session's own
base temp is used. While developing, HARNESS_TEST_SMOKE_SWEEP=<folder> builds it there once and reuses it in later
sessions (delete the folder after changing what the sweep runs).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from conftest import run_harness
from filelock import FileLock

ALGORITHMS = ("base", "sft", "dpo")
ARGS = (
    "-m",
    "experiment_name=smoke",
    f"algorithm={','.join(ALGORITHMS)}",
    "seed=0",
    "debug=smoke",
    "hydra/launcher=parallel",
    "hydra.launcher.n_jobs=3",  # all at once: they meet at the shared stages' locks (tests/test_concurrency.py)
    "cpu_threads=1",
    "logger=wandb",
    "logger.mode=offline",
)


@dataclass(frozen=True)
class SmokeSweep:
    results: Path  # results_dir of the sweep
    dir: Path  # the sweep folder (job folders, comparison.md, report.html)
    cache: Path  # its stage cache
    stdout: str
    stderr: str
    returncode: int

    def jobs(self) -> dict[str, Path]:
        """Job folder by algorithm."""
        found = {}
        for folder in sorted(p for p in self.dir.iterdir() if (p / "result.json").exists()):
            found[json.loads((folder / "result.json").read_text())["algorithm"]] = folder
        return found

    def copy(self, into: Path) -> Path:
        """A private copy of the sweep folder (not the cache) under `into`; returns the copy's sweep folder."""
        target = into / "sweep"
        shutil.copytree(self.dir, target)
        return target


def shared_smoke_sweep(tmp_path_factory) -> SmokeSweep:
    if os.environ.get("HARNESS_TEST_SMOKE_SWEEP"):
        root = Path(os.environ["HARNESS_TEST_SMOKE_SWEEP"])
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.getbasetemp().parent / "shared-smoke-sweep"
    else:
        root = tmp_path_factory.getbasetemp() / "shared-smoke-sweep"
    root.mkdir(parents=True, exist_ok=True)
    record = root / "done.json"
    with FileLock(str(root / ".lock")):
        if not record.exists():
            results = root / "results"
            done = run_harness(*ARGS, f"results_dir={results}", timeout=900)
            (sweep_dir,) = (results / "sweeps" / "smoke").iterdir()
            record.write_text(
                json.dumps(
                    {
                        "results": str(results),
                        "dir": str(sweep_dir),
                        "cache": str(results / "cache"),
                        "stdout": done.stdout,
                        "stderr": done.stderr,
                        "returncode": done.returncode,
                    }
                )
            )
    fields = json.loads(record.read_text())
    sweep = SmokeSweep(**{k: Path(v) if k in ("results", "dir", "cache") else v for k, v in fields.items()})
    assert sweep.returncode == 0, f"the shared smoke sweep failed:\n{sweep.stderr[-3000:]}"
    return sweep
