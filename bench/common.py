"""What every benchmark shares: where results go, timing a child process, medians, and the testbed's stages.

Benchmarks compare the harness with what a user would otherwise run, on the same machine in the same
invocation, and report ratios of medians: absolute seconds differ between machines, ratios much less.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "results" / "bench"
PYTHON = Path(sys.executable)
HARNESS = PYTHON.parent / "harness"

# No hub, no W&B server: the testbed makes everything the benchmarks need.
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def bench_env(**extra: str) -> dict[str, str]:
    """The environment of a benchmarked process: offline, our repository importable, no inherited W&B service."""
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    env.update(OFFLINE)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Timed:
    """A finished child process: its wall time, the peak resident memory of it and its children, its output."""

    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


# Runs a command and writes its peak RSS (KiB) to a file. It stands between the benchmark and the command because
# Linux carries a process's memory high-water mark across fork and exec: a child of the (large) benchmark process
# would report at least the benchmark's own peak. A child of this small process reports its own.
_MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_timed(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path = REPO, log: Path | None = None
) -> Timed:
    """Run `cmd` to completion: wall time from start to exit, peak RSS of the largest process of its tree
    (Linux keeps the maximum over a process's reaped descendants), stdout and stderr.

    A failed command raises with the tail of its error output: a benchmark never reports a broken run.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        out, err, peak = (Path(scratch) / name for name in ("out", "err", "peak"))
        with out.open("w") as stdout, err.open("w") as stderr:
            started = time.perf_counter()
            returncode = subprocess.run(
                [sys.executable, "-c", _MEASURE, str(peak), *cmd],
                env=dict(env or bench_env()), cwd=cwd, stdout=stdout, stderr=stderr, check=False,
            ).returncode  # fmt: skip
            wall = time.perf_counter() - started
        output, errors = out.read_text(), err.read_text()
        peak_kb = int(peak.read_text()) if peak.exists() else 0
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {' '.join(map(str, cmd))}\n--- stdout\n{output}\n--- stderr\n{errors}")
    if returncode != 0:
        tail = "\n".join(errors.strip().splitlines()[-15:])
        raise RuntimeError(f"benchmark command failed ({returncode}): {' '.join(map(str, cmd))}\n{tail}")
    return Timed(wall, peak_kb / 1024, returncode, output, errors)


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM: unlike ru_maxrss, not inherited from a parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def last_json_line(text: str) -> dict[str, Any]:
    """The last line of a child's stdout that is a JSON object: how benchmark scripts report back."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON report in the output:\n{text[-2000:]}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@contextmanager
def composed(overrides: Sequence[str]) -> Iterator[Any]:
    """The harness config for `overrides`, composed as `harness <overrides>` would (smoke blocks applied)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from harness.app import CONFIG_DIR, apply_smoke

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
        apply_smoke(cfg, list(overrides))
        yield cfg
    GlobalHydra.instance().clear()


def make_run(cfg: Any, output_dir: Path) -> Any:
    """A `Run` (the job's view of stages) with no logger: benchmarks build and reuse stages through it."""
    from harness.runner import Run
    from plugins.loggers.none import NoLogger

    output_dir.mkdir(parents=True, exist_ok=True)
    return Run(cfg, output_dir, NoLogger())


def machine() -> dict[str, Any]:
    import platform

    import torch

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
