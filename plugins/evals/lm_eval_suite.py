"""`eval=lm_eval`: lm-evaluation-harness tasks run in process on the policy: `eval/lm_eval/<task>/<metric>`.

Tasks are lm-eval YAMLs discovered from folders (`TaskManager(include_path=...)`): the testbed's own in
`plugins/evals/tasks/` (`testbed_minimal_pairs`, `testbed_sentiment`, `testbed_perplexity`, group `testbed`), the
user's in `include_path`, and lm-eval's built-in ones by name. A new task is a YAML file, no Python. A policy that
is a procedure (best-of-n) is scored as the model at `policy.path` it samples from.

Two things lm-eval 0.4.13 does not do on its own, done here:
- a relative `dataset_kwargs.data_files` path is looked up beside the task's YAML (lm-eval hands it to
  `datasets.load_dataset`, which reads it from the working directory), so a task folder is self-contained;
- `loglikelihood_rolling` puts `<bos>` before each text itself, so the tokenizer must not add a second one there
  (the testbed tokenizer, like Llama's, adds `<bos>` by default; contexts and generation keep that default).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from harness.api import EvalContext, HarnessError

log = logging.getLogger(__name__)

TASKS_DIR = Path(__file__).resolve().parent / "tasks"  # the testbed's task YAMLs and their data
DEFAULT_TASKS = ("testbed_minimal_pairs", "testbed_sentiment", "testbed_perplexity")
TESTBED_TASKS = ("testbed", *DEFAULT_TASKS, "testbed_minimal_pairs_<edit>")  # named in the unknown-task error


class LMEvalSuite:
    """Runs `tasks` with lm-eval on the policy; settings as in conf/eval/lm_eval.yaml."""

    def __init__(
        self,
        name: str = "lm_eval",
        tasks: Sequence[str] = DEFAULT_TASKS,
        include_path: str | Sequence[str] | None = None,
        batch_size: int = 64,
        limit: int | float | None = None,
        num_fewshot: int | None = None,
        bootstrap_iters: int = 1000,
    ) -> None:
        self.name = name
        self.tasks = [tasks] if isinstance(tasks, str) else list(tasks)
        self.include_paths = [include_path] if isinstance(include_path, str) else list(include_path or [])
        self.batch_size = batch_size
        self.limit = limit
        self.num_fewshot = num_fewshot
        self.bootstrap_iters = bootstrap_iters
        # Look the tasks up now: a job builds its suites before training, so a misspelled task name is a one-line
        # error in seconds, not after the training it would have thrown away.
        self._task_manager = self.task_manager()

    def evaluate(self, context: EvalContext) -> dict[str, float]:
        import lm_eval

        from harness.api import load_policy

        start = time.perf_counter()
        task_manager = self._task_manager
        model, tokenizer = load_policy(context.policy.path, context.device)
        language_model = bos_aware_hflm()(
            pretrained=model, tokenizer=tokenizer, batch_size=self.batch_size, device=context.device
        )
        # lm-eval seeds the global generators; the harness's stay as they were
        with preserved_random_state():
            try:
                results = lm_eval.simple_evaluate(
                    model=language_model,
                    tasks=self.tasks,
                    task_manager=task_manager,
                    num_fewshot=self.num_fewshot,
                    limit=self.limit,
                    batch_size=self.batch_size,
                    bootstrap_iters=self.bootstrap_iters,
                    log_samples=False,
                )
            except OSError as error:  # a data file that is not there, a dataset not cached while offline
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise HarnessError(f"eval.lm_eval.tasks={self.tasks}: cannot load a task's data: {reason}") from error
        metrics = flatten_results(results or {})
        log.info("eval lm_eval: %d metrics from %s in %.1fs", len(metrics), self.tasks, time.perf_counter() - start)
        return metrics

    def task_manager(self) -> Any:
        """Index the testbed's and the user's task folders; lm-eval's own ~15k tasks (about 10 s to index) only
        when a requested name is not found there. An unknown name is a one-line `HarnessError`."""
        paths = [TASKS_DIR]
        for path in self.include_paths:
            if not Path(path).is_dir():
                raise HarnessError(f"eval.lm_eval.include_path={path!r} is not a folder of lm-eval task YAMLs")
            paths.append(Path(path).resolve())
        if not self.tasks:
            raise HarnessError("eval.lm_eval.tasks is empty; name at least one task, e.g. [testbed_minimal_pairs]")
        local = local_data_task_manager(include_path=paths, include_defaults=False)
        if all(is_known(local, task) for task in self.tasks):
            return local
        full = local_data_task_manager(include_path=paths, include_defaults=True)
        for task in self.tasks:
            if not is_known(full, task):
                raise HarnessError(
                    f"eval.lm_eval.tasks: {task!r} is not an lm-eval task, group or tag; the testbed's are "
                    f"{', '.join(TESTBED_TASKS)} (plugins/evals/tasks/); yours go in eval.lm_eval.include_path"
                )
        return full


def is_known(task_manager: Any, task: str) -> bool:
    """A registered task, group or tag name, or the path of a task YAML (lm-eval accepts both)."""
    return task in task_manager.all_tasks or (task.endswith(".yaml") and Path(task).is_file())


def flatten_results(results: Mapping[str, Any]) -> dict[str, float]:
    """lm-eval's `{"results": {task: {"acc,none": 0.9, "acc_stderr,none": 0.01, "alias": ...}}}` as
    `{"task/acc": 0.9, "task/acc_stderr": 0.01}`; a filter other than `none` is kept: `task/exact_match/strict`.
    Groups report their aggregate the same way. Stderrs lm-eval did not compute ("N/A") are left out;
    `task/samples` is the number of documents scored (after `limit`)."""
    metrics: dict[str, float] = {}
    for section in ("results", "groups"):
        for task, values in (results.get(section) or {}).items():
            for key, value in values.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    continue  # alias, "N/A"
                if key == "sample_len":
                    metrics[f"{task}/samples"] = float(value)
                elif "," in key:
                    metric, filter_name = key.split(",", 1)
                    name = metric if filter_name == "none" else f"{metric}/{filter_name}"
                    metrics[f"{task}/{name}"] = float(value)
    for task, counts in (results.get("n-samples") or {}).items():
        if isinstance(counts, Mapping) and "effective" in counts:
            metrics.setdefault(f"{task}/samples", float(counts["effective"]))
    return metrics


@contextmanager
def preserved_random_state() -> Iterator[None]:
    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


def resolve_data_files(data_files: Any, task_dir: Path) -> Any:
    """Relative `data_files` (a path or glob, a list, or a split -> path(s) mapping) made absolute beside the YAML.

    A relative path found only from the working directory (how plain lm-eval reads it) is left as it is; one found
    nowhere points beside the YAML, so the error names that place. Absolute paths and URLs are left as they are.
    """
    if isinstance(data_files, Mapping):
        return {split: resolve_data_files(files, task_dir) for split, files in data_files.items()}
    if isinstance(data_files, list | tuple):
        return [resolve_data_files(files, task_dir) for files in data_files]
    if not isinstance(data_files, str) or not data_files or "://" in data_files or Path(data_files).is_absolute():
        return data_files

    def found(folder: Path) -> bool:
        is_pattern = any(char in data_files for char in "*?[")
        return (folder / data_files).exists() or (is_pattern and any(folder.glob(data_files)))

    return data_files if found(Path.cwd()) and not found(task_dir) else str(task_dir / data_files)


@cache
def local_data_task_factory() -> type:
    from lm_eval.tasks._factory import TaskFactory

    class LocalDataTaskFactory(TaskFactory):
        def _load_full_config(self, entry: Any, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
            config = super()._load_full_config(entry, overrides)
            dataset_kwargs = config.get("dataset_kwargs")
            if entry.yaml_path is not None and isinstance(dataset_kwargs, Mapping) and "data_files" in dataset_kwargs:
                data_files = resolve_data_files(dataset_kwargs["data_files"], Path(entry.yaml_path).parent)
                config["dataset_kwargs"] = {**dataset_kwargs, "data_files": data_files}
            return config

    return LocalDataTaskFactory


def local_data_task_manager(**kwargs: Any) -> Any:
    """An lm-eval `TaskManager` whose tasks read relative `data_files` from beside their YAML (lm-eval 0.4.13 builds
    tasks with a private `TaskFactory`; this swaps in a subclass that resolves the paths)."""
    from lm_eval.tasks import TaskManager

    manager = TaskManager(**kwargs)
    manager._factory = local_data_task_factory()(meta=manager.metadata)
    return manager


@cache
def bos_aware_hflm() -> type:
    """`HFLM` that scores rolling windows after exactly one `<bos>`.

    lm-eval's `loglikelihood_rolling` encodes the text with the tokenizer's defaults and then puts
    `prefix_token_id` (`<bos>`) in front: a tokenizer that adds `<bos>` itself would score `<bos> <bos> text`,
    including log P(<bos> | <bos>). Everywhere else the default is right: `context + continuation` is encoded with
    one `<bos>` in front, and an empty context becomes `<bos>` alone.
    """
    from lm_eval.models.huggingface import HFLM

    class BosAwareHFLM(HFLM):
        def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
            add_bos_token, self.add_bos_token = self.add_bos_token, False
            try:
                return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
            finally:
                self.add_bos_token = add_bos_token

    return BosAwareHFLM
