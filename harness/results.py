"""`result.json`: what one job leaves behind, and the only thing the comparison reads.

Schema (version 1):
    schema_version, status ("complete" | "failed"), error, experiment, algorithm, seed, name, group,
    overrides, config (resolved, secrets redacted), metrics (flat: eval/<suite>/<metric>, train/<name>),
    cost (wall_s per stage, tokens_trained, tokens_generated, peak_memory_mb), stages (key, path,
    built_now, seconds, metrics per stage), versions, started_at, finished_at.
"""

from __future__ import annotations

import contextlib
import re
import resource
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json, read_json

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.jsonl"
TRAIN_LOG_FILE = "train_log.jsonl"  # the algorithm stage's training history (step + metrics per line)
TRAIN_LOG_FILE = "train_log.jsonl"  # the algorithm stage's training history (step + metrics per line)

# Overrides that say how or where a job ran, not what it compares: never part of a job's name or a report group.
_NOT_COMPARED = {"results_dir", "cache_dir", "logger", "experiment_name", "device", "debug", "cpu_threads"}


def is_compared(key: str) -> bool:
    """Whether an override key (`algorithm`, `kl_beta`, `algorithm.trainer.beta`) is part of what is compared."""
    return key not in _NOT_COMPARED and not key.startswith(("hydra.", "logger."))


_SECRET = re.compile(r"(api_?key|token|secret|password)", re.IGNORECASE)
_NOT_SECRET = re.compile(r"(_tokens?$|^tokens?_|max_new_tokens|pad_token|eos_token|bos_token|unk_token)")


def redact(config: Any) -> Any:
    """A copy of the config with values of secret-looking keys (api_key, hub token, ...) replaced."""
    if isinstance(config, Mapping):
        return {
            key: "<redacted>"
            if isinstance(key, str) and _SECRET.search(key) and not _NOT_SECRET.search(key) and config[key]
            else redact(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [redact(item) for item in config]
    return config


def reset_peak_memory() -> None:
    """Start a new peak for this job. Sweeps run several jobs in one process (Hydra's basic launcher, joblib's
    reused workers), so the process-lifetime peak would charge a job for its predecessors' memory."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    with contextlib.suppress(OSError):  # Linux >= 4.0: writing 5 resets the peak resident set size (VmHWM)
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb() -> float:
    """Peak memory since `reset_peak_memory`: CUDA allocations on a GPU, resident set size on CPU."""
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated() > 0:
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024  # KiB
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process's peak; Linux reports KiB


def write_result(output_dir: Path, result: Mapping[str, Any]) -> Path:
    path = Path(output_dir) / RESULT_FILE
    atomic_write_json(path, {"schema_version": SCHEMA_VERSION, **result})
    return path


def read_results(root: Path) -> list[dict[str, Any]]:
    """Every `result.json` under `root` (a run or a sweep directory), each with its directory added."""
    results = []
    for path in sorted(Path(root).rglob(RESULT_FILE)):
        if "cache" in path.relative_to(root).parts:
            continue
        result = read_json(path)
        result["dir"] = str(path.parent)
        results.append(result)
    return results
