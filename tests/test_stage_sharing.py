"""In a sweep over algorithms the shared stages are built once: base model, SFT and reward model.

Checked through the cache (which job built what, and how many stage directories exist), not by timing.
"""

from __future__ import annotations

import json
from collections import Counter

import pytest
from conftest import run_harness

pytestmark = pytest.mark.slow

ALGORITHMS = ["sft", "dpo", "ppo", "grpo", "best_of_n"]


def test_a_sweep_builds_each_shared_stage_once(tmp_path) -> None:
    result = run_harness(
        "-m", f"algorithm={','.join(ALGORITHMS)}", "seed=0", "debug=smoke", "reward=learned", f"results_dir={tmp_path}"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in (tmp_path / "sweeps").rglob("result.json")]
    assert sorted(r["algorithm"] for r in results) == sorted(ALGORITHMS)
    assert all(r["status"] == "complete" for r in results)

    builds = Counter(name for r in results for name, built in r["cost"]["built_now"].items() if built)
    for shared in ("data", "base_model", "sft", "preferences", "reward_model"):
        assert builds[shared] == 1, f"{shared} was built {builds[shared]} times"
        users = {r["stages"][shared]["key"] for r in results if shared in r["stages"]}
        assert len(users) == 1, f"jobs used different {shared} stages"
    cache = tmp_path / "cache"  # the command-line results_dir wins over debug=smoke's
    for shared in ("base_model", "sft", "reward_model"):
        assert len([d for d in (cache / shared).iterdir() if d.is_dir()]) == 1
    # every RL job and best-of-n used the one reward model; DPO used the same SFT
    assert {r["algorithm"] for r in results if "reward_model" in r["stages"]} == {"ppo", "grpo", "best_of_n"}
