"""What suites and algorithms declare in their YAML (headline metrics, training curves) reaches the report
through result.json alone, never their constructors; the baseline comes from the sweep's own record."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from sweeps import make_job, suite_headline, write_multirun

from harness.declarations import headline_entries, split_declarations
from harness.errors import HarnessError
from harness.report import build_report
from harness.report.cli import parse_args, run
from harness.report.tables import declared_headline
from harness.results import Result

MY_SCORE = [{"key": "eval/mysuite/score", "label": "my score", "better": "higher", "digits": 3, "role": None}]


def _sweep(root: Path, baseline: str | None = "sft", headline: list | None = None) -> Path:
    """sft and dpo over seeds 0-1; dpo scores higher on every metric (gold reward: 0.60, 0.61 vs 0.80, 0.83)."""
    write_multirun(root, {"algorithm": "sft,dpo", "seed": "0,1"}, baseline=baseline)
    for number, (algorithm, seed) in enumerate([("sft", 0), ("sft", 1), ("dpo", 0), ("dpo", 1)]):
        value = 0.6 + 0.01 * seed if algorithm == "sft" else 0.8 + 0.03 * seed
        metrics = {"eval/gold/reward": value, "eval/mysuite/score": 10 * value}
        make_job(root, number, algorithm, seed, metrics, headline=headline)
    return root


def _rows(text: str) -> dict[str, dict[str, str]]:
    return {row["group"]: row for row in csv.DictReader(io.StringIO(text))}


def test_a_suite_declared_only_in_result_json_leads_the_table(tmp_path: Path) -> None:
    """No suite of this repository is named `mysuite`: its column, label and direction come from result.json."""
    report = build_report(_sweep(tmp_path, headline=MY_SCORE))
    assert "| algorithm | seeds | my score |" in report.markdown
    assert "| dpo | 2 | **8.150 [" in report.markdown  # the best mean (higher is better) in bold
    assert "gold reward" not in report.markdown.split("###")[0]  # a metric no job declared is no headline column
    page = (tmp_path / "report.html").read_text()
    assert "<th>my score</th>" in page
    assert '<td class="best">8.150 [' in page
    # no quality metric declared: no paired column, and the caption says why
    assert "Δ" not in report.markdown.splitlines()[2]
    assert "no suite declares a quality metric" in report.markdown


def test_headline_union_is_ordered_by_order_then_first_seen() -> None:
    first = [{"key": "eval/a/x", "label": "x"}, {"key": "eval/b/y", "label": "y", "order": 2}]
    second = [{"key": "eval/c/z", "label": "z", "order": 1}, {"key": "eval/a/x", "label": "other label"}]
    headline = declared_headline([Result(headline=first), Result(headline=second)])
    assert [(m.key, m.label) for m in headline] == [("eval/c/z", "z"), ("eval/b/y", "y"), ("eval/a/x", "x")]


def test_repository_suites_keep_the_reading_order() -> None:
    """config.yaml evaluates [gold, kl, diversity, win_rate]; the table still reads as it always has."""
    labels = [m.label for m in declared_headline([Result(headline=suite_headline())])]
    assert labels == [
        "gold reward",
        "win rate",
        "grammatical",
        "KL (nats)",
        "proxy reward",
        "distinct-2",
        "distinct-2 per prompt",  # declared; measured only with eval.diversity.per_prompt (experiment=kirk)
        "distinct-2 across prompts",
    ]
    roles = {m.role: m.key for m in declared_headline([Result(headline=suite_headline())]) if m.role}
    assert roles == {"quality": "eval/gold/reward", "divergence": "eval/kl/seq_kl", "proxy": "eval/gold/proxy_reward"}


def test_baseline_is_read_from_the_sweep_record(tmp_path: Path) -> None:
    root = _sweep(tmp_path, baseline="dpo")
    report = run(parse_args([str(root), "--quiet"]))
    assert report.comparison.baseline == "dpo"
    assert float(_rows(report.csv)["sft"]["eval/gold/reward/diff_vs_dpo/mean"]) == pytest.approx(-0.21)
    assert "Δ gold reward vs dpo" in report.markdown
    overridden = run(parse_args([str(root), "--quiet", "--baseline", "sft"]))
    assert float(_rows(overridden.csv)["dpo"]["eval/gold/reward/diff_vs_sft/mean"]) == pytest.approx(0.21)


def test_baseline_of_a_folder_of_runs_comes_from_a_job_record(tmp_path: Path) -> None:
    """Without multirun.yaml, a job's own .hydra/hydra.yaml names the baseline."""
    root = _sweep(tmp_path, baseline=None)
    (root / "multirun.yaml").unlink()
    callbacks = {"report": {"_target_": "harness.callbacks.ReportCallback", "baseline": "dpo"}}
    (root / "0_sft_seed0" / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"callbacks": callbacks}}))
    assert build_report(root).comparison.baseline == "dpo"


def test_without_a_recorded_baseline_there_are_no_paired_differences(tmp_path: Path) -> None:
    report = build_report(_sweep(tmp_path, baseline=None))
    assert report.comparison.baseline is None
    rows = _rows(report.csv)
    assert {rows[group]["eval/gold/reward/diff_vs_baseline/mean"] for group in ("sft", "dpo")} == {""}
    assert "No paired differences: no baseline was recorded with the sweep" in report.markdown
    assert "No paired differences" in (tmp_path / "report.html").read_text()


def test_wandb_flag_without_a_wandb_logger_is_one_line(tmp_path: Path) -> None:
    root = _sweep(tmp_path)  # the jobs logged with `logger: {name: none}`
    with pytest.raises(HarnessError, match=r"--wandb: the sweep's logger \(none\) cannot log a comparison"):
        run(parse_args([str(root), "--quiet", "--wandb"]))


def test_declarations_are_stripped_before_instantiation() -> None:
    """`builtins.dict` takes any keyword: what it returns is exactly what a constructor would receive."""
    node = OmegaConf.create(
        {
            "_target_": "builtins.dict",
            "name": "mysuite",
            "scale": "${scale}",
            "headline": [{"metric": "score", "label": "my score", "better": "higher"}],
            "baseline": {"_target_": "builtins.dict", "name": "inner", "curves": ["loss"]},
            "options": {"headline": "kept: not a plugin config"},
        }
    )
    root = OmegaConf.create({"scale": 2, "suite": node})
    config, declared = split_declarations(root.suite)
    built = instantiate(config, _convert_="all")
    assert built == {
        "name": "mysuite",
        "scale": 2,
        "baseline": {"name": "inner"},
        "options": {"headline": "kept: not a plugin config"},
    }
    assert declared == {"headline": [{"metric": "score", "label": "my score", "better": "higher"}]}
    assert headline_entries("mysuite", declared["headline"])[0]["key"] == "eval/mysuite/score"


def test_the_repository_suites_build_with_their_declarations(compose) -> None:
    """The suites' constructors take no `headline`: the job builds them from the stripped config."""
    from harness.app import apply_smoke
    from harness.job import build_suites

    cfg = compose(["logger=none"])
    apply_smoke(cfg)  # as a job does first: drops the plugins' `smoke:` blocks
    suites, headline, _ = build_suites(cfg.eval)
    assert list(suites) == ["gold", "kl", "diversity", "win_rate"]
    assert headline == suite_headline()


def test_bad_declarations_are_one_line_errors() -> None:
    with pytest.raises(
        HarnessError, match=r"eval.mysuite.headline\[0\]: better='more'; expected higher, lower or null"
    ):
        headline_entries("mysuite", [{"metric": "score", "better": "more"}])
    with pytest.raises(HarnessError, match=r"eval.mysuite.headline\[0\]: expected \{metric: NAME"):
        headline_entries("mysuite", ["score"])


def test_a_kl_budget_names_the_metric_and_its_suite() -> None:
    from harness.job import check_kl_budget

    def cfg(**values):
        return OmegaConf.create({"eval": {"gold": {}}, "kl_budget": None, **values})

    check_kl_budget(cfg())  # no budget: nothing to check
    with pytest.raises(HarnessError, match=r"kl_budget=1\.0 needs kl_metric"):
        check_kl_budget(cfg(kl_budget=1.0))
    with pytest.raises(HarnessError, match=r"needs the kl suite for eval/kl/seq_kl: add it \(eval=\[...,kl\]\)"):
        check_kl_budget(cfg(kl_budget=1.0, kl_metric="eval/kl/seq_kl"))
    check_kl_budget(cfg(kl_budget=1.0, kl_metric="eval/gold/reward"))  # any suite of the job
