"""The benchmark plumbing (bench/): timing a child process, and the summary `make bench` writes.

No timing is asserted here: benchmarks measure, tests check that what they report is well formed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.__main__ import markdown, summary_keys  # noqa: E402
from bench.common import last_json_line, median, run_timed  # noqa: E402
from bench.demo import packing  # noqa: E402
from harness.results import Cost, Result, StageRecord  # noqa: E402


def test_a_child_process_reports_its_own_wall_time_memory_and_output() -> None:
    allocate = "import json; block = bytearray(200 * 2**20); print('noise'); print(json.dumps({'ok': len(block)}))"
    timed = run_timed([sys.executable, "-c", allocate])
    assert timed.returncode == 0
    assert timed.peak_rss_mb > 200  # the 200 MB block, seen through wait4
    assert last_json_line(timed.stdout) == {"ok": 200 * 2**20}
    small = run_timed([sys.executable, "-c", "pass"])
    assert small.peak_rss_mb < timed.peak_rss_mb  # this child's peak, not the largest child's so far


def test_a_failed_command_is_an_error_with_its_message(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no such thing"):
        run_timed([sys.executable, "-c", "import sys; sys.exit('no such thing')"], log=tmp_path / "log.txt")
    assert "no such thing" in (tmp_path / "log.txt").read_text()


def test_summary_keys_are_ratios_of_the_parts() -> None:
    parts = {
        "overhead": {
            name: {
                "training_ratio": ratio,
                "process_ratio": ratio + 0.1,
                "train_loop_ratio": 1.0,
                "harness": {"process_s": 40.0, "training_s": 33.0, "train_runtime_s": 31.0, "eval/kl_s": 1.0},
                "plain": {"process_s": 36.0, "training_s": 30.0, "train_runtime_s": 29.0, "imported_s": 4.0},
            }
            for name, ratio in (("sft", 1.04), ("dpo", 1.01))
        },
        "ppo": {
            "ppo_speedup_vs_trl112": 2.1,
            "peak_memory_ratio_vs_trl112": 0.8,
            "summary": {
                side: {
                    "episodes_per_second": eps,
                    "train_s": 4096 / eps,
                    "peak_rss_mb": 500.0,
                    "gold_reward": 0.9,
                    "gold_reward_std": 0.01,
                    "seq_kl": 2.0,
                    "grammatical": 0.95,
                }
                for side, eps in (("harness", 72.0), ("trl", 34.0))
            },
        },
        "demo": {
            "demo_wall_s": 480.0,
            "peak_rss_mb": 900.0,
            "jobs": 18,
            "cores": 2,
            "wall_s": 480.0,
            "stage_compute_s": 900.0,
            "packing_ratio": 480.0 / 450.0,
            "core_seconds": {"capacity (cores x wall)": 960.0, "work (stage_compute_s)": 900.0},
            "stage_builds": {"ppo": {"builds": 3, "total_s": 180.0, "mean_s": 60.0}},
            "evaluation_total_s": {"eval/sampling": 12.0},
            "per_algorithm": {"ppo": {"job_s": 100.0, "eval_s": 3.0, "gold_reward": 0.93}},
        },
    }
    keys = summary_keys(parts)
    for key in ("harness_overhead_sft", "harness_overhead_dpo", "ppo_speedup_vs_trl112", "demo_wall_s"):
        assert key in keys
    assert keys["demo_packing_ratio"] == 480.0 / 450.0 and keys["demo_cores"] == 2
    assert keys["harness_overhead_dpo"] == 1.01 and keys["ppo_speedup_vs_trl112"] == 2.1
    json.dumps(keys)  # summary.json is plain JSON
    text = markdown(keys, parts, {"finished_at": "now", "machine": {"cpus": 2, "torch": "2.13.0"}})
    assert "| harness_overhead_sft | 1.040 |" in text
    assert "| harness | 72.0 |" in text and "| trl | 34.0 |" in text
    assert "## Demo: 480 s, 18 jobs" in text
    assert "= 480 / (900 / 2) = **1.067**" in text and "| work (stage_compute_s) | 900 |" in text


def test_the_demo_packing_ratio_counts_lent_cores_as_work_and_itemises_the_idle_rest(tmp_path: Path) -> None:
    """Two single-thread jobs on 2 cores, a sweep of 100 s whose jobs run from t=10 to t=90.

    The builder (10-90 s, job 80 s) builds the base model in 40 s holding 70 core-seconds (its own core, and 30
    lent by the other job while it waited: stage.json `core_seconds`), then evaluates for 20 s. The waiter (10-70 s,
    job 60 s) waits, builds sft in 10 s (no stage.json: its seconds on its one core) and evaluates for 5 s.
    Work: 70 + 20 + 10 + 5 = 105 core-s, ratio 100 / (105 / 2) = 1.905. Of the 200 core-s: jobs outside builds and
    evaluation (80 - 60) + (60 - 15) = 65, less the 30 lent = 35; slots with no job 2 x 80 - (80 + 60) = 20; before
    and after the jobs 2 x (100 - 80) = 40. 105 + 35 + 20 + 40 = 200."""
    stage = tmp_path / "cache" / "base_model" / "0123"
    stage.mkdir(parents=True)
    (stage / "stage.json").write_text(json.dumps({"seconds": 40.0, "core_seconds": 70.0}))

    def job(start: int, end: int, wall: dict, built: dict, stages: dict) -> Result:
        return Result(config={"cpu_threads": 1}, cost=Cost(wall_s=wall, built_now=built), stages=stages,
                      started_at=f"2026-01-01T00:00:{start:02d}+00:00",
                      finished_at=f"2026-01-01T00:{end // 60:02d}:{end % 60:02d}+00:00")  # fmt: skip

    builder = job(10, 90, {"base_model": 40.0, "eval": 20.0, "job": 80.0}, {"base_model": True},
                  {"base_model": StageRecord(path=str(stage), built_now=True, seconds=40.0)})  # fmt: skip
    waiter = job(10, 70, {"base_model": 40.0, "sft": 10.0, "eval": 5.0, "job": 60.0},
                 {"base_model": False, "sft": True}, {"sft": StageRecord(path=str(tmp_path / "gone"))})  # fmt: skip
    packed = packing([builder, waiter], wall_s=100.0, cores=2)
    assert packed["stage_compute_s"] == 105.0
    assert packed["packing_ratio"] == pytest.approx(200 / 105)
    assert list(packed["core_seconds"].values()) == [200.0, 105.0, 30.0, 35.0, 20.0, 40.0]


def test_median_of_an_even_count_is_the_middle_mean() -> None:
    assert median([3.0, 1.0, 2.0, 10.0]) == 2.5
