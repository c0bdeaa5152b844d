"""The W&B Report for a sweep: built offline and checked on the library's own objects and serialised spec."""

from __future__ import annotations

import json
import os
import sys

import pytest

os.environ["WANDB_MODE"] = "offline"  # conftest sets it too; building a report must never need the network
pytest.importorskip("wandb_workspaces")

import wandb_workspaces.reports.v2 as wr
import wandb_workspaces.reports.v2.interface as wr_interface

from harness.errors import HarnessError
from harness.report.wandb_report import (
    MISSING_PACKAGE,
    build_report,
    comparison_panels,
    publish_report,
)

ENTITY, PROJECT, GROUP = "test-entity", "alignment-harness", "compare-2024-01-01_12-00-00"
ALGORITHMS = ["sft", "dpo", "ppo"]
# what comparison_panels gives for the repository's suites and a PPO that declares its curves
PANELS = {
    "reward_key": "eval/gold/reward",
    "kl_key": "eval/kl/seq_kl",
    "bar_metrics": ["eval/gold/reward", "eval/gold/grammatical", "eval/kl/seq_kl", "eval/diversity/distinct_2"],
    "curve_metrics": ["train/objective/score", "train/objective/gold_score", "train/loss"],
}
BAR_METRICS, CURVE_METRICS = PANELS["bar_metrics"], PANELS["curve_metrics"]


@pytest.fixture
def report() -> wr.Report:
    return build_report(
        entity=ENTITY, project=PROJECT, group=GROUP, title="DPO vs PPO", algorithms=ALGORITHMS, **PANELS
    )


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand in for the W&B API: a runset's serialisation looks up the project's internal id over GraphQL."""
    monkeypatch.setattr(wr_interface, "_get_api", lambda: object())
    project = {"project": {"internalId": "p1"}}
    monkeypatch.setattr(wr_interface, "execute_graphql", lambda api, query, variables: project)


def panels_of(report: wr.Report, kind: type) -> list:
    (grid,) = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    return [panel for panel in grid.panels if isinstance(panel, kind)]


def test_report_header_names_the_group(report: wr.Report) -> None:
    assert (report.entity, report.project, report.title) == (ENTITY, PROJECT, "DPO vs PPO")
    heading, intro = report.blocks[0], report.blocks[1]
    assert isinstance(heading, wr.H1) and GROUP in heading.text
    assert isinstance(intro, wr.MarkdownBlock) and GROUP in intro.text
    assert all(f"`{name}`" in intro.text for name in ALGORITHMS)


def test_runset_is_the_group_grouped_by_algorithm(report: wr.Report, no_server: None) -> None:
    (grid,) = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    (runset,) = grid.runsets
    assert (runset.entity, runset.project) == (ENTITY, PROJECT)
    assert runset.filters == f"Metric(\"Group\") == '{GROUP}'"
    assert runset.groupby == ["JobType"]
    model = runset._to_model()
    assert model.filters["filters"] == [
        {"key": {"section": "run", "name": "group"}, "op": "=", "value": GROUP, "disabled": False}
    ]
    assert [(key.section, key.name) for key in model.grouping] == [("run", "jobType")]


def test_scatter_is_reward_against_kl(report: wr.Report) -> None:
    (scatter,) = panels_of(report, wr.ScatterPlot)
    assert (scatter.x, scatter.y) == ("eval/kl/seq_kl", "eval/gold/reward")


def test_one_bar_plot_per_metric_with_std_error_bars(report: wr.Report) -> None:
    bars = panels_of(report, wr.BarPlot)
    assert [bar.metrics for bar in bars] == [[metric] for metric in BAR_METRICS]
    for bar in bars:
        assert (bar.groupby, bar.groupby_aggfunc, bar.groupby_rangefunc) == ("JobType", "mean", "stddev")


def test_line_plots_are_training_curves_against_train_step(report: wr.Report) -> None:
    curves = panels_of(report, wr.LinePlot)
    assert [curve.y for curve in curves] == [[metric] for metric in CURVE_METRICS]
    for curve in curves:
        assert curve.x == "train/step"
        assert (curve.groupby, curve.groupby_aggfunc, curve.groupby_rangefunc) == ("JobType", "mean", "stddev")


def test_custom_keys_and_metrics() -> None:
    report = build_report(
        entity=ENTITY,
        project=PROJECT,
        group=GROUP,
        title="t",
        algorithms=["dpo"],
        reward_key="eval/gold/proxy_reward",
        kl_key="eval/kl/token_kl",
        bar_metrics=["eval/gold/proxy_reward"],
        curve_metrics=[],
    )
    (scatter,) = panels_of(report, wr.ScatterPlot)
    assert (scatter.x, scatter.y) == ("eval/kl/token_kl", "eval/gold/proxy_reward")
    assert [bar.metrics for bar in panels_of(report, wr.BarPlot)] == [["eval/gold/proxy_reward"]]
    assert panels_of(report, wr.LinePlot) == []


def test_without_a_quality_and_a_divergence_metric_there_is_no_scatter() -> None:
    report = build_report(entity=ENTITY, project=PROJECT, group=GROUP, title="t", algorithms=["dpo"], kl_key=None)
    assert panels_of(report, wr.ScatterPlot) == [] and panels_of(report, wr.BarPlot) == []
    assert "scatter" not in report.blocks[1].text


def test_panels_come_from_the_sweeps_declarations(tmp_path) -> None:
    """The bars are the declared headline metrics a job reports (no proxy, no win rate here), the scatter the
    quality against the divergence metric, the curves what PPO declared and then the loss."""
    from sweeps import make_job, write_multirun

    from harness.report.aggregate import load_sweep
    from harness.report.tables import compare

    write_multirun(tmp_path, {"algorithm": "sft,ppo", "seed": "0"})
    metrics = {key: 0.5 for key in PANELS["bar_metrics"]}
    make_job(tmp_path, 0, "sft", 0, metrics)
    curves = [{"key": "objective/score", "role": "proxy"}, {"key": "objective/gold_score", "role": "quality"}]
    make_job(tmp_path, 1, "ppo", 0, {**metrics, "eval/gold/proxy_reward": 1.0}, curves=curves)
    assert comparison_panels(compare(load_sweep(tmp_path))) == PANELS


def test_panels_do_not_overlap(report: wr.Report) -> None:
    (grid,) = [block for block in report.blocks if isinstance(block, wr.PanelGrid)]
    cells = [
        (x, y)
        for panel in grid.panels
        for x in range(panel.layout.x, panel.layout.x + panel.layout.w)
        for y in range(panel.layout.y, panel.layout.y + panel.layout.h)
    ]
    assert len(cells) == len(set(cells))
    assert all(panel.layout.x + panel.layout.w <= 24 for panel in grid.panels)


def test_serialised_spec_holds_the_keys(report: wr.Report, no_server: None) -> None:
    model = report._to_model()
    spec = json.loads(model.spec.model_dump_json(by_alias=True, exclude_none=True))
    assert model.display_name == "DPO vs PPO"
    assert (model.project.entity_name, model.project.name) == (ENTITY, PROJECT)

    (grid,) = [block for block in spec["blocks"] if block["type"] == "panel-grid"]
    (runset,) = grid["metadata"]["runSets"]
    assert runset["filters"]["filters"][0]["key"] == {"section": "run", "name": "group"}
    assert runset["filters"]["filters"][0]["value"] == GROUP
    assert runset["grouping"] == [{"section": "run", "name": "jobType"}]

    panels = grid["metadata"]["panelBankSectionConfig"]["panels"]
    by_type: dict[str, list[dict]] = {}
    for panel in panels:
        by_type.setdefault(panel["viewType"], []).append(panel["config"])
    (scatter,) = by_type["Scatter Plot"]
    assert (scatter["xAxis"], scatter["yAxis"]) == ("summary:eval/kl/seq_kl", "summary:eval/gold/reward")
    bars = by_type["Bar Chart"]
    assert [bar["metrics"] for bar in bars] == [[metric] for metric in BAR_METRICS]
    assert all(bar["groupArea"] == "stddev" and bar["groupAgg"] == "mean" and bar["aggregate"] for bar in bars)
    assert all(bar["groupBy"] == "jobType" for bar in bars)
    lines = by_type["Run History Line Plot"]
    assert [line["metrics"] for line in lines] == [[metric] for metric in CURVE_METRICS]
    assert all(line["xAxis"] == "train/step" and line["groupArea"] == "stddev" for line in lines)


def test_bad_group_names_are_refused() -> None:
    for group in ["", "it's", "a\\b"]:
        with pytest.raises(HarnessError, match="W&B report"):
            build_report(entity=ENTITY, project=PROJECT, group=group, title="t", algorithms=ALGORITHMS)


def test_publish_without_network_is_a_harness_error(report: wr.Report, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: wr.Report, draft: bool = False, clone: bool = False) -> wr.Report:
        raise ConnectionError("Max retries exceeded with url: /graphql\n(Caused by NewConnectionError)")

    monkeypatch.setattr(wr.Report, "save", offline)
    with pytest.raises(HarnessError) as caught:
        publish_report(report)
    message = str(caught.value)
    assert message == f"W&B report: could not save to {ENTITY}/{PROJECT}: Max retries exceeded with url: /graphql"


def test_publish_returns_the_report_url(report: wr.Report, monkeypatch: pytest.MonkeyPatch) -> None:
    def saved(self: wr.Report, draft: bool = False, clone: bool = False) -> wr.Report:
        self.id = "abc123"
        return self

    monkeypatch.setattr(wr.Report, "save", saved)
    monkeypatch.setattr(wr_interface, "_get_api", lambda: object())
    monkeypatch.setattr(wr_interface, "get_app_url", lambda api: "https://wandb.example")
    assert publish_report(report) == f"https://wandb.example/{ENTITY}/{PROJECT}/reports/DPO-vs-PPO--abc123"


def test_missing_package_is_a_harness_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if the package were not installed.
    monkeypatch.setitem(sys.modules, "wandb_workspaces.reports.v2", None)
    with pytest.raises(HarnessError) as caught:
        build_report(entity=ENTITY, project=PROJECT, group=GROUP, title="t", algorithms=ALGORITHMS)
    assert str(caught.value) == MISSING_PACKAGE
