"""A tuning trial's job side. The job trains with `snapshots=tune.rungs`; each snapshot, the moment it is saved,
is evaluated on the validation prompts exactly as the final policy will be, its objective (the quality metric at
the KL budget: harness.objective) reported to the study as the trial's value at that rung, and the study's pruner
(successive halving or Hyperband over the trials so far) may stop the training there: `Pruned`. The evaluations
are the job's trajectory too, so nothing is evaluated twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.objective import objective_value
from harness.protocols import Snapshot

log = logging.getLogger("harness")


@dataclass
class Judged:
    path: Path
    step: int
    fraction: float
    metrics: dict[str, float]
    value: float | None


class Pruned(Exception):
    """The study's pruner stopped this trial at a rung (not a failure: the sweeper tells the study PRUNED)."""

    def __init__(self, rung: int, value: float, judged: list[Judged]) -> None:
        at = f"snapshot at {judged[-1].fraction:.0%} of training"
        super().__init__(f"pruned at rung {rung} ({at}): objective {value:.4f}")
        self.metrics = dict(judged[-1].metrics)
        self.points = [_point(point) for point in judged]


def _point(judged: Judged) -> Any:
    from harness.results import TrajectoryPoint

    return TrajectoryPoint(judged.step, round(judged.fraction, 6), judged.metrics)


class TrialJudge:
    """Called with each snapshot as it is saved (harness.snapshots.watching)."""

    def __init__(self, cfg: Any, evaluate: Callable[[Path, Path | None], dict[str, float]]) -> None:
        import optuna

        from harness.tune.study import open_storage, open_study

        tune = cfg.tune
        self.cfg = cfg
        self.evaluate = evaluate
        storage = open_storage(str(tune.storage))
        study = open_study(storage, str(tune.study), tune, str(cfg.algorithm.name), create=False)
        self.trial = optuna.trial.Trial(study, int(tune.trial_id))
        self.judged: list[Judged] = []
        self.reference: Path | None = None  # the policy the first training stage started from (SFT, mostly)

    @property
    def points(self) -> list[Judged]:
        return self.judged

    def finish(self, value: float | None, pruned: bool = False) -> None:
        """Tell the study how the trial ended, the moment its job ends, so a worker killed later in its launch
        loses no finished trial (the sweeper's own tell afterwards is then skipped)."""
        from optuna.trial import TrialState

        if pruned:
            self.trial.study.tell(self.trial, state=TrialState.PRUNED, skip_if_finished=True)
        elif value is not None:
            self.trial.study.tell(self.trial, value, skip_if_finished=True)

    def __call__(self, snapshot: Snapshot, start: Path | None) -> None:
        if self.reference is None:
            self.reference = start
        metrics = self.evaluate(snapshot.path, self.reference)
        cfg = self.cfg
        value = objective_value(metrics, cfg.objective, cfg.get("kl_budget"), kl_key=cfg.get("kl_metric"))
        self.judged.append(Judged(Path(snapshot.path), snapshot.step, snapshot.fraction, metrics, value))
        if value is None:
            return
        rung = len(self.judged)
        self.trial.report(value, rung)
        log.info("trial %d, rung %d (%.0f%% of training): objective %.4f", self.trial.number, rung,
                 100 * snapshot.fraction, value)
        if self.trial.should_prune():
            raise Pruned(rung, value, self.judged)
