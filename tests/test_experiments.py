"""Every named experiment still composes and runs (in smoke mode), so none rots unnoticed."""

from __future__ import annotations

import pytest
from conftest import run_harness

from harness.results import read_results

pytestmark = pytest.mark.slow


def test_every_experiment_runs_with_smoke_budgets(tmp_path) -> None:
    result = run_harness("-m", "experiment=glob(*)", "debug=smoke", f"results_dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path)
    from test_config import options

    assert sorted(r["experiment"] for r in results) == options("experiment")
    # each judged by its quality metric: the gold reward, or pass@1 on a task with a verifier (rlvr_zoo, yue)
    quality = ("eval/gold/reward", "eval/pass_at_k/pass_at_1")
    assert all(r["status"] == "complete" and any(q in r["metrics"] for q in quality) for r in results), [
        (r["experiment"], r["status"]) for r in results
    ]
