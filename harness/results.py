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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.io import atomic_write_json, atomic_write_text, read_json

SCHEMA_VERSION = 1
RESULT_FILE = "result.json"
SAMPLES_FILE = "samples.jsonl"
TRAIN_LOG_FILE = "train_log.jsonl"  # the algorithm stage's training history (step + metrics per line)

# Overrides that say how or where a job ran, not what it compares: never part of a job's name or a report group.
_NOT_COMPARED = {
    "results_dir",
    "cache_dir",
    "logger",
    "experiment_name",
    "device",
    "debug",
    "cpu_threads",
    "base_model_threads",
}


def is_compared(key: str) -> bool:
    """Whether an override key (`algorithm`, `kl_beta`, `algorithm.trainer.beta`) is part of what is compared.
    A credential never is: it would end up in job names and report groups."""
    return key not in _NOT_COMPARED and not key.startswith(("hydra.", "logger.")) and not is_secret(key)


REDACTED = "<redacted>"
# A credential's key: api_key / secret / password anywhere in it, or a last word `token` (`token`, `hub_token`,
# `HF_TOKEN`, `access_token`). Counts (`max_new_tokens`, `include_num_input_tokens_seen`) and a tokenizer's
# special tokens (`pad_token`: a string such as "<pad>") are settings, not secrets.
_SECRET = re.compile(r"api_?key|secret|passw(or)?d|credential|(^|_)token$", re.IGNORECASE)
_SPECIAL_TOKEN = re.compile(r"(^|_)(pad|eos|bos|unk|sep|cls|mask)_token$", re.IGNORECASE)


def is_secret(key: str) -> bool:
    """Whether a config key or override key (`model.token`, `+logger.api_key`, `WANDB_API_KEY`) names a credential."""
    name = key.lstrip("+~").rsplit(".", 1)[-1]
    return bool(_SECRET.search(name)) and not _SPECIAL_TOKEN.search(name)


def redact(config: Any) -> Any:
    """A copy of the config (nested dicts and lists) with the values of credential keys replaced by "<redacted>"."""
    if isinstance(config, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_secret(key) and config[key] else redact(value)
            for key, value in config.items()
        }
    if isinstance(config, list | tuple):
        return [redact(item) for item in config]
    return config


def redact_overrides(overrides: Sequence[str]) -> list[str]:
    """Command-line overrides with the value of every credential key replaced. Quoted, so Hydra can still parse
    them (the report does): `algorithm.trainer.hub_token=hf_x` -> `algorithm.trainer.hub_token='<redacted>'`."""
    redacted = []
    for override in overrides:
        key, equals, _ = override.partition("=")
        redacted.append(f"{key}='{REDACTED}'" if equals and is_secret(key) else override)
    return redacted


def redact_saved_config(path: Path, overrides: Sequence[str]) -> bool:
    """Redact a YAML config record in place: credential keys, and every credential override wherever it is
    quoted (override lists, Hydra's `override_dirname`). Returns whether the file changed."""
    from omegaconf import OmegaConf

    path = Path(path)
    if not path.is_file():
        return False
    replacements = {o: r for o, r in zip(overrides, redact_overrides(overrides), strict=True) if o != r}

    def scrub(node: Any) -> Any:
        if isinstance(node, str):
            for original, redacted in replacements.items():
                node = node.replace(original, redacted)
            return node
        if isinstance(node, Mapping):
            return {key: scrub(value) for key, value in node.items()}
        if isinstance(node, list):
            return [scrub(item) for item in node]
        return node

    record = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    clean = scrub(redact(record))
    if clean == record:
        return False
    # atomic: parallel jobs of a sweep (joblib) redact the same multirun.yaml, and may read it meanwhile
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(clean)))
    return True


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
