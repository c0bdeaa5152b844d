"""One job from start to `result.json`: train the algorithm, sample the policy once, run every suite."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from harness import distributed, progress, snapshots
from harness.convergence import job_convergence
from harness.declarations import (
    curve_entries,
    headline_entries,
    kl_beta_warning,
    metric_curve_entries,
    split_declarations,
)
from harness.devices import resolve_device
from harness.errors import HarnessError
from harness.generation import load_policy, sample_completions
from harness.io import atomic_write_text
from harness.objective import objective_value
from harness.protocols import EvalSuite, Policy, Sampled
from harness.ranges import check_config
from harness.results import (
    RESULT_FILE,
    SAMPLES_FILE,
    TRAIN_LOG_FILE,
    Cost,
    Result,
    StageRecord,
    TrajectoryPoint,
    peak_memory_mb,
    redact,
    reset_peak_memory,
)
from harness.runner import EvalContext, Run, build_plugin, plain, stage_summary
from harness.tune.trial import Pruned, TrialJudge
from harness.versions import stack_versions

log = logging.getLogger("harness")


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


class Job:
    def __init__(
        self, cfg: DictConfig, output_dir: Path, logger: Any, identity: dict[str, Any], started: float
    ) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.logger = logger
        self.identity = identity
        self.started = started
        self.config = redact(plain(cfg))
        self.headline: list[dict[str, Any]] = []  # what the suites and the algorithm declare (harness.declarations)
        self.curves: list[dict[str, Any]] = []
        self.metric_curves: list[dict[str, Any]] = []  # the suites' metric families drawn as curves (pass@k over k)
        self.trial: TrialJudge | None = None  # a tuning trial's judge of its snapshots (harness.tune.trial)

    def execute(self) -> float | None:
        cfg = self.cfg
        run: Run | None = None
        wall: dict[str, float] = process_startup(self.started)
        started_logger = False
        reset_peak_memory()
        try:  # whatever fails, even building a plugin, leaves a result.json that says so
            check_kl_budget(cfg)  # fail before training, not after
            check_config(cfg, resolve_device(cfg.device))  # every setting inside its declared range
            algorithm_config, declared = split_declarations(cfg.algorithm)
            self.curves = curve_entries(cfg.algorithm.name, declared.get("curves"))
            if ignored := kl_beta_warning(cfg.algorithm.name, cfg.get("kl_beta"), declared):
                log.warning("%s", ignored)  # a frontier sweep sets kl_beta for every row, best-of-n's too
            algorithm = build_plugin(algorithm_config)
            suites, self.headline, self.metric_curves = build_suites(cfg.eval)
            start = time.perf_counter()
            self.logger.start(
                config=self.config,
                name=self.identity["name"],
                group=self.identity["group"],
                job_type=self.identity["job_type"],
            )
            started_logger = True
            wall["logger"] = time.perf_counter() - start
            run = Run(cfg, self.output_dir, self.logger)
            if suites:
                check_num_prompts(cfg, run)  # the data stage is cheap; training is not
            start = time.perf_counter()
            with self.as_trial(run, suites):  # a tuning trial: judged at each snapshot, stopped if pruned
                policy = algorithm.train(run)
            wall["train_job"] = time.perf_counter() - start
            start, before = time.perf_counter(), set(run.stages)
            with progress.stage("eval"):
                eval_metrics, tokens_generated = self.evaluate(run, policy, suites, wall)
            # a stage a suite needed (a baseline policy it samples) is charged to that stage, not to eval
            wall["eval"] = time.perf_counter() - start - built_since(run, before)
            start, before = time.perf_counter(), set(run.stages)
            with progress.stage("eval snapshots") if policy.snapshots and suites else nullcontext():
                trajectory = self.evaluate_along(run, policy, suites)
            if trajectory:
                wall["eval/snapshots"] = time.perf_counter() - start - built_since(run, before)
            self.keep_training_log(run, cfg.algorithm.name)
        except Pruned as pruned:  # a tuning trial the study's pruner stopped: not a failure
            return self.pruned(run, pruned, wall)
        except BaseException as error:
            try:
                self.write(run, status="failed", error=error, wall=wall)
            except OSError as unwritten:  # a full disk: the job's own error is what the user needs to read
                log.error("result.json of the failed job could not be written: %s", unwritten)
            if started_logger:
                self.logger.finish(exit_code=1)
            raise
        metrics = {**policy.metrics, **eval_metrics}
        path = self.write(
            run, status="complete", metrics=metrics, wall=wall, tokens_generated=tokens_generated, trajectory=trajectory
        )
        self.logger.summary(metrics)
        self.logger.finish(exit_code=0)
        log.info("result: %s", path)
        for key in sorted(eval_metrics):
            log.info("  %-32s %.4f", key, eval_metrics[key])
        return self.objective(metrics)

    def objective(self, metrics: dict[str, float]) -> float | None:
        """What the job hands a sweeper: the objective at the KL budget (harness.objective); a tuning trial also
        tells its study, after result.json is written, so the study never holds a trial whose result is lost."""
        cfg = self.cfg
        if not cfg.get("objective"):
            return None
        value = objective_value(metrics, cfg.objective, cfg.get("kl_budget"), kl_key=cfg.get("kl_metric"))
        if self.trial is not None and distributed.is_main():
            self.trial.finish(value)
        return value

    def pruned(self, run: Run | None, pruned: Pruned, wall: dict[str, float]) -> None:
        self.write(run, status="pruned", error=pruned, wall=wall, metrics=pruned.metrics, trajectory=pruned.points)
        if self.trial is not None and distributed.is_main():
            self.trial.finish(None, pruned=True)
        self.logger.finish(exit_code=0)
        log.info("trial pruned: %s", pruned)
        return None

    def evaluate_along(self, run: Run, policy: Policy, suites: dict[str, EvalSuite]) -> list[TrajectoryPoint]:
        """Each snapshot of the policy's training (harness.snapshots), evaluated exactly as the final policy:
        result.json's `trajectory`, in training order."""
        trajectory: list[TrajectoryPoint] = []
        judged = {point.path: point for point in (self.trial.points if self.trial is not None else [])}
        for number, snapshot in enumerate(policy.snapshots if suites else []):
            if (point := judged.get(snapshot.path)) is not None:  # the trial judged it while training: same metrics
                trajectory.append(TrajectoryPoint(snapshot.step, round(snapshot.fraction, 6), point.metrics))
                continue
            progress.steps("snapshot", total=len(policy.snapshots), done=number, unit="")
            at = dataclasses.replace(
                policy,
                path=snapshot.path,
                metrics={},
                sampler=snapshot.sampler,
                analytic_kl=snapshot.analytic_kl,
                snapshots=[],
            )
            metrics, _ = self.evaluate(run, at, suites, {}, samples=False)
            trajectory.append(TrajectoryPoint(snapshot.step, round(snapshot.fraction, 6), metrics))
            log.info("snapshot at step %d (%.0f%% of training): %s", snapshot.step, 100 * snapshot.fraction,
                     ", ".join(f"{key} {value:.4f}" for key, value in sorted(metrics.items())))
        return trajectory

    @contextmanager
    def as_trial(self, run: Run, suites: dict[str, EvalSuite]) -> Iterator[None]:
        """While the algorithm trains: in a tuning trial (`tune.trial_id`, set by the tuning sweeper), each snapshot
        is evaluated as it is saved and reported to the study, whose pruner may stop the training (`Pruned`)."""
        if self.cfg.tune.get("trial_id") is None:
            yield
            return

        def evaluate(path: Path, reference: Path | None) -> dict[str, float]:
            at = Policy(path=path, reference_path=reference)
            metrics, _ = self.evaluate(run, at, suites, {}, samples=False)
            return metrics

        self.trial = TrialJudge(self.cfg, evaluate)
        with snapshots.watching(self.trial):
            yield

    def evaluate(
        self,
        run: Run,
        policy: Policy,
        suites: dict[str, EvalSuite],
        wall: dict[str, float],
        samples: bool = True,
    ) -> tuple[dict[str, float], int]:
        """Sample the policy once on the held-out prompts; every suite reads those same samples.
        Adds the seconds of sampling and of each suite to `wall` (`eval/sampling`, `eval/<suite>`). `samples`:
        write them to samples.jsonl (the final policy's)."""
        if not suites:
            return {}, 0
        start = time.perf_counter()
        if samples:  # the final policy's (a snapshot's evaluation shows its count instead)
            progress.activity("sampling")
        prompts = list(run.load_split(evaluation_split(self.cfg))["prompt"])
        limit = self.cfg.generation.num_prompts
        if limit is not None:
            prompts = prompts[:limit]
        settings = plain(self.cfg.generation)
        model = tokenizer = completion_ids = None
        if policy.sampler is not None:
            completions, lengths, generated = as_sampled(policy.sampler(prompts, settings, run.device))
        else:
            model, tokenizer = load_policy(policy.path, run.device)
            drawn = sample_completions(model, tokenizer, prompts, settings, run.device)
            completions, lengths, completion_ids = drawn.completions, drawn.lengths, drawn.token_ids
            generated = lengths
        context = EvalContext(
            prompts=prompts,
            completions=completions,
            completion_tokens=lengths,
            policy=policy,
            gold=run.gold(),
            device=run.device,
            generation=settings,
            proxy_reward=policy.proxy_reward,
            run=run,
            completion_ids=completion_ids,
            model=model,
            tokenizer=tokenizer,
        )
        wall["eval/sampling"] = time.perf_counter() - start
        metrics: dict[str, float] = {}
        for name, suite in suites.items():
            start, before = time.perf_counter(), set(run.stages)
            if samples:
                progress.activity(name)
            for metric, value in suite.evaluate(context).items():
                metrics[f"eval/{name}/{metric}"] = float(value)
            wall[f"eval/{name}"] = time.perf_counter() - start - built_since(run, before)
        if samples and distributed.is_main():
            context.write_samples(self.output_dir / SAMPLES_FILE)
        return metrics, sum(generated)  # the cost: every token drawn, kept or not

    def keep_training_log(self, run: Run, stage_name: str) -> None:
        """A copy of the algorithm stage's training history beside result.json, so the report's curves do not
        depend on the stage cache still being there."""
        if not distributed.is_main():
            return
        stage = run.stages.get(stage_name)
        history = stage.path / "log_history.jsonl" if stage is not None else None
        if history is not None and history.exists():
            atomic_write_text(self.output_dir / TRAIN_LOG_FILE, history.read_text())

    def write(
        self,
        run: Run | None,
        *,
        status: str,
        wall: dict[str, float],
        metrics: dict[str, float] | None = None,
        tokens_generated: int = 0,
        error: BaseException | None = None,
        trajectory: list[TrajectoryPoint] | None = None,
    ) -> Path:
        path = self.output_dir / RESULT_FILE
        if not distributed.is_main():  # one result per job, however many processes ran it
            return path
        stages = run.stages if run else {}
        cost = Cost(
            wall_s={**{name: round(out.seconds, 3) for name, out in stages.items()}, **wall},
            built_now={name: out.built_now for name, out in stages.items()},
            tokens_trained={
                name: int(out.metrics["tokens_trained"])
                for name, out in stages.items()
                if "tokens_trained" in out.metrics
            },
            # parameters each training stage updated (all of them, or a LoRA adapter's), beside the model's total
            trainable_parameters={
                name: [int(out.metrics["trainable_parameters"]), int(out.metrics.get("total_parameters", 0))]
                for name, out in stages.items()
                if "trainable_parameters" in out.metrics
            },
            tokens_generated=tokens_generated,
            peak_memory_mb=round(peak_memory_mb(), 1),
        )
        cost.wall_s["job"] = round(time.time() - self.started, 3)
        convergence: dict[str, Any] = {}
        if status == "complete":  # whether loss and quality were still moving when training stopped
            convergence = job_convergence(
                self.output_dir, trajectory or [], metrics or {}, self.cfg.get("objective"), self.headline, self.curves
            )
        result = Result(
            status=status,
            error=None if error is None else _describe(error),
            experiment=self.cfg.experiment_name,
            algorithm=self.cfg.algorithm.name,
            seed=self.cfg.seed,
            name=self.identity["name"],
            group=self.identity["group"],
            overrides=self.identity["overrides"],
            config=self.config,
            metrics=metrics or {},
            # the policy along its training, evaluated as the final one (harness.snapshots); [] without snapshots
            trajectory=list(trajectory or []),
            headline=self.headline,  # the comparison's leading columns, as the suites declared them
            # the training curves the algorithm declared worth plotting, and the suites' metric curves (pass@k over k)
            curves=self.curves + self.metric_curves,
            cost=cost,
            stages={name: StageRecord.from_dict(record) for name, record in stage_summary(stages).items()},
            # a stage whose killed build this job resumed, and the step it resumed from
            resumed=any(out.built_now and "resumed_from_step" in out.metrics for out in stages.values()),
            resumed_from={
                name: int(out.metrics["resumed_from_step"])
                for name, out in stages.items()
                if out.built_now and "resumed_from_step" in out.metrics
            },
            versions=stack_versions(),
            started_at=_timestamp(self.started),
            finished_at=_timestamp(time.time()),
            convergence=convergence,
        )
        return result.write(self.output_dir)


def build_suites(eval_config: Any) -> tuple[dict[str, EvalSuite], list[dict[str, Any]], list[dict[str, Any]]]:
    """Every eval suite of the job, built from its config without its declarations, the headline metrics they
    declare and the metric curves they declare (`curves:`, pass@k over k), in the order of `eval`."""
    suites: dict[str, EvalSuite] = {}
    headline: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for name, node in eval_config.items():
        suite_config, declared = split_declarations(node)
        headline += headline_entries(name, declared.get("headline"))
        curves += metric_curve_entries(name, declared.get("curves"))
        suites[name] = build_plugin(suite_config)
    return suites, headline, curves


def check_num_prompts(cfg: DictConfig, run: Run) -> None:
    """The split `eval_split` names must exist, and `generation.num_prompts` beyond its prompts would quietly
    evaluate fewer: refuse both. Under debug=smoke its 32 is a cap on the budget, not a request (a small task has
    fewer), unless the user set it."""
    from datasets import load_from_disk

    split = evaluation_split(cfg)
    splits = load_from_disk(str(run.datasets().path))  # unrendered: no base model needed
    if split not in splits:
        raise HarnessError(
            f"eval_split={cfg.eval_split}: task {cfg.task.name!r} has no {split!r} split (it has {sorted(splits)}); "
            "expected a task that provides one, or eval_split=test"
        )
    limit = cfg.generation.num_prompts
    if limit is None or (cfg.get("smoke") and not _overridden("generation.num_prompts")):
        return
    available = len(splits[split])
    if limit > available:
        raise HarnessError(
            f"generation.num_prompts={limit}: more than the {available} {PROMPTS_NAMED[split]} prompts of task "
            f"{cfg.task.name!r}; expected at most {available} (or null: all of them)"
        )


def _overridden(key: str) -> bool:
    """Whether the user set `key` on the command line (or a sweep did)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return True
    return any(o.lstrip("+~").split("=", 1)[0] == key for o in HydraConfig.get().overrides.task)


SPLITS = {"test": "eval_prompts", "validation": "validation_prompts"}  # eval_split -> the task's split
PROMPTS_NAMED = {"eval_prompts": "evaluation", "validation_prompts": "validation"}


def evaluation_split(cfg: DictConfig) -> str:
    """The task split a job is evaluated on: `eval_prompts` (eval_split=test) or `validation_prompts`."""
    choice = cfg.get("eval_split") or "test"
    if choice not in SPLITS:
        raise HarnessError(f"eval_split={choice!r}: expected test (the task's eval_prompts) or validation")
    return SPLITS[choice]


def check_kl_budget(cfg: DictConfig) -> None:
    """A KL budget needs the metric it budgets (`kl_metric`, eval/<suite>/<metric>) and that suite in `eval`."""
    budget, kl_metric = cfg.get("kl_budget"), cfg.get("kl_metric")
    if budget is None:
        return
    if not kl_metric:
        raise HarnessError(f"kl_budget={budget} needs kl_metric: the metric it budgets (eval/<suite>/<metric>)")
    parts = str(kl_metric).split("/")
    if len(parts) < 3 or parts[0] != "eval":
        raise HarnessError(f"kl_metric={kl_metric!r} is not an evaluation metric; expected eval/<suite>/<metric>")
    if parts[1] not in cfg.eval:
        suite = parts[1]
        raise HarnessError(f"kl_budget={budget} needs the {suite} suite for {kl_metric}: add it (eval=[...,{suite}])")


class SilentLogger:
    """The logger of every process but the main one in a multi-process job: one run per job is logged."""

    def start(self, *, config: Any, name: str, group: str, job_type: str) -> None:
        pass

    def log(self, metrics: Any, step: int | None = None) -> None:
        pass

    def summary(self, metrics: Any) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


def as_sampled(returned: Sampled | tuple[list[str], list[int]]) -> Sampled:
    """A sampler's return as Sampled: a plain (completions, lengths) pair generated just those tokens."""
    if isinstance(returned, Sampled):
        return returned
    completions, lengths = returned
    return Sampled(list(completions), list(lengths), list(lengths))


def built_since(run: Run, before: set[str]) -> float:
    """Seconds spent building the stages `run` has built since it had only `before`."""
    return sum(out.seconds for name, out in run.stages.items() if name not in before and out.built_now)


_jobs_started = itertools.count()  # jobs this process has run (a launcher's worker runs several)


def process_startup(job_started: float) -> dict[str, float]:
    """`{"startup": seconds}` from this process's start to its first job's (interpreter, imports, Hydra's
    composition); empty for a later job of a process a sweep reuses."""
    import psutil

    if next(_jobs_started):
        return {}
    return {"startup": round(max(0.0, job_started - psutil.Process().create_time()), 3)}


def _describe(error: BaseException) -> str:
    if isinstance(error, HarnessError):
        return str(error)
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return last
