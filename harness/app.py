"""The Hydra entry point: compose a config, run one job, write `result.json`.

harness algorithm=sft                      one job
harness -m algorithm=base,sft seed=0,1,2   a sweep; each job is one (algorithm, seed)
harness --help                             the config groups and their choices
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from harness import progress
from harness.errors import HarnessError
from harness.results import RESULT_FILE, Result, is_compared, redact_overrides
from harness.schema import register_configs

log = logging.getLogger("harness")

register_configs()


def apply_smoke(cfg: DictConfig, overrides: list[str] | None = None) -> None:
    """`debug=smoke`: merge every plugin's own `smoke:` block (its tiny budget) over its settings.

    Nested plugin configs (the top-level `sft`, an algorithm's `init`) carry their own blocks, handled the same way.
    The user's own command-line values (`overrides`) are applied again afterwards, so
    `debug=smoke model.train.steps=300` means what it says. Without `debug=smoke` the blocks are dropped.
    """

    def is_map(node: object) -> bool:
        return isinstance(node, DictConfig) and not node._is_none() and not node._is_missing()

    def visit(node: DictConfig) -> None:
        if "smoke" in node:
            with open_dict(node):
                budget = node.pop("smoke")
                if cfg.smoke and budget is not None:
                    node.merge_with(budget)
        for key in list(node.keys()):
            if is_map(child := node._get_node(key)):
                visit(child)

    for key in list(cfg.keys()):
        if key != "hydra" and is_map(child := cfg._get_node(key)):
            visit(child)
    if cfg.smoke and overrides:
        reapply_overrides(cfg, overrides)


def reapply_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """Set the values of `key=value` overrides again (group choices such as `algorithm=dpo` are skipped)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    if "hydra" in cfg:  # composed by a test with return_hydra_config=True
        groups = set(cfg.hydra.runtime.choices)
    else:
        groups = set(HydraConfig.get().runtime.choices) if HydraConfig.initialized() else set()
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        # list-valued group choices (eval=[gold,kl]) are not in Hydra's choices: recognise the group folder
        is_group = key in groups or (Path(CONFIG_DIR) / key).is_dir()
        if is_group or key.startswith("hydra") or override.is_delete() or "/" in key:
            continue
        value = override.value()
        with open_dict(cfg):  # a dict value sets its own keys over the block, as Hydra's override did
            OmegaConf.update(cfg, key, value, merge=isinstance(value, dict))


def job_identity(cfg: DictConfig) -> dict[str, Any]:
    hydra_cfg = HydraConfig.get()
    overrides = redact_overrides(hydra_cfg.overrides.task)  # they go into result.json and the W&B run
    # a method (conf/method/) is named by its algorithm's name, as an algorithm is
    named = [o for o in overrides if o.split("=", 1)[0] not in ("seed", "algorithm", "experiment", "method", "+method")]
    swept = [o for o in named if is_compared(o.split("=", 1)[0])]
    name = "-".join([cfg.algorithm.name, *swept, f"seed{cfg.seed}"])
    if hydra_cfg.mode == RunMode.MULTIRUN:
        group = f"{cfg.experiment_name}-{Path(hydra_cfg.sweep.dir).name}"
    else:
        group = cfg.experiment_name
    return {"name": name, "group": group, "job_type": cfg.algorithm.name, "overrides": overrides}


def finished_result(output_dir: Path, overrides: list[str] | None = None) -> Result | None:
    """The job's own complete result.json, if an earlier run of this sweep already wrote one with the same overrides
    (a rerun whose job in this folder is set differently -- a tuning that chose again -- runs it again)."""
    path = output_dir / RESULT_FILE
    try:
        result = Result.read(path) if path.exists() else None
    except ValueError:  # unreadable: run the job again
        return None
    if result is None or result.status != "complete":
        return None
    if overrides is not None and _identity(result.overrides) != _identity(redact_overrides(overrides)):
        return None
    return result


def _identity(overrides: list[str]) -> list[str]:
    """The overrides that make a job what it is (results.is_compared): not where it writes, how it is shown, or
    which tuning phase launched it."""
    return sorted(o for o in overrides if is_compared(o.lstrip("+~").split("=", 1)[0]))


def run_job(cfg: DictConfig) -> float | None:
    """Train and evaluate one algorithm; returns the objective metric (for sweepers such as Optuna)."""
    from harness import distributed
    from harness.job import Job, SilentLogger
    from harness.runner import build_plugin

    started = time.time()
    quiet_libraries()
    if cfg.get("cpu_threads"):
        import torch

        torch.set_num_threads(cfg.cpu_threads)
    apply_smoke(cfg, list(HydraConfig.get().overrides.task))
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    if (done := finished_result(output_dir, list(HydraConfig.get().overrides.task))) is not None:  # a sweep re-run
        log.info("job already complete (%s): skipped", output_dir / RESULT_FILE)
        return done.metrics.get(cfg.get("objective") or "")
    identity = job_identity(cfg)
    # one W&B run per job, however many processes run it
    logger = build_plugin(cfg.logger) if distributed.is_main() else SilentLogger()
    job = Job(cfg, output_dir, logger, identity, started)
    return job.execute()


# An absolute path: Hydra reads it as a folder however the app is started (console script, -m, tests).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def hydra_main(cfg: DictConfig) -> float | None:
    # In a sweep one failed job must not cost the others: it leaves a result.json with status "failed", the
    # sweep goes on, and the report lists it. A single run stops with the one-line error (or the traceback of
    # a bug, which is ours to fix).
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    # the error is printed once, as the `error:` line; the log records it too, on the console only where that is
    # the job's console.log (a sweep with a view), not the terminal
    console_too = in_sweep and progress.view_folder(job_sweep_dir()) is not None
    with sweep_job():  # in a sweep with a view: this job's console to its console.log, its progress to the view
        try:
            return run_job(cfg)
        except HarnessError as error:
            close_progress_bars()  # one left open by the failed step would redraw itself below the error at exit
            log_error(str(error), console_too)
            print(f"error: {error}", file=sys.stderr)
            progress.failed(str(error))
            if in_sweep:
                return None
            sys.exit(2)
        except Exception as error:
            if not in_sweep:
                raise
            files = log_error("job failed", console_too, traceback=True)
            where = f" (its traceback: {', '.join(files)})" if files else ""
            message = f"{type(error).__name__}: {error}"
            print(f"error: job {HydraConfig.get().job.num} failed: {message}{where}", file=sys.stderr)
            progress.failed(message)
            return None


def log_error(message: str, console_too: bool, traceback: bool = False) -> list[str]:
    """Log an error (with the traceback being handled, if `traceback`) to every handler when `console_too`, else to
    the log files only (Hydra's app.log), where the terminal shows it once as the `error:` line instead. Returns
    the files it went to, where only to files; with no log file, it goes to the console after all."""
    if not console_too:
        record = log.makeRecord(
            log.name, logging.ERROR, __file__, 0, message, (), sys.exc_info() if traceback else None
        )
        files = []
        for handler in logging_handlers(log):
            if isinstance(handler, logging.FileHandler) and record.levelno >= handler.level:
                handler.handle(record)
                files += [handler.baseFilename] if handler.baseFilename != os.devnull else []
        if files:
            return files
    log.error("%s", message, exc_info=traceback)
    return []


def logging_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The handlers a record logged to `logger` reaches: its own and, while it propagates, its ancestors'."""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    return handlers


def sweep_job() -> Any:
    """harness.progress.sweep_job for this job (a no-op context outside a sweep)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return contextlib.nullcontext()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    return progress.sweep_job(output_dir, job_sweep_dir(), int(hydra_cfg.job.num))


def job_sweep_dir() -> Path:
    """The folder of this job's sweep: where the launcher made it, even after a chdir."""
    hydra_cfg = HydraConfig.get()
    return Path(hydra_cfg.runtime.cwd) / hydra_cfg.sweep.dir


def close_progress_bars() -> None:
    """Close every tqdm bar still open (a trainer's, when an error left its loop early)."""
    tqdm = sys.modules.get("tqdm")
    if tqdm is None:
        return
    for bar in list(getattr(tqdm.tqdm, "_instances", ())):
        bar.close()


def quiet_libraries() -> None:
    """Keep the console for the harness's own progress: no per-map bars from datasets, no weight-loading bars."""
    import datasets
    import transformers

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()


def main() -> None:
    from harness.callbacks import LAST_SWEEP

    hydra_main()
    if LAST_SWEEP.get("problems"):
        sys.exit(1)  # a sweep with failed or missing jobs: the report is written, the exit status says so


def eval_main() -> None:
    """`harness-eval PATH [overrides]`: `harness algorithm=checkpoint algorithm.path=PATH [overrides]`."""
    args = sys.argv[1:]
    if not args or args[0].startswith("-") or "=" in args[0]:
        print("usage: harness-eval MODEL_DIR [hydra overrides, e.g. eval=[gold,kl] algorithm.reference=base]")
        sys.exit(0 if args and args[0] in ("-h", "--help") else 2)
    sys.argv = [sys.argv[0], "algorithm=checkpoint", f"algorithm.path={args[0]}", *args[1:]]
    hydra_main()


if __name__ == "__main__":
    main()
