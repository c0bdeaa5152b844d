"""The tuning sweeper (hydra/sweeper=tune; experiment=blur, experiment=zoo_tuned): equal effort by construction.

    harness -m experiment=blur                                   tune every method, then the final comparison
    harness -m experiment=blur hydra.sweep.dir=<its folder>      a killed tuning continues where it stopped
    harness -m experiment=blur hydra.sweep.dir=<folder> tune.phase=tune    one more worker (same database)
    harness -m experiment=blur hydra.sweep.dir=<folder> tune.phase=final   the comparison from the studies as they are

1. Tuning. For every method in `tune.methods`, a study of `tune.trials` trials (the same number for every method):
   each trial is one job trained at `tune.seed` with settings the study's TPE sampler draws from the method's
   declared space (harness.tune.space), evaluated on the task's validation prompts (eval_split=validation) by the
   suites the objective needs, judged at `tune.rungs` snapshots along training and stopped early when the pruner
   drops it (harness.tune.trial). The objective is `objective` at `kl_budget` (harness.objective): one number,
   which pruning needs, and a budget, which keeps the search from buying reward with drift. Each method's own
   defaults also run once on the same validation prompts (tuned minus default). Trials live in `tuning/<method>/`.
2. The final comparison. Each method's best trial's settings (its defaults where no trial completed) run on the
   fresh seeds `tune.seeds` and are evaluated on the test prompts with the experiment's suites, beside the
   untuned `tune.baselines`: the sweep's comparison, through the usual report (equal KL, intervals, Holm). With
   `tune.defaults_on_test`, every method's defaults run on those seeds too, in `untuned/` (its own report).
   `tuning/summary.json` records the studies for the report's tuning section.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from harness.errors import HarnessError
from harness.io import atomic_write_json
from harness.objective import objective_value
from harness.results import RESULT_FILE, Result
from harness.tune import space as spaces
from harness.tune import study as studies

log = logging.getLogger("harness")

TUNING = "tuning"  # trials' folders and the summary, under the sweep folder
UNTUNED = "untuned"  # every method at its defaults on the final seeds (tune.defaults_on_test)
SUMMARY = "summary.json"
WORKER = f"{socket.gethostname()}/{os.getpid()}"  # which worker ran a trial (trials' user attribute `worker`)
FIXED_BY_TUNING = ("algorithm", "seed", "eval_split", "snapshots", "eval")  # a trial sets these itself


class Tuning:
    """One tuning sweep: `launch(batch)` runs jobs (the Hydra launcher's), `compose(overrides)` composes one."""

    def __init__(self, config: DictConfig, arguments: Sequence[str], launch: Any, compose: Any, slots: int) -> None:
        self.config = config
        self.tune = config.tune
        self.arguments = [a for a in arguments if a.lstrip("+~").split("=", 1)[0] not in FIXED_BY_TUNING]
        self.launch_jobs = launch
        self.compose = compose
        self.slots = max(1, slots)
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        self.url = studies.storage_url(self.tune.storage, self.sweep_dir)
        self.next_job = 0
        self.waiting_said = False
        check(config)

    # -- the whole sweep ----------------------------------------------------------------------------------------
    def run(self) -> None:
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        storage = studies.open_storage(self.url, self.tune.heartbeat_s, self.tune.grace_s)
        methods = list(self.tune.methods)
        spaces_of = {method: self.space(method) for method in methods}  # every space checked before any training
        if self.tune.phase != "final":  # final: the comparison from the studies as they stand
            self.tune_all(storage, methods, spaces_of)
        if self.tune.phase == "tune":
            log.info("tuning worker done (tune.phase=tune): the worker with tune.phase=all runs the comparison")
            return
        self.wait_for_others(storage, methods)
        if self.tune.phase != "final":
            self.run_defaults(methods)
        chosen = {method: self.chosen(storage, method) for method in methods}
        self.write_summary(storage, methods, spaces_of, chosen)
        self.final_comparison(chosen)

    def space(self, method: str) -> list[spaces.Dimension]:
        composed = self.compose([*self.arguments, f"algorithm={method}"])
        dimensions = spaces.parse_space(method, OmegaConf.to_container(composed.algorithm, resolve=False).get("search"))
        for dim in dimensions:
            if OmegaConf.select(composed, dim.key, default="<absent>") == "<absent>":
                raise HarnessError(f"algorithm {method!r}: search.{dim.key} names no setting of its config")
        return dimensions

    # -- tuning -------------------------------------------------------------------------------------------------
    def tune_all(self, storage: Any, methods: list[str], spaces_of: dict[str, list[spaces.Dimension]]) -> None:
        """Every method's study until each has spent its budget. A launch takes trials from the methods in turn
        (one each, more when there are fewer methods than twice the slots), so the methods progress together, each
        ask sees its study's finished trials, and a launch holds enough jobs that a pruned trial's slot is taken by
        the next one."""
        name = str(self.config.experiment_name)
        studies_of = {method: studies.open_study(storage, studies.study_name(name, method), self.tune, method)
                      for method in methods}
        budget = int(self.tune.trials)
        failures = dict.fromkeys(methods, 0)
        while True:
            free, running_elsewhere = {}, False
            for method, study in studies_of.items():
                studies.fail_stale(study)
                left = budget - len(studies.counted(study, studies.SPENT))
                if left > 0:
                    free[method] = left
                elif studies.counted(study, ["RUNNING"]):
                    running_elsewhere = True
            if not free:
                if not running_elsewhere:
                    return
                self.wait_a_beat()  # another worker's trials are still running (or died: then stale)
                continue
            batch = self.ask(storage, studies_of, free, budget, size=max(2 * self.slots, len(free)))
            if not batch:
                continue
            for (method, _), outcome in zip(batch, self.run_trials(storage, studies_of, batch, spaces_of), strict=True):
                failures[method] += outcome == "failed"
                if failures[method] >= budget:
                    folder = self.sweep_dir / TUNING / method
                    raise HarnessError(f"tuning {method}: {failures[method]} trials failed; see {folder}")

    def ask(self, storage: Any, studies_of: dict[str, Any], free: dict[str, int], budget: int,
            size: int) -> list[tuple[str, Any]]:
        """Up to `size` new trials, the methods with budget left in turn."""
        batch: list[tuple[str, Any]] = []
        turn = 0
        order = list(free)
        while len(batch) < size and any(left > 0 for left in free.values()):
            method = order[turn % len(order)]
            turn += 1
            if free[method] <= 0:
                continue
            study = studies_of[method]
            trial = study.ask()
            storage.record_heartbeat(trial._trial_id)  # at once: a worker killed from here on is seen to be
            if studies.over_budget(study, trial.number, budget):  # another worker took the last ones meanwhile
                trial.set_user_attr("surplus", True)
                study.tell(trial, state=_state("FAIL"))
                free[method] = 0
                continue
            batch.append((method, trial))
            free[method] -= 1
        return batch

    def run_trials(self, storage: Any, studies_of: dict[str, Any], batch: list[tuple[str, Any]],
                   spaces_of: dict[str, list[spaces.Dimension]]) -> list[str]:
        jobs, folders = [], []
        for method, trial in batch:
            values = spaces.suggest(trial, spaces_of[method])
            folder = f"{TUNING}/{method}/trial_{trial.number:03d}"
            trial.set_user_attr("folder", folder)
            trial.set_user_attr("worker", WORKER)
            folders.append(folder)
            jobs.append(
                [
                    *self.arguments,
                    f"algorithm={method}",
                    f"seed={self.tune.seed}",
                    "eval_split=validation",
                    f"snapshots={self.tune.rungs}",
                    f"eval=[{','.join(self.tune.trial_eval)}]",
                    f"tune.study='{studies_of[method].study_name}'",
                    f"tune.trial_id={trial._trial_id}",
                    f"tune.storage='{self.url}'",
                    f"hydra.sweep.subdir={folder}",
                    *spaces.as_overrides(values),
                ]
            )
        with heartbeats(storage, [trial for _, trial in batch], self.tune.heartbeat_s):
            self.launch(jobs)
        return [self.tell(studies_of[method], trial, self.sweep_dir / folder)
                for (method, trial), folder in zip(batch, folders, strict=True)]

    def tell(self, study: Any, trial: Any, folder: Path) -> str:
        result = read_result(folder)
        # a trial's job tells the study itself when it ends (harness.tune.trial.TrialJudge.finish): skipped then
        if result is not None and result.status == "pruned":
            study.tell(trial, state=_state("PRUNED"), skip_if_finished=True)
            return "pruned"
        value = self.value(result)
        if value is None:
            if study._storage.get_trial(trial._trial_id).state.is_finished():
                return "complete"  # told by its job (a job whose result went missing since)
            trial.set_user_attr("error", (result.error if result is not None else None) or "no result.json")
            study.tell(trial, state=_state("FAIL"), skip_if_finished=True)
            return "failed"
        study.tell(trial, value, skip_if_finished=True)
        return "complete"

    def value(self, result: Result | None) -> float | None:
        if result is None or result.status != "complete":
            return None
        cfg = self.config
        return objective_value(result.metrics, cfg.objective, cfg.get("kl_budget"), kl_key=cfg.get("kl_metric"))

    def wait_for_others(self, storage: Any, methods: list[str]) -> None:
        """Until no trial of these studies is running (another worker's), failing those whose worker died."""
        for method in methods:
            study = studies.open_study(storage, studies.study_name(str(self.config.experiment_name), method),
                                       self.tune, method)
            while True:
                studies.fail_stale(study)
                if not studies.counted(study, ["RUNNING"]):
                    break
                self.wait_a_beat()

    def wait_a_beat(self) -> None:
        if not self.waiting_said:
            log.warning("tuning: waiting for trials running elsewhere (a dead worker's are run again after "
                        "tune.grace_s=%s s without a heartbeat)", self.tune.grace_s)
            self.waiting_said = True
        time.sleep(min(5, self.tune.heartbeat_s))

    def chosen(self, storage: Any, method: str) -> dict[str, Any]:
        """The best trial's settings, or {} (the method's own defaults) when no trial completed or the defaults,
        trained and judged as a trial is, scored at least as well on validation: they are one more point the
        tuning measured, and a small budget can miss them."""
        study = studies.open_study(storage, studies.study_name(str(self.config.experiment_name), method),
                                   self.tune, method)
        if not studies.counted(study, ["COMPLETE"]):
            log.warning("tuning %s: no trial completed; the final comparison runs its defaults", method)
            return {}
        best = study.best_trial
        default = self.value(read_result(self.sweep_dir / TUNING / method / "default"))
        if default is not None and default >= best.value:
            log.info("tuning %s: its defaults (%.4f) beat every trial (best %.4f): kept", method, default, best.value)
            return {}
        return dict(best.params)

    def run_defaults(self, methods: list[str]) -> None:
        """Each method at its own defaults, trained and judged as a trial is (tuned minus default), all in one
        launch."""
        self.launch([[*self.arguments, f"algorithm={method}", f"seed={self.tune.seed}", "eval_split=validation",
                      f"snapshots={self.tune.rungs}", f"eval=[{','.join(self.tune.trial_eval)}]",
                      f"hydra.sweep.subdir={TUNING}/{method}/default"] for method in methods])

    # -- the comparison -----------------------------------------------------------------------------------------
    def final_comparison(self, chosen: dict[str, dict[str, Any]]) -> None:
        jobs: list[list[str]] = []
        methods = [*self.tune.baselines, *[m for m in self.tune.methods if m not in self.tune.baselines]]
        for index, (method, seed) in enumerate((m, s) for m in methods for s in self.tune.seeds):
            settings = spaces.as_overrides(chosen.get(method, {}))
            subdir = f"{index}_{method}_seed{seed}"
            jobs.append([*self.arguments, f"algorithm={method}", f"seed={seed}", f"hydra.sweep.subdir={subdir}",
                         *settings])
        if self.tune.defaults_on_test:
            for index, (method, seed) in enumerate((m, s) for m in methods for s in self.tune.seeds):
                subdir = f"{UNTUNED}/{index}_{method}_seed{seed}"
                jobs.append([*self.arguments, f"algorithm={method}", f"seed={seed}", f"hydra.sweep.subdir={subdir}"])
        self.save_record(methods)
        self.launch(jobs)

    def save_record(self, methods: list[str]) -> None:
        """multirun.yaml as a grid sweep would write it, so the report knows which jobs to expect."""
        record = OmegaConf.create(OmegaConf.to_container(self.config, resolve=False))
        with open_dict(record):
            record.hydra.sweeper.params = {"algorithm": ",".join(methods),
                                           "seed": ",".join(str(seed) for seed in self.tune.seeds)}
        OmegaConf.save(record, self.sweep_dir / "multirun.yaml")

    def launch(self, batch: list[list[str]]) -> None:
        self.launch_jobs(batch, self.next_job)
        self.next_job += len(batch)

    # -- the record the report reads ----------------------------------------------------------------------------
    def write_summary(self, storage: Any, methods: list[str], spaces_of: dict, chosen: dict) -> None:
        summary = {"objective": self.config.objective, "kl_budget": self.config.get("kl_budget"),
                   "kl_metric": self.config.get("kl_metric"), "trials": int(self.tune.trials),
                   "seed": int(self.tune.seed), "seeds": list(self.tune.seeds), "pruner": self.tune.pruner,
                   "rungs": int(self.tune.rungs), "storage": studies.shown(self.url), "methods": {}}
        for method in methods:
            name = studies.study_name(str(self.config.experiment_name), method)
            study = studies.open_study(storage, name, self.tune, method)
            default = read_result(self.sweep_dir / TUNING / method / "default")
            summary["methods"][method] = {
                "study": name,
                "space": {dim.key: dim.describe() for dim in spaces_of[method]},
                "chosen": chosen[method],
                "chosen_from": "trials" if chosen[method] else "defaults",
                "default_value": self.value(default),
                "default_tokens": _tokens(default, method),
                "trials": [_trial_record(trial, self.sweep_dir, method) for trial in study.get_trials(deepcopy=False)
                           if not trial.user_attrs.get("surplus")],
            }
        atomic_write_json(self.sweep_dir / TUNING / SUMMARY, summary)


def _trial_record(trial: Any, sweep_dir: Path, method: str) -> dict[str, Any]:
    folder = trial.user_attrs.get("folder")
    result = read_result(sweep_dir / folder) if folder else None
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "value": trial.value,
        "params": dict(trial.params),
        "rungs": {int(step): value for step, value in trial.intermediate_values.items()},
        "folder": folder,
        "worker": trial.user_attrs.get("worker"),
        "tokens_trained": _tokens(result, method),
        "seconds": trial.duration.total_seconds() if trial.duration is not None else None,
    }


def _tokens(result: Result | None, method: str) -> int | None:
    if result is None:
        return None
    return result.cost.tokens_trained.get(method)


def read_result(folder: Path) -> Result | None:
    path = Path(folder) / RESULT_FILE
    try:
        return Result.read(path) if path.exists() else None
    except ValueError:
        return None


def _state(name: str) -> Any:
    from optuna.trial import TrialState

    return TrialState[name]


@contextmanager
def heartbeats(storage: Any, trials: list[Any], every_s: float) -> Iterator[None]:
    """While the trials run: their heartbeat, so a worker that dies is seen to have (harness.tune.study)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            for trial in trials:
                try:
                    storage.record_heartbeat(trial._trial_id)
                except Exception as error:  # a database hiccup must not kill the sweep; the next beat retries
                    log.debug("heartbeat of trial %d: %s", trial.number, error)
            stop.wait(every_s)

    thread = threading.Thread(target=beat, name="tuning-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def check(config: DictConfig) -> None:
    """The tuning's settings, each a one-line error, before anything trains."""
    tune = config.tune
    if not tune.methods:
        raise HarnessError("tune.methods=[]: expected the algorithms to tune, e.g. tune.methods=[dpo,kto]")
    if tune.phase not in ("all", "tune", "final"):
        raise HarnessError(f"tune.phase={tune.phase!r}: expected all, tune or final")
    if tune.pruner not in studies.PRUNERS:
        raise HarnessError(f"tune.pruner={tune.pruner!r}: expected one of {', '.join(studies.PRUNERS)}")
    if not config.get("objective"):
        raise HarnessError("objective=null: tuning needs the metric it maximises, e.g. objective=eval/gold/reward")
    if not tune.seeds:
        raise HarnessError("tune.seeds=[]: expected the fresh seeds of the final comparison, e.g. [0,1,2]")
    if tune.seed in tune.seeds:
        raise HarnessError(f"tune.seed={tune.seed} is also in tune.seeds={list(tune.seeds)}; expected fresh seeds "
                           "for the final comparison (its runs must not be the trials')")
