"""The sample browser (harness/report/samples.py): used in Chromium like a reader would, on the shared smoke sweep
(base, sft, dpo, seed 0), and checked against the jobs' samples.jsonl; model output planted with markup stays text;
the same samples reach W&B as a table with one column per method; the disagreement ordering on hand-made rows."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import logged_comparison_offline
from smoke_sweep import shared_smoke_sweep

from harness.report import Report, build_report
from harness.report.samples import (
    MAX_PAGE_CHARS,
    JobSamples,
    align,
    disagreement,
    embed_json,
    page_data,
    to_html,
)

METHODS = ["base", "sft", "dpo"]  # the smoke sweep's groups, in sweep order


# -- the sweep as its files say ----------------------------------------------------------------------------------
def samples_by_job(sweep_dir: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(algorithm, seed) -> the rows of that job's samples.jsonl, read straight from the files."""
    found = {}
    for result_file in sorted(sweep_dir.glob("*/result.json")):
        result = json.loads(result_file.read_text())
        lines = (result_file.parent / "samples.jsonl").read_text().splitlines()
        found[(result["algorithm"], str(result["seed"]))] = [json.loads(line) for line in lines]
    return found


def spreads(rows: dict[str, list[dict[str, Any]]]) -> list[float]:
    """Per prompt, max - min of gold_reward over the methods given (method -> rows)."""
    columns = list(rows.values())
    return [
        max(col[i]["gold_reward"] for col in columns) - min(col[i]["gold_reward"] for col in columns)
        for i in range(len(columns[0]))
    ]


def most_disagreement_first(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def shown_number(value: float) -> str:
    """A number as the page prints it (JavaScript's toFixed(3): halves away from zero, on the exact binary value)."""
    return format(Decimal(value or 0.0).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP), "f")


def shown_score(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value) if isinstance(value, int) else shown_number(value)


# -- the page as a reader sees it --------------------------------------------------------------------------------
_LIST_JS = """() => [...document.querySelectorAll("#sample-browser button.sb-prompt")].map((button) => ({
    index: Number(button.dataset.index),
    text: button.querySelector(".sb-text").textContent,
    spread: button.querySelector(".sb-spread").textContent,
}))"""

_DETAIL_JS = """() => {
    const detail = document.querySelector("#sample-browser .sb-detail");
    return {
        prompt: detail.querySelector(".sb-prompt-text").textContent,
        facts: detail.querySelector(".sb-facts").textContent,
        methods: [...detail.querySelectorAll(".sb-method")].map((card) => ({
            name: card.querySelector("h4").textContent,
            completion: card.querySelector(".sb-completion")?.textContent ?? null,
            missing: card.querySelector(".sb-missing")?.textContent ?? null,
            scores: Object.fromEntries([...card.querySelectorAll("table.sb-scores tr")].map((row) => {
                const cell = row.querySelector("td");
                return [row.dataset.key, {text: cell.textContent, value: cell.dataset.value ?? null,
                                          marked: cell.className}];
            })),
        })),
    };
}"""


@contextmanager
def opened(page: Any, path: Path) -> Iterator[dict[str, list]]:
    """Load the report in `page` and record, until the block ends (interactions included), every request besides
    the page itself (refused, never sent) and every console error or uncaught exception."""
    url = path.resolve().as_uri()
    seen: dict[str, list] = {"requests": [], "errors": []}

    def on_route(route: Any) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            seen["requests"].append(route.request.url)
            route.abort("blockedbyclient")

    def on_console(message: Any) -> None:
        if message.type == "error":
            seen["errors"].append(message.text)

    def on_page_error(exc: Any) -> None:
        seen["errors"].append(f"uncaught: {exc}")

    page.route("**/*", on_route)
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        page.goto(url, wait_until="load")
        yield seen
    finally:
        page.unroute("**/*")
        page.remove_listener("console", on_console)
        page.remove_listener("pageerror", on_page_error)


def shown_list(page: Any) -> list[dict[str, Any]]:
    return page.evaluate(_LIST_JS)


def shown_detail(page: Any) -> dict[str, Any]:
    return page.evaluate(_DETAIL_JS)


def click_prompt(page: Any, index: int) -> None:
    page.locator(f'#sample-browser button.sb-prompt[data-index="{index}"]').click()


def assert_shows(detail: dict[str, Any], prompt: str, rows: dict[str, dict[str, Any] | None]) -> None:
    """The detail shows `prompt` and, per method (in sweep order), its completion and every score of its row."""
    assert detail["prompt"] == prompt
    assert [card["name"] for card in detail["methods"]] == list(rows)
    for card, row in zip(detail["methods"], rows.values(), strict=True):
        if row is None:
            assert card["completion"] is None and card["missing"], card
            continue
        assert card["completion"] == (row["completion"] or "(empty completion)"), card["name"]
        scores = {key: value for key, value in row.items() if key not in ("prompt", "completion")}
        scores = {key: value for key, value in scores.items() if isinstance(value, int | float)}
        assert set(card["scores"]) == set(scores), card["name"]
        for key, value in scores.items():
            cell = card["scores"][key]
            assert cell["text"] == shown_score(value), (card["name"], key)
            if not isinstance(value, bool):
                assert float(cell["value"]) == value, (card["name"], key)


# -- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return shared_smoke_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def rebuilt(smoke, tmp_path_factory) -> Report:
    """The smoke sweep's report rebuilt on a copy (so it has the browser whatever built the shared one)."""
    return build_report(smoke.copy(tmp_path_factory.mktemp("rebuilt")))


@pytest.fixture(scope="module")
def page() -> Iterator[Any]:
    from browser import chromium_page

    with chromium_page() as page:
        yield page


def add_seed_one(sweep_dir: Path, methods: tuple[str, ...]) -> None:
    """A second seed for `methods`: each job copied as seed 1, its completions marked and its gold rewards
    changed (times 3, 4, ... modulo 1, so the spreads and their order differ from seed 0's)."""
    folders = {json.loads(f.read_text())["algorithm"]: f.parent for f in sweep_dir.glob("*/result.json")}
    for position, method in enumerate(methods):
        target = sweep_dir / f"{10 + position}_{method}_seed1"
        shutil.copytree(folders[method], target)
        result = json.loads((target / "result.json").read_text())
        result["seed"] = 1
        result["overrides"] = [("seed=1" if o == "seed=0" else o) for o in result["overrides"]]
        (target / "result.json").write_text(json.dumps(result))
        rows = [json.loads(line) for line in (target / "samples.jsonl").read_text().splitlines()]
        for row in rows:
            row["completion"] = f"(seed 1) {row['completion']}"
            row["gold_reward"] = (row["gold_reward"] * (3 + position)) % 1.0
        (target / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


# -- (1) the browser, used like a reader would ------------------------------------------------------------------
def test_browser_shows_each_methods_samples_and_sorts_by_disagreement(rebuilt: Report, page) -> None:
    """Search, sort by disagreement, pick a prompt: what the page shows is what samples.jsonl holds."""
    jobs = samples_by_job(rebuilt.sweep.root)
    rows = {method: jobs[(method, "0")] for method in METHODS}
    prompts = [row["prompt"] for row in rows["base"]]
    assert all([row["prompt"] for row in column] == prompts for column in rows.values())
    spread = spreads(rows)
    assert len(set(spread)) > 3, "the smoke sweep's methods should disagree on some prompts"
    assert "## Samples side by side" in rebuilt.markdown and "max - min of gold_reward" in rebuilt.markdown

    with opened(page, rebuilt.html) as seen:
        browser = page.locator("#sample-browser")
        assert "spread (max − min) of gold_reward across methods" in browser.locator("p.meta").first.text_content()
        assert [item["text"] for item in shown_list(page)] == prompts  # evaluation order first
        assert page.locator("#sample-browser .sb-count").text_content() == f"{len(prompts)} of {len(prompts)} prompts"
        assert page.locator("select.sb-seed option").all_text_contents() == ["seed 0"]
        assert_shows(shown_detail(page), prompts[0], {m: rows[m][0] for m in METHODS})

        page.locator("input.sb-search").press_sequentially("DiaLoGue")  # substring, any case
        matching = [i for i, prompt in enumerate(prompts) if "dialogue" in prompt.lower()]
        assert 0 < len(matching) < len(prompts)
        assert [item["index"] for item in shown_list(page)] == matching
        assert shown_detail(page)["prompt"] == prompts[matching[0]]  # the first match is shown

        page.locator("select.sb-sort").select_option(label="where methods disagree most")
        listed = shown_list(page)
        assert [item["index"] for item in listed] == [i for i in most_disagreement_first(spread) if i in matching]
        assert [item["spread"] for item in listed] == [shown_number(spread[item["index"]]) for item in listed]

        page.locator("input.sb-search").fill("")
        order = most_disagreement_first(spread)
        assert [item["index"] for item in shown_list(page)] == order
        assert [item["text"] for item in shown_list(page)] == [prompts[i] for i in order]

        for index in (order[1], order[-1]):  # a prompt where they disagree, and one where they agree
            click_prompt(page, index)
            detail = shown_detail(page)
            assert_shows(detail, prompts[index], {m: rows[m][index] for m in METHODS})
            assert f"prompt #{index + 1}" in detail["facts"] and shown_number(spread[index]) in detail["facts"]
        click_prompt(page, order[0])
        marked = {card["name"]: card["scores"]["gold_reward"]["marked"] for card in shown_detail(page)["methods"]}
        gold = {m: rows[m][order[0]]["gold_reward"] for m in METHODS}
        assert marked[max(gold, key=gold.get)] == "best" and marked[min(gold, key=gold.get)] == "worst"
    assert seen == {"requests": [], "errors": []}


def test_browser_picks_a_seed(smoke, page, tmp_path: Path) -> None:
    """With two seeds (sft has only seed 0) the lowest is shown first; picking seed 1 shows its completions, its
    spreads (over the methods that have seed 1) and its order, and says sft has no sample for it."""
    sweep_dir = smoke.copy(tmp_path)
    add_seed_one(sweep_dir, ("base", "dpo"))
    report = build_report(sweep_dir)
    jobs = samples_by_job(sweep_dir)
    prompts = [row["prompt"] for row in jobs[("base", "0")]]
    seed_one = {"base": jobs[("base", "1")], "dpo": jobs[("dpo", "1")]}
    order = most_disagreement_first(spreads(seed_one))
    assert order != most_disagreement_first(spreads({m: jobs[(m, "0")] for m in METHODS}))

    with opened(page, report.html) as seen:
        assert page.locator("select.sb-seed option").all_text_contents() == ["seed 0", "seed 1"]
        assert shown_detail(page)["methods"][0]["completion"] == jobs[("base", "0")][0]["completion"]
        page.locator("select.sb-sort").select_option(label="where methods disagree most")
        page.locator("select.sb-seed").select_option(label="seed 1")
        assert [item["index"] for item in shown_list(page)] == order
        click_prompt(page, order[2])
        expected = {"base": seed_one["base"][order[2]], "sft": None, "dpo": seed_one["dpo"][order[2]]}
        detail = shown_detail(page)
        assert_shows(detail, prompts[order[2]], expected)
        assert detail["methods"][1]["missing"] == "no sample for seed 1"
        assert "seed 1" in detail["facts"]
    assert seen == {"requests": [], "errors": []}


def pressed(page: Any) -> int:
    """The prompt chosen in the list, and that its button is in view inside the list (which scrolls on its own)."""
    return page.evaluate(
        """() => {
            const button = document.querySelector('#sample-browser button.sb-prompt[aria-pressed="true"]');
            const item = button.getBoundingClientRect();
            const list = button.closest("ol").getBoundingClientRect();
            if (item.top < list.top - 0.5 || item.bottom > list.bottom + 0.5) return -1;
            return Number(button.dataset.index);
        }"""
    )


def notice(page: Any) -> str | None:
    shown = page.locator("#sample-browser .sb-notice")
    return shown.text_content() if shown.count() else None


def test_a_new_seed_keeps_the_prompt(smoke, page, tmp_path: Path) -> None:
    """Picking another seed keeps the prompt on screen, in evaluation order and sorted by disagreement alike (the
    list scrolls to it); a prompt the new seed has no sample for gives way to the nearest one that has, and the page
    says so until the reader picks something else."""
    sweep_dir = smoke.copy(tmp_path)
    add_seed_one(sweep_dir, ("base", "dpo"))
    jobs = samples_by_job(sweep_dir)
    prompts = [row["prompt"] for row in jobs[("base", "0")]]
    unique = [i for i, prompt in enumerate(prompts) if prompts.count(prompt) == 1]
    kept, dropped = unique[-1], unique[2]  # a late prompt (below the list's fold), and one seed 1 lacks
    assert dropped + 1 in unique and dropped + 1 != kept
    for folder in sweep_dir.glob("*_seed1"):  # neither seed-1 job has a sample for `dropped`
        lines = (folder / "samples.jsonl").read_text().splitlines()
        (folder / "samples.jsonl").write_text("".join(line + "\n" for i, line in enumerate(lines) if i != dropped))
    report = build_report(sweep_dir)
    jobs = samples_by_job(sweep_dir)
    seed_one = {method: {row["prompt"]: row for row in jobs[(method, "1")]} for method in ("base", "dpo")}

    with opened(page, report.html) as seen:
        click_prompt(page, kept)
        page.locator("select.sb-seed").select_option(label="seed 1")
        detail = shown_detail(page)
        expected = {"base": seed_one["base"][prompts[kept]], "sft": None, "dpo": seed_one["dpo"][prompts[kept]]}
        assert_shows(detail, prompts[kept], expected)
        assert "seed 1" in detail["facts"] and pressed(page) == kept and notice(page) is None

        page.locator("select.sb-sort").select_option(label="where methods disagree most")  # a new order: its top
        order = [item["index"] for item in shown_list(page)]
        click_prompt(page, order[-2])
        page.locator("select.sb-seed").select_option(label="seed 0")
        assert shown_detail(page)["prompt"] == prompts[order[-2]] and pressed(page) == order[-2]
        assert [item["index"] for item in shown_list(page)] != order  # seed 0's order, the same prompt chosen

        page.locator("select.sb-sort").select_option(label="evaluation order")
        click_prompt(page, dropped)
        page.locator("select.sb-seed").select_option(label="seed 1")
        assert shown_detail(page)["prompt"] == prompts[dropped + 1] and pressed(page) == dropped + 1
        assert notice(page) == (
            f"Seed 1 has no sample for prompt #{dropped + 1}: showing prompt #{dropped + 2}, the nearest that has."
        )
        click_prompt(page, kept)
        assert notice(page) is None
    assert seen == {"requests": [], "errors": []}


# -- (2) model output is text -----------------------------------------------------------------------------------
PLANTED_SCRIPT = '</script><img src=x onerror="window.pwned=1">'
PLANTED_BOLD = "<b>bold</b>"
PLANTED_PROMPT = "<script>window.pwned = 2</script> the film <!-- is"


def test_markup_in_completions_and_prompts_stays_text(smoke, page, tmp_path: Path) -> None:
    sweep_dir = smoke.copy(tmp_path)
    for folder in sorted(sweep_dir.glob("*_seed0")):
        rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
        rows[2]["prompt"] = PLANTED_PROMPT  # every job: the prompts still line up
        if folder.name.endswith("dpo_seed0"):
            rows[0]["completion"], rows[1]["completion"] = PLANTED_SCRIPT, PLANTED_BOLD
        (folder / "samples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = build_report(sweep_dir)
    page_text = report.html.read_text()
    assert PLANTED_SCRIPT not in page_text and PLANTED_BOLD not in page_text
    assert "window.pwned = 2</script>" not in page_text

    with opened(page, report.html) as seen:
        for index, planted in ((0, PLANTED_SCRIPT), (1, PLANTED_BOLD)):
            click_prompt(page, index)
            assert shown_detail(page)["methods"][2]["completion"] == planted
        page.locator("input.sb-search").press_sequentially("<script>")
        assert [item["text"] for item in shown_list(page)] == [PLANTED_PROMPT]
        assert shown_detail(page)["prompt"] == PLANTED_PROMPT
        created = page.evaluate(
            """() => ({
                pwned: typeof window.pwned,
                markup: document.querySelectorAll("#sample-browser img, #sample-browser b").length,
                scripts: document.querySelectorAll("#sample-browser script").length,
            })"""
        )
    assert created == {"pwned": "undefined", "markup": 0, "scripts": 2}  # the data and the browser's own code
    assert seen == {"requests": [], "errors": []}


# -- (3) the W&B table ------------------------------------------------------------------------------------------
def test_samples_reach_wandb_as_a_table_with_one_column_per_method(rebuilt: Report, tmp_path: Path) -> None:
    run_dir, run = logged_comparison_offline(rebuilt, tmp_path / "wandb_out")
    logged = {key: value for row in run["history"] for key, value in row.items()}
    assert logged["comparison/samples/_type"] == "table-file" and logged["comparison/samples/nrows"] == 32
    table = json.loads((run_dir / "files" / logged["comparison/samples/path"]).read_text())
    columns = table["columns"]
    assert columns[:3] == ["prompt", "seed", "base"] and all(method in columns for method in METHODS)
    assert {"sft/gold_reward", "dpo/seq_kl", "base/completion_tokens"} <= set(columns)
    jobs = samples_by_job(rebuilt.sweep.root)
    for method in METHODS:
        expected = jobs[(method, "0")]
        assert [row[0] for row in table["data"]] == [row["prompt"] for row in expected]
        assert [row[columns.index(method)] for row in table["data"]] == [row["completion"] for row in expected]
        gold = [row[columns.index(f"{method}/gold_reward")] for row in table["data"]]
        assert gold == pytest.approx([row["gold_reward"] for row in expected])
    assert run["summary"]["samples/prompts"] == 32


# -- (4) disagreement and alignment on hand-made rows ------------------------------------------------------------
def test_disagreement_is_the_spread_of_the_scores_present() -> None:
    assert disagreement([0.25, 0.75, 0.5]) == pytest.approx(0.5)
    assert disagreement([0.4, None, 0.1]) == pytest.approx(0.3)
    assert disagreement([0.3, None]) is None  # one method cannot disagree with itself
    assert disagreement([]) is None


def _rows(gold: list[float | None], prefix: str) -> list[dict[str, Any]]:
    return [
        {"prompt": f"p{i}", "completion": f"{prefix}{i}", "gold_reward": g, "grammatical": True, "completion_tokens": 3}
        for i, g in enumerate(gold)
    ]


def test_prompts_are_ordered_by_how_much_the_methods_disagree() -> None:
    """Gold rewards per prompt for methods a, b, c:
    p0: .5 .5 .5 -> 0;  p1: .1 .9 .5 -> .8;  p2: .2 NaN .6 -> .4 (NaN is no score);  p3: .3 .7 .3 -> .4 (ties p2:
    evaluation order);  p4: .9 None None -> no spread (one score), last.  Order: p1, p2, p3, p0, p4."""
    nan = float("nan")
    table = align(
        [
            JobSamples("a", "0", _rows([0.5, 0.1, 0.2, 0.3, 0.9], "a"), "a0"),
            JobSamples("b", "0", _rows([0.5, 0.9, nan, 0.7, None], "b"), "b0"),
            JobSamples("c", "0", _rows([0.5, 0.5, 0.6, 0.3, None], "c"), "c0"),
        ]
    )
    assert table.quality == "gold_reward" and table.notes == []
    assert [table.spread(i, "0") for i in range(5)] == pytest.approx([0.0, 0.8, 0.4, 0.4, None])
    assert table.by_disagreement("0") == [1, 2, 3, 0, 4]
    assert table.scores == ["gold_reward", "completion_tokens", "grammatical"]
    assert table.kinds == {"gold_reward": "float", "completion_tokens": "int", "grammatical": "bool"}
    data = page_data(table)
    assert data["prompts"][2]["samples"][0][1]["s"][0] is None  # NaN is no number in the page's JSON either


def test_a_judge_score_stands_in_for_the_gold_reward_and_without_either_there_is_no_spread() -> None:
    judged = [{"prompt": "p", "completion": m, "judge_score": s} for m, s in (("a", 1.5), ("b", -0.5))]
    table = align([JobSamples(row["completion"], "0", [row]) for row in judged])
    assert table.quality == "judge_score" and table.spread(0, "0") == pytest.approx(2.0)
    bare = align([JobSamples(m, "0", [{"prompt": "p", "completion": m, "completion_tokens": 2}]) for m in "ab"])
    assert bare.quality is None and bare.spread(0, "0") is None
    assert "disagreement cannot be measured" in bare.notes[0]


def test_prompts_in_another_order_are_matched_by_text() -> None:
    """b's prompts come in another order, with one asked twice: each occurrence meets its own."""
    a = [{"prompt": p, "completion": f"a-{p}-{k}", "gold_reward": 0.1} for k, p in enumerate(["x", "y", "x"])]
    b = [{"prompt": p, "completion": f"b-{p}-{k}", "gold_reward": 0.9} for k, p in enumerate(["y", "x", "x", "z"])]
    table = align([JobSamples("a", "0", a, "job_a"), JobSamples("b", "0", b, "job_b")])
    assert table.prompts == ["x", "y", "x", "z"]
    assert [(table.sample(i, "a", "0") or {}).get("completion") for i in range(4)] == ["a-x-0", "a-y-1", "a-x-2", None]
    assert [table.sample(i, "b", "0")["completion"] for i in range(4)] == ["b-x-1", "b-y-0", "b-x-2", "b-z-3"]
    assert "matched by prompt text" in table.notes[0] and "job_b" in table.notes[0]


def test_the_page_stays_small_for_a_large_sweep() -> None:
    """256 prompts x 6 methods x 3 seeds of 500-character completions all fit; 2,000-character ones are capped."""

    def sweep(length: int) -> Any:
        jobs = []
        for method in range(6):
            for seed in range(3):
                rows = [
                    {"prompt": f"prompt {i}", "completion": "w" * length, "gold_reward": (i * method % 7) / 7}
                    for i in range(256)
                ]
                jobs.append(JobSamples(f"method{method}", str(seed), rows))
        return align(jobs)

    started = time.perf_counter()
    page = to_html(sweep(500))
    assert len(page.encode()) < 4_500_000 and time.perf_counter() - started < 5
    assert page.count('"text":"prompt ') == 256
    capped = page_data(sweep(2_000))
    assert 0 < len(capped["prompts"]) < 256
    assert sum(len(s["c"]) for p in capped["prompts"] for seed in p["samples"] for s in seed) <= MAX_PAGE_CHARS
    assert f"first {len(capped['prompts'])} of 256 prompts" in capped["notes"][-1]


def test_embedded_json_cannot_close_its_script_element() -> None:
    text = embed_json({"c": "</script><script>alert(1)</script><!--"})
    assert "<" not in text and json.loads(text) == {"c": "</script><script>alert(1)</script><!--"}
