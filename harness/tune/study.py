"""The studies of a tuning: where they live, how they sample and prune, and how many trials each has had.

A study lives in a database (SQLite in the sweep folder by default; any SQLAlchemy URL, e.g. PostgreSQL, for
workers on several machines): Optuna's own distributed mode. Each worker asks the study for trials; a trial
number is handed out once, so two workers never run the same trial. A running trial's worker writes a heartbeat;
one silent for `grace_s` (its worker was killed) is failed and enqueued again with the same settings
(RetryFailedTrialCallback), so a rerun of a killed tuning keeps every finished trial and runs the lost one again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

log = logging.getLogger("harness")

DATABASE = "tuning.db"  # the default study database, in the sweep folder
PRUNERS = ("successive_halving", "hyperband", "none")


def storage_url(setting: str | None, sweep_dir: Path) -> str:
    """`tune.storage`, or SQLite in the sweep folder."""
    if setting:
        return str(setting)
    return f"sqlite:///{(Path(sweep_dir) / DATABASE).resolve()}"


def open_storage(url: str, heartbeat_s: int | None = None, grace_s: int | None = None) -> Any:
    """Optuna's RDB storage at `url`; with `heartbeat_s`, trials that stopped beating for `grace_s` are failed
    and retried with their settings. A URL SQLAlchemy cannot use is a one-line error."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    quiet()
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine = {"connect_args": {"timeout": 120}}  # several processes write one file: wait for its lock
    heartbeat = {}
    if heartbeat_s:
        heartbeat = {
            "heartbeat_interval": int(heartbeat_s),
            "grace_period": int(grace_s or 2 * heartbeat_s),
            "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=3),
        }
    try:
        return _rdb_storage(RDBStorage, url, engine, heartbeat)
    except (optuna.exceptions.OptunaError, ValueError, ImportError) as error:
        expected = "expected a SQLAlchemy URL such as sqlite:///t.db"
        raise HarnessError(f"tune.storage={shown(url)}: {error}; {expected}") from None
    except Exception as error:  # SQLAlchemy's own: a driver missing, a server unreachable
        message = str(error).splitlines()[0][:200]
        raise HarnessError(f"tune.storage={shown(url)}: {message}; expected a reachable SQLAlchemy database") from None


def _rdb_storage(kind: Any, url: str, engine: dict[str, Any], heartbeat: dict[str, Any]) -> Any:
    """The storage; two workers starting at once both create the schema of a new database, and the second's
    attempt fails: it then finds the first's tables."""
    import time

    for attempt in range(5):
        try:
            return kind(url, engine_kwargs=engine, **heartbeat)
        except Exception as error:
            racing = any(word in str(error) for word in ("UNIQUE constraint", "already exists", "database is locked"))
            if not racing or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def shown(url: str) -> str:
    """The URL with any password hidden."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparsable URL>"


def quiet() -> None:
    """Optuna's info lines and its warnings about features it calls experimental (heartbeats, the constant liar,
    the retry callback: all in Optuna since 2.x) off; the harness says what happens."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # heartbeats with ask-and-tell: the sweeper beats for its trials itself (harness.tune.sweep.heartbeats)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def make_pruner(tune: Any) -> Any:
    import optuna

    name = tune.pruner
    if name == "successive_halving":  # asynchronous: no trial waits for a rung to fill (Li et al. 2020, ASHA)
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=int(tune.reduction_factor))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=max(1, int(tune.rungs)), reduction_factor=int(tune.reduction_factor)
        )
    if name == "none":
        return optuna.pruners.NopPruner()
    raise HarnessError(f"tune.pruner={name!r}: expected one of {', '.join(PRUNERS)}")


def make_sampler(tune: Any, method: str) -> Any:
    """TPE, seeded per method (the same trials on a rerun with one worker), with a constant liar so trials running at
    once are not all drawn at the same spot."""
    import zlib

    import optuna

    seed = int(tune.sampler_seed) + zlib.crc32(method.encode()) % 10_000
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(tune.startup_trials), constant_liar=True)


def study_name(experiment: str, method: str) -> str:
    return f"{experiment}/{method}"


def open_study(storage: Any, name: str, tune: Any, method: str, create: bool = True) -> Any:
    import optuna

    if create:
        return optuna.create_study(
            storage=storage,
            study_name=name,
            direction="maximize",
            sampler=make_sampler(tune, method),
            pruner=make_pruner(tune),
            load_if_exists=True,
        )
    sampler, pruner = make_sampler(tune, method), make_pruner(tune)
    return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)


def counted(study: Any, states: Iterable[str]) -> list[Any]:
    """The study's trials in these states (names of optuna.trial.TrialState)."""
    from optuna.trial import TrialState

    wanted = tuple(TrialState[state] for state in states)
    return study.get_trials(deepcopy=False, states=wanted)


SPENT = ("COMPLETE", "PRUNED", "RUNNING")  # trials that use the budget (a failed one is run again)


def over_budget(study: Any, trial_number: int, budget: int) -> bool:
    """Whether a trial just asked lies beyond the budget: `budget` trials numbered below it already count
    (another worker asked at the same moment). Trial numbers are handed out once, in order, by the database."""
    earlier = [trial for trial in counted(study, SPENT) if trial.number < trial_number]
    return len(earlier) >= budget


def fail_stale(study: Any) -> None:
    """Fail (and so enqueue again) the running trials whose worker stopped beating."""
    from optuna.storages import fail_stale_trials

    fail_stale_trials(study)
