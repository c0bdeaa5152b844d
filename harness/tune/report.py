"""The report's tuning section (entry point `tuning` of harness.report_sections): what equal-budget tuning did for
each method, read from `tuning/summary.json` (harness.tune.sweep) and, with `tune.defaults_on_test`, the untuned
runs in `untuned/`.

Per method: the settings chosen, trials run / pruned / failed, the best validation objective and the method's
defaults' (tuned minus default, on validation: the best of several trials is an optimistic estimate), the trial
that found the best and whether it came in the last fifth of the budget (more trials might still have helped),
the best-so-far curve against trials, and the training tokens of a trial (the budget each trial had). With untuned
runs: tuned minus default on the test prompts, paired by seed, with its interval.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from pathlib import Path
from typing import Any

from harness.objective import OVER_BUDGET_PENALTY
from harness.report.aggregate import t_interval
from harness.report.sections import Section
from harness.results import read_all

SUMMARY = Path("tuning") / "summary.json"
OVER = -OVER_BUDGET_PENALTY / 2  # an objective below this is a trial past the KL budget (harness.objective)
LATE = 0.8  # a best trial past this share of the budget: the budget may not have saturated


def tuning_section(comparison: Any) -> Section | None:
    path = Path(comparison.sweep.root) / SUMMARY
    if not path.is_file():
        return None
    summary = json.loads(path.read_text())
    untuned = _untuned(Path(comparison.sweep.root) / "untuned", summary["objective"])
    rows = [_row(method, record, summary, comparison, untuned) for method, record in summary["methods"].items()]
    header = ["method", "chosen settings", "trials (done / pruned / failed)", "best (validation)",
              "default (validation)", "tuned − default (validation)", "best at trial", "tokens per trial"]
    if untuned:
        header.append("tuned − default (test) [95% CI]")
    cells = [[row[key] for key in _KEYS[: len(header)]] for row in rows]
    intro = _intro(summary)
    late = [row["method"] for row in rows if row["late"]]
    notes = []
    if late:
        notes.append(f"Best trial in the last fifth of the budget (more trials may still help): {', '.join(late)}.")
    curves = "\n".join(f"- {row['method']}: {row['curve_text']}" for row in rows)
    markdown = "\n".join([intro, "", _markdown_table(header, cells), "", *notes, "", "Best so far, trial by trial:",
                          "", curves])
    body = "".join(f"<p>{html.escape(line)}</p>" for line in [intro, *notes])
    body += _html_table(header, cells) + _svg_curves(rows)
    summary_values = {}
    for row in rows:
        if row["best_value"] is not None:
            summary_values[f"tuning/{row['method']}/best_value"] = row["best_value"]
        summary_values[f"tuning/{row['method']}/trials_pruned"] = float(row["pruned"])
    return Section(
        key="tuning",
        title="Equal-budget tuning",
        markdown=markdown,
        html=body,
        tables={"tuning": (header, cells)},
        summary=summary_values,
    )


_KEYS = ["method", "chosen_text", "trials_text", "best_text", "default_text", "gain_text", "best_at_text",
         "tokens_text", "test_gain_text"]


def _intro(summary: dict[str, Any]) -> str:
    budget = summary.get("kl_budget")
    target = f"{summary['objective']} at {summary['kl_metric']} <= {budget}" if budget is not None else summary[
        "objective"]
    return (f"Every method had {summary['trials']} trials (TPE; pruned by {summary['pruner']} at "
            f"{summary['rungs']} snapshots along training), trained at seed {summary['seed']} and scored on the "
            f"validation prompts by {target}; the comparison's tables show each method's best settings on seeds "
            f"{', '.join(map(str, summary['seeds']))}, on the test prompts. Study database: {summary['storage']}.")


def _row(method: str, record: dict[str, Any], summary: dict[str, Any], comparison: Any, untuned: dict) -> dict:
    trials = [trial for trial in record["trials"] if trial["state"] in ("complete", "pruned", "fail")]
    counts = {state: sum(trial["state"] == state for trial in trials) for state in ("complete", "pruned", "fail")}
    ordered = sorted(trials, key=lambda trial: trial["number"])
    best_so_far, best, best_at = [], -math.inf, None
    for index, trial in enumerate(ordered, start=1):
        if trial["state"] == "complete" and trial["value"] is not None and trial["value"] > best:
            best, best_at = trial["value"], index
        best_so_far.append(best if best > -math.inf else None)
    done = len(ordered)
    late = best_at is not None and done >= 5 and best_at > LATE * summary["trials"]
    best_value = best if best > -math.inf else None
    default = record.get("default_value")
    tokens = [trial["tokens_trained"] for trial in ordered if trial.get("tokens_trained") and trial["state"] != "fail"]
    chosen = record.get("chosen") or {}
    row = {
        "method": method,
        "chosen_text": ", ".join(f"{key.rsplit('.', 1)[-1]}={_number(value)}" for key, value in chosen.items())
        or ("its defaults (no trial beat them)" if counts["complete"] else "its defaults (no trial completed)"),
        "trials_text": f"{counts['complete']} / {counts['pruned']} / {counts['fail']}",
        "pruned": counts["pruned"],
        "best_value": best_value,
        "best_text": _value(best_value),
        "default_text": _value(default),
        "gain_text": _gain(best_value, default),
        "best_at_text": "–" if best_at is None else f"{best_at} of {done}" + (" (late)" if late else ""),
        "late": late,
        "tokens_text": f"{statistics.fmean(tokens):,.0f}" if tokens else "–",
        "curve": best_so_far,
        "curve_text": " ".join(_value(value) for value in best_so_far) or "no trials",
        "test_gain_text": _test_gain(method, comparison, untuned, summary["objective"]),
    }
    return row


def _untuned(folder: Path, objective: str) -> dict[str, dict[str, float]]:
    """Method -> seed -> objective of the untuned runs (tune.defaults_on_test), if any."""
    if not folder.is_dir():
        return {}
    found: dict[str, dict[str, float]] = {}
    for result in read_all(folder):
        if result.status == "complete" and objective in result.metrics:
            found.setdefault(str(result.algorithm), {})[str(result.seed)] = float(result.metrics[objective])
    return found


def _test_gain(method: str, comparison: Any, untuned: dict, objective: str) -> str:
    defaults = untuned.get(method)
    group = next((group for group in comparison.groups if group.algorithm == method and not group.params), None)
    if not defaults or group is None:
        return "–"
    tuned = group.values(objective)
    seeds = sorted(set(tuned) & set(defaults))
    if not seeds:
        return "–"
    diffs = [tuned[seed] - defaults[seed] for seed in seeds]
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return f"{_signed(mean)} (1 seed)"
    scale = statistics.stdev(diffs) / math.sqrt(len(diffs))
    low, high = t_interval(0.95, len(diffs) - 1, mean, scale) if scale > 0 else (mean, mean)
    return f"{_signed(mean)} [{_signed(low)}, {_signed(high)}]"


def _value(value: float | None) -> str:
    """An objective: past the KL budget it is a penalty, not a reward (harness.objective), and says so."""
    if value is not None and value < OVER:
        return "over KL budget"
    return _number(value)


def _gain(best: float | None, default: float | None) -> str:
    if best is None or default is None:
        return "–"
    if best < OVER or default < OVER:
        return "both over KL budget" if best < OVER and default < OVER else (
            "defaults over KL budget" if default < OVER else "tuned over KL budget")
    return _signed(best - default)


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:.3f}"
    return str(value)


def _signed(value: float) -> str:
    return f"{value:+.3f}"


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    table = f'<table class="tuning"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return f'<div class="table-scroll">{table}</div>'


CHART = (180, 70, 6)  # width, height, padding of a best-so-far chart (px)


def _xy(index: int, count: int, value: float, low: float, span: float) -> str:
    width, height, pad = CHART
    x = pad + (index - 1) / (count - 1) * (width - 2 * pad)
    y = height - pad - (value - low) / span * (height - 2 * pad)
    return f"{x:.1f},{y:.1f}"


def _svg_curves(rows: list[dict[str, Any]]) -> str:
    """Best-so-far against trials, one small chart per method (inline SVG: the page stays one file)."""
    width, height, _ = CHART
    charts = []
    for row in rows:
        curve = enumerate(row["curve"], start=1)
        points = [(index, value) for index, value in curve if value is not None and value >= OVER]
        if not points:
            continue
        values = [value for _, value in points]
        low, high = min(values), max(values)
        span, count = (high - low) or 1.0, max(len(row["curve"]), 2)
        line = " ".join(_xy(index, count, value, low, span) for index, value in points)
        title = html.escape(f"{row['method']}: best so far {row['curve_text']}")
        charts.append(
            f'<figure class="tuning-curve"><svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'role="img" aria-label="{title}"><title>{title}</title>'
            f'<polyline fill="none" stroke="currentColor" stroke-width="2" points="{line}"/></svg>'
            f"<figcaption>{html.escape(row['method'])}: {_number(low)} → {_number(high)} over "
            f"{len(row['curve'])} trials</figcaption></figure>"
        )
    if not charts:
        return ""
    return '<div class="tuning-curves" style="display:flex;flex-wrap:wrap;gap:.8rem">' + "".join(charts) + "</div>"
