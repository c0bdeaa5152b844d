"""A sweep over every algorithm (smoke budgets): shared stages are built once, and every evaluation suite
lands in every job's result.json and W&B run.

Sharing is checked through the cache (which job built what, how many stage directories exist), not by timing.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import run_harness

from harness.results import read_results
from plugins.loggers.wandb import read_offline_run

pytestmark = pytest.mark.slow

ALGORITHMS = ["base", "sft", "dpo", "ppo", "grpo", "rloo", "best_of_n"]
SUITES = ["gold", "kl", "diversity", "win_rate", "lm_eval"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    result = run_harness(
        "-m",
        f"algorithm={','.join(ALGORITHMS)}",
        "seed=0",
        "debug=smoke",
        "reward=learned",
        f"eval=[{','.join(SUITES)}]",
        "logger=wandb",
        f"results_dir={root}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(root / "sweeps")
    return root, results, result.stdout


def test_every_algorithm_completes(sweep) -> None:
    _, results, _ = sweep
    assert sorted(r["algorithm"] for r in results) == sorted(ALGORITHMS)
    assert all(r["status"] == "complete" for r in results)


def test_each_shared_stage_is_built_once(sweep) -> None:
    root, results, _ = sweep
    builds = Counter(name for r in results for name, built in r["cost"]["built_now"].items() if built)
    for shared in ("data", "base_model", "sft", "preferences", "reward_model"):
        assert builds[shared] == 1, f"{shared} was built {builds[shared]} times"
        users = {r["stages"][shared]["key"] for r in results if shared in r["stages"]}
        assert len(users) == 1, f"jobs used different {shared} stages"
    cache = root / "cache"  # the command-line results_dir wins over debug=smoke's
    for shared in ("base_model", "sft", "reward_model"):
        assert len([d for d in (cache / shared).iterdir() if d.is_dir()]) == 1
    assert {r["algorithm"] for r in results if "reward_model" in r["stages"]} == {"ppo", "grpo", "rloo", "best_of_n"}


def test_every_suite_lands_in_every_result_and_wandb_run(sweep) -> None:
    root, results, _ = sweep
    runs = {run["job_type"]: run for run in map(read_offline_run, (root / "wandb").glob("offline-run-*"))}
    assert sorted(runs) == sorted([*ALGORITHMS, "comparison"])
    expected = [
        "eval/gold/reward",
        "eval/gold/grammatical",
        "eval/kl/seq_kl",
        "eval/diversity/distinct_2",
        "eval/win_rate/rate",
        "eval/lm_eval/testbed_minimal_pairs/acc",
    ]
    for result in results:
        metrics = result["metrics"]
        for key in expected:
            assert key in metrics, f"{result['algorithm']}: {key} missing"
            assert runs[result["algorithm"]]["summary"][key] == pytest.approx(metrics[key])
    by_name = {r["algorithm"]: r["metrics"] for r in results}
    # RL with a learned reward reports what the reward model believed beside the truth
    assert all("eval/gold/proxy_reward" in by_name[a] for a in ("ppo", "grpo", "rloo", "best_of_n"))
    assert "eval/gold/proxy_reward" not in by_name["dpo"]
    assert by_name["best_of_n"]["eval/kl/analytic"] == 1.0
    assert by_name["base"]["eval/kl/seq_kl"] == 0.0  # the base model is its own reference
    assert by_name["sft"]["eval/win_rate/rate"] == 0.5  # SFT against itself: every prompt a tie


def test_the_sweep_ends_with_the_comparison(sweep) -> None:
    """The Hydra callback wrote the report into the sweep folder, printed the table, and logged the comparison
    as one more W&B run in the sweep's group; `harness-report` rebuilds the same CSV from the folders."""
    root, results, stdout = sweep
    (sweep_dir,) = {Path(r["dir"]).parent for r in results}
    for name in ("comparison.csv", "comparison.md", "report.html", "frontier.png"):
        assert (sweep_dir / name).exists(), name
    assert "| algorithm | seeds | gold reward |" in stdout and f"report: {sweep_dir / 'report.html'}" in stdout
    for algorithm in ALGORITHMS:
        assert f"| {algorithm} | 1 |" in stdout
    written = (sweep_dir / "comparison.csv").read_text()
    rebuilt = subprocess.run(
        [str(Path(sys.executable).parent / "harness-report"), str(sweep_dir), "--quiet"], capture_output=True, text=True
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (sweep_dir / "comparison.csv").read_text() == written
    runs = [read_offline_run(path) for path in (root / "wandb").glob("offline-run-*")]
    (comparison,) = [run for run in runs if run["job_type"] == "comparison"]
    assert comparison["group"] == results[0]["group"]
    assert any("comparison/table/_type" in row for row in comparison["history"])
    # every trained algorithm's curve travelled with its result (the report does not need the cache)
    trained = [r for r in results if r["algorithm"] in ("sft", "dpo", "ppo")]
    assert all((Path(r["dir"]) / "train_log.jsonl").exists() for r in trained)
