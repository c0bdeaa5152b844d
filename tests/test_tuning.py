"""Equal-budget tuning (harness/tune/, hydra/sweeper=tune): a smoke-sized tuning of three methods end to end, test
prompts kept out of every trial, a killed tuning continued, two workers on one study, pruning, and the search-space
declarations' checks."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import optuna
import pytest
from conftest import HARNESS, REPO, job_env, kill_when
from omegaconf import OmegaConf

from harness.errors import HarnessError
from harness.protocols import Snapshot
from harness.results import Result, read_all
from harness.tune import space as spaces
from harness.tune import study as studies
from harness.tune.trial import Pruned, TrialJudge

MARKER = "the marker film"  # planted in the test prompts: no trial may ever evaluate it
METHODS = ("dpo", "ipo", "best_of_n")
TRIALS = 3

MARKED_TASK = '''
import json, os, time
from plugins.tasks.testbed import Testbed

MARKER = "the marker film"


class SeeingGold:
    """The testbed's gold reward, writing down when it is asked to score the marker prompt."""

    def __init__(self, gold):
        self.gold = gold

    def __getattr__(self, name):
        return getattr(self.gold, name)

    def reward(self, prompts, completions):
        if any(str(prompt).strip() == MARKER for prompt in prompts):
            with open(os.environ["MARKER_LOG"], "a") as log:
                log.write(json.dumps({"time": time.time(), "pid": os.getpid()}) + "\\n")
        return self.gold.reward(prompts, completions)


class MarkedTestbed(Testbed):
    def gold(self):
        return SeeingGold(super().gold())

    def _prompts(self, split, excluded=frozenset()):
        drawn = super()._prompts(split, excluded)
        return [MARKER, *drawn[1:]] if split == "eval_prompts" else drawn
'''


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One stage cache for every tuning here: the smoke data, base model and SFT policies are built once."""
    return tmp_path_factory.mktemp("tuning-cache")


def common(results: Path, cache: Path) -> list[str]:
    return ["-m", "hydra/sweeper=tune", "debug=smoke", "logger=none", f"results_dir={results}", f"cache_dir={cache}",
            "kl_budget=2.0", "hydra.launcher.view=plain"]


def harness(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(HARNESS), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**job_env(), **(env or {})})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict:
    """`tune.methods=[dpo,ipo,best_of_n]`, 3 trials each, then the comparison on seed 0 beside SFT and the untuned
    defaults, on a testbed whose first test prompt is a marker the gold reward notes whenever it scores it."""
    root = tmp_path_factory.mktemp("tuned")
    (root / "conf" / "task").mkdir(parents=True)
    (root / "marked_task.py").write_text(MARKED_TASK)
    (root / "conf" / "task" / "marked.yaml").write_text("defaults:\n  - testbed\n  - _self_\n\n"
                                                        "_target_: marked_task.MarkedTestbed\n")
    sightings = root / "marker.jsonl"
    result = harness(
        *common(root / "results", shared_cache),
        f"hydra.searchpath=[file://{root / 'conf'}]",
        "task=marked",
        f"tune.methods=[{','.join(METHODS)}]",
        f"tune.trials={TRIALS}",
        "tune.rungs=2",
        "tune.seeds=[0]",
        "tune.defaults_on_test=true",
        "experiment_name=tuned",
        env={"PYTHONPATH": str(root), "MARKER_LOG": str(sightings)},
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (sweep,) = (root / "results" / "sweeps" / "tuned").iterdir()
    summary = json.loads((sweep / "tuning" / "summary.json").read_text())
    return {"sweep": sweep, "summary": summary, "sightings": sightings, "stdout": result.stdout}


def test_every_method_gets_the_same_budget_on_validation_and_its_best_settings_run_on_test(tuned: dict) -> None:
    summary, sweep = tuned["summary"], tuned["sweep"]
    assert sorted(summary["methods"]) == sorted(METHODS)
    for method, record in summary["methods"].items():
        spent = [trial for trial in record["trials"] if trial["state"] in ("complete", "pruned")]
        assert len(spent) == TRIALS, (method, record["trials"])
        for trial in spent:  # each trial a job of its own, trained at tune.seed, scored on validation prompts
            result = Result.read(sweep / trial["folder"] / "result.json")
            assert result.status == trial["state"] and result.seed == 1000
            assert result.config["eval_split"] == "validation" and sorted(result.config["eval"]) == ["gold", "kl"]
            assert result.config["snapshots"] == 2
        assert record["default_value"] is not None  # the defaults, scored the same way: tuned - default
    final = {(r.algorithm, r.seed): r for r in read_all(sweep)}  # the comparison: not the trials, not untuned/
    assert sorted(final) == sorted((method, 0) for method in ("sft", *METHODS))
    for method in METHODS:
        record = summary["methods"][method]
        chosen, run = record["chosen"], final[(method, 0)]
        assert run.config["eval_split"] == "test"
        best = max(t["value"] for t in record["trials"] if t["state"] == "complete")
        if record["chosen_from"] == "defaults":  # the defaults, judged as a trial, did at least as well
            assert chosen == {} and record["default_value"] >= best
            assert not [o for o in run.overrides if o.split("=", 1)[0] in record["space"]]
            continue
        assert best > record["default_value"]
        assert chosen == next(t["params"] for t in record["trials"] if t["value"] == best)
        for key, value in chosen.items():  # the best trial's settings, exactly
            assert OmegaConf.select(OmegaConf.create(run.config), key) == pytest.approx(value), (method, key)
    untuned = {(r.algorithm, r.seed) for r in read_all(sweep / "untuned")}
    assert untuned == set(final)


def test_the_report_shows_what_tuning_did(tuned: dict) -> None:
    markdown = (tuned["sweep"] / "comparison.md").read_text()
    section = markdown.split("## Equal-budget tuning", 1)[1].split("\n## ", 1)[0]
    for method in METHODS:
        row = next(line for line in section.splitlines() if line.startswith(f"| {method} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        done, pruned, failed = (int(n) for n in cells[2].split(" / "))
        assert done + pruned == TRIALS and failed == 0
        assert cells[-1] != "–"  # tuned minus default on the test prompts, from untuned/
    assert "Best so far, trial by trial:" in section
    html = (tuned["sweep"] / "report.html").read_text()
    assert "Equal-budget tuning" in html and "<polyline" in html


def test_test_prompts_never_reach_a_tuning_objective(tuned: dict) -> None:
    """The marker is the first test prompt: the gold reward scored it, but only after the tuning had ended (its
    summary is written before the final comparison starts), and no trial's samples hold it."""
    seen = [json.loads(line) for line in tuned["sightings"].read_text().splitlines()]
    assert seen, "the final comparison never scored the marker prompt: the test is blind"
    tuning_ended = (tuned["sweep"] / "tuning" / "summary.json").stat().st_mtime
    assert all(sighting["time"] > tuning_ended for sighting in seen)
    trials = list((tuned["sweep"] / "tuning").rglob("samples.jsonl"))
    assert trials and not any(MARKER in path.read_text() for path in trials)
    finals = [path for path in tuned["sweep"].glob("*/samples.jsonl")]
    assert any(MARKER in path.read_text() for path in finals)


def study_of(sweep: Path, name: str) -> optuna.Study:
    storage = studies.open_storage(studies.storage_url(None, sweep))
    return optuna.load_study(study_name=name, storage=storage)


def test_a_killed_tuning_continues_with_its_finished_trials(tmp_path: Path, shared_cache: Path) -> None:
    """Killed while its second trial trains; the rerun into the same folder keeps the first trial as it was, fails
    the lost one once its heartbeat is stale, runs it again with the same settings and finishes the budget."""
    sweep = tmp_path / "sweep"
    args = [*common(tmp_path, shared_cache), "tune.methods=[dpo]", "tune.trials=3", "tune.seeds=[0]",
            "tune.heartbeat_s=1", "tune.grace_s=3", "experiment_name=killed", f"hydra.sweep.dir={sweep}"]

    def second_trial_training() -> bool:
        database = sweep / studies.DATABASE
        if not database.exists():
            return False
        try:
            with sqlite3.connect(database, timeout=1) as connection:
                states = dict(connection.execute("SELECT number, state FROM trials").fetchall())
        except sqlite3.Error:  # not created yet, or locked for a moment
            return False
        started = (sweep / "tuning" / "dpo" / "trial_001" / ".hydra").exists()
        return states.get(0) == "COMPLETE" and states.get(1) == "RUNNING" and started

    kill_when(args, second_trial_training)
    first = sweep / "tuning" / "dpo" / "trial_000" / "result.json"
    before = (first.stat().st_mtime_ns, Result.read(first).metrics)
    rerun = harness(*args, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert (first.stat().st_mtime_ns, Result.read(first).metrics) == before  # kept, not run again
    trials = study_of(sweep, "killed/dpo").get_trials(deepcopy=False)
    states = [trial.state.name for trial in trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 3
    lost = trials[1]
    assert lost.state.name == "FAIL"  # stale heartbeat
    retried = [t for t in trials if optuna.storages.RetryFailedTrialCallback.retried_trial_number(t) == lost.number]
    assert len(retried) == 1 and retried[0].params == lost.params and retried[0].state.name != "FAIL"
    assert (sweep / "comparison.md").exists()


def test_two_workers_on_one_study_run_disjoint_trials(tmp_path: Path, shared_cache: Path) -> None:
    sweep = tmp_path / "sweep"
    args = [*common(tmp_path, shared_cache), "tune.methods=[dpo]", "tune.trials=4", "tune.phase=tune",
            "tune.rungs=0", "experiment_name=workers", f"hydra.sweep.dir={sweep}"]
    outcomes: list[subprocess.CompletedProcess] = []
    workers = [threading.Thread(target=lambda: outcomes.append(harness(*args, timeout=300))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(outcome.returncode == 0 for outcome in outcomes), [o.stderr[-2000:] for o in outcomes]
    trials = study_of(sweep, "workers/dpo").get_trials(deepcopy=False)
    spent = [trial for trial in trials if trial.state.name in ("COMPLETE", "PRUNED")]
    assert len(spent) == 4
    by_worker: dict[str, set[int]] = {}
    for trial in spent:
        by_worker.setdefault(trial.user_attrs["worker"], set()).add(trial.number)
    assert len(by_worker) == 2, f"one worker ran every trial: {by_worker}"
    ran = sorted(path.parent.name for path in (sweep / "tuning" / "dpo").glob("trial_*/result.json"))
    assert ran == sorted(f"trial_{trial.number:03d}" for trial in spent)  # each trial's job ran once, none extra
    assert not (sweep / "comparison.md").exists()  # a tuning-only worker leaves the comparison to the main one


def test_a_trial_below_its_rung_is_pruned_and_its_snapshots_kept(tmp_path: Path) -> None:
    """Successive halving with reduction factor 2: two earlier trials reached rung 1 at 0.8 and 0.9; a trial
    reaching it at 0.1 is stopped there, its judged snapshot kept as its trajectory."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    tune = OmegaConf.create({"pruner": "successive_halving", "reduction_factor": 2, "rungs": 3, "sampler_seed": 0,
                             "startup_trials": 1, "storage": url, "study": "t/dpo"})
    study = studies.open_study(studies.open_storage(url), "t/dpo", tune, "dpo")
    for value in (0.8, 0.9):
        trial = study.ask()
        trial.report(value, 1)
        trial.should_prune()  # the pruner records who reached the rung, as each trial's judge asks it
        study.tell(trial, value)
    trial = study.ask()
    cfg = OmegaConf.create({"tune": {**OmegaConf.to_container(tune), "trial_id": trial._trial_id},
                            "algorithm": {"name": "dpo"}, "objective": "eval/gold/reward", "kl_budget": 1.0,
                            "kl_metric": "eval/kl/seq_kl"})
    judge = TrialJudge(cfg, lambda path, reference: {"eval/gold/reward": 0.1, "eval/kl/seq_kl": 0.5})
    with pytest.raises(Pruned) as pruned:
        judge(Snapshot(step=4, fraction=0.25, path=tmp_path / "step-4"), tmp_path / "sft")
    assert pruned.value.points[0].metrics["eval/gold/reward"] == 0.1 and judge.reference == tmp_path / "sft"
    assert study.trials[-1].intermediate_values == {1: 0.1}
    fine = study.ask()  # a good one goes on
    cfg.tune.trial_id = fine._trial_id
    TrialJudge(cfg, lambda path, reference: {"eval/gold/reward": 0.95, "eval/kl/seq_kl": 0.5})(
        Snapshot(step=4, fraction=0.25, path=tmp_path / "s"), None)


def test_a_search_space_is_checked_in_one_line() -> None:
    assert [d.describe() for d in spaces.parse_space("dpo", {"kl_beta": {"low": 0.03, "high": 1.0, "log": True},
                                                             "algorithm.n": {"choices": [4, 8]}})] == [
        "[0.03, 1] log", "{4, 8}"]
    bad = {
        "low above high": {"kl_beta": {"low": 1.0, "high": 0.1}},
        "log of zero": {"kl_beta": {"low": 0.0, "high": 1.0, "log": True}},
        "no choices": {"algorithm.n": {"choices": []}},
        "unknown key": {"kl_beta": {"low": 0.1, "high": 1.0, "scale": "log"}},
    }
    for why, declared in bad.items():
        with pytest.raises(HarnessError) as error:
            spaces.parse_space("dpo", declared)
        assert "\n" not in str(error.value) and "search." in str(error.value), why
    with pytest.raises(HarnessError, match="declares no search space"):
        spaces.parse_space("sft", None)


def test_integer_and_float_ranges_suggest_their_own_kinds(tmp_path: Path) -> None:
    space = spaces.parse_space("x", {"a": {"low": 1, "high": 4}, "b": {"low": 1e-5, "high": 1e-3, "log": True}})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    values = spaces.suggest(study.ask(), space)
    assert isinstance(values["a"], int) and 1 <= values["a"] <= 4 and 1e-5 <= values["b"] <= 1e-3
    assert spaces.as_overrides(values)[1] == f"b={values['b']!r}"


def test_a_bad_storage_url_is_one_line() -> None:
    with pytest.raises(HarnessError) as error:
        studies.open_storage("nosuchdb://user:secret@host/db")
    assert "\n" not in str(error.value) and "secret" not in str(error.value) and "tune.storage=" in str(error.value)



def test_a_rerun_reuses_a_finished_job_only_with_the_same_overrides(tmp_path: Path) -> None:
    """A tuning that chose again (or any sweep rerun into its folder with other settings) must run the job again."""
    import shutil

    from harness.app import finished_result

    shutil.copy(Path(__file__).parent / "data" / "result_v1.json", tmp_path / "result.json")
    recorded = Result.read(tmp_path / "result.json").overrides
    assert finished_result(tmp_path, list(recorded)) is not None
    assert finished_result(tmp_path, [*recorded, "kl_beta=0.5"]) is None
    assert finished_result(tmp_path, [*recorded, "tune.phase=final", "cpu_threads=2"]) is not None  # not what it is
    assert finished_result(tmp_path) is not None  # no overrides to compare: as before
