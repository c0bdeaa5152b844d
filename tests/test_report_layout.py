"""report.html on a phone (390 x 844, a touch screen that honours the page's viewport, as a phone's browser does) and
on a desktop (1400 x 900), in Chromium: the page itself never scrolls sideways, and whatever is wider than the screen
sits in its own horizontal scroll box (a wide table's, a wide figure's) that fits the screen; text wraps; figures fit;
every column of a wide table can be scrolled to; the sample browser's completions stack on the phone and stand side by
side on the desktop. On the shared smoke sweep's report (rebuilt on a copy), and on a hand-made sweep whose table is
wider than the desktop.

HARNESS_TEST_SCREENSHOTS=<folder>: also save what each screen shows there (the whole page, the table in view, the
sample browser in view), to look at.
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from smoke_sweep import shared_smoke_sweep
from sweeps import make_job, suite_headline, write_multirun

from harness.report import build_report

SCREENS = {"phone": ((390, 844), True), "desktop": ((1400, 900), False)}  # (width, height) in CSS px, a phone's

# What sticks out: every rendered element past the screen's left or right edge that no horizontal scroll box fitting
# the screen holds; text (headings, paragraphs, list items, captions) past an edge at all; and the page's own width.
_LAYOUT_JS = """() => {
    const width = document.documentElement.clientWidth;
    const scrollsX = (el) => ["auto", "scroll"].includes(getComputedStyle(el).overflowX);
    const scrollBox = (el) => {
        for (let up = el.parentElement; up && up !== document.body; up = up.parentElement) {
            if (scrollsX(up)) return up;
        }
        return null;
    };
    const fits = (el) => {
        const box = el.getBoundingClientRect();
        return box.left >= -0.5 && box.right <= width + 0.5;
    };
    const rendered = (el) => { const box = el.getBoundingClientRect(); return box.width > 0 || box.height > 0; };
    const describe = (el) => {
        const box = el.getBoundingClientRect();
        const classes = typeof el.className === "string" ? el.className.trim().split(/ +/).join(".") : "";
        const name = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (classes ? "." + classes : "");
        return `${name} [${Math.round(box.left)}, ${Math.round(box.right)}]`;
    };
    const all = [...document.body.querySelectorAll("*")].filter(rendered);
    const loose = all.filter((el) => !fits(el) && !(scrollBox(el) && fits(scrollBox(el)))).map(describe);
    const text = [...document.body.querySelectorAll("h1, h2, h3, h4, p, li, figcaption")]
        .filter((el) => rendered(el) && !fits(el)).map(describe);
    return {
        innerWidth: window.innerWidth,
        pageWidth: document.documentElement.scrollWidth,
        width,
        loose,
        text,
    };
}"""

# Each table of the report's own: its scroll box, whether the table overflows it, and whether the last column's right
# edge lies inside the box once scrolled to the end (no column cut off for good).
_TABLES_JS = """() => [...document.querySelectorAll("table.comparison, table.pairwise, table.equal-kl, table.cost")]
    .map((table) => {
        const box = table.parentElement;
        const before = box.scrollLeft;
        box.scrollLeft = box.scrollWidth;
        const cells = table.tHead.rows[0].cells;
        const last = cells[cells.length - 1].getBoundingClientRect();
        const edge = box.getBoundingClientRect();
        const reached = last.right <= edge.right + 0.5 && last.left >= edge.left - 0.5;
        box.scrollLeft = before;
        return {
            table: table.className,
            box: box.className,
            scrolls: getComputedStyle(box).overflowX,
            overflows: box.scrollWidth > box.clientWidth,
            lastColumnReached: reached,
        };
    })"""

_FIGURES_JS = """() => [...document.querySelectorAll("figure")].map((figure) => {
    const image = figure.querySelector("img").getBoundingClientRect();
    const box = figure.querySelector(".figure-scroll");
    return {
        id: figure.id,
        wide: figure.classList.contains("wide"),
        width: image.width,
        height: image.height,
        boxWidth: box.clientWidth,
        scrolls: getComputedStyle(box).overflowX,
    };
})"""

_SAMPLES_JS = """() => {
    const edges = (el) => { const box = el.getBoundingClientRect(); return {left: box.left, right: box.right,
                                                                           top: box.top, bottom: box.bottom}; };
    return {
        list: edges(document.querySelector("#sample-browser ol.sb-prompts")),
        detail: edges(document.querySelector("#sample-browser .sb-detail")),
        cards: [...document.querySelectorAll("#sample-browser .sb-method")].map(edges),
    };
}"""


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> Path:
    """The smoke sweep's report.html, rebuilt on a copy (so it is this code's page, whatever built the shared one)."""
    smoke = shared_smoke_sweep(tmp_path_factory)
    return build_report(smoke.copy(tmp_path_factory.mktemp("layout"))).html


@pytest.fixture(scope="module")
def wide_report(tmp_path_factory) -> Path:
    """A hand-made sweep of six methods with every headline metric of the repository's suites: a comparison table
    wider than a 1400 px screen."""
    root = tmp_path_factory.mktemp("wide")
    methods = ["base", "sft", "dpo", "ppo", "grpo", "best_of_n"]
    write_multirun(root, {"algorithm": ",".join(methods), "seed": "0,1,2"})
    keys = [entry["key"] for entry in suite_headline()]
    for number, (method, seed) in enumerate((m, s) for m in methods for s in range(3)):
        draw = random.Random(number)
        metrics = {key: 0.3 + 0.05 * seed + 0.4 * draw.random() for key in keys}
        make_job(root, number, method, seed, metrics)
    return build_report(root).html


@pytest.fixture(scope="module", params=list(SCREENS))
def screen(request) -> Iterator[tuple[str, Any]]:
    from browser import chromium_page

    viewport, phone = SCREENS[request.param]
    with chromium_page(viewport=viewport, phone=phone) as page:
        yield request.param, page


def opened(page: Any, path: Path) -> None:
    """Load the page; only itself may load (a self-contained report asks for nothing else)."""
    url = path.resolve().as_uri()
    page.route("**/*", lambda route: route.continue_() if route.request.url == url else route.abort("blockedbyclient"))
    try:
        page.goto(url, wait_until="load")
    finally:
        page.unroute("**/*")


def save_screenshots(page: Any, name: str) -> None:
    folder = os.environ.get("HARNESS_TEST_SCREENSHOTS")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(folder) / f"{name}-page.png"), full_page=True)
    for part, selector in (("table", "h2"), ("samples", "#sample-browser"), ("figures", "figure")):
        if page.locator(selector).count():
            page.evaluate("(selector) => document.querySelector(selector).scrollIntoView()", selector)
            page.screenshot(path=str(Path(folder) / f"{name}-{part}.png"))
    page.evaluate("() => window.scrollTo(0, 0)")


def assert_fits(page: Any, screen_name: str) -> dict[str, Any]:
    layout = page.evaluate(_LAYOUT_JS)
    width = SCREENS[screen_name][0][0]
    assert layout["innerWidth"] == width, "the page is laid out at the screen's width (its viewport meta honoured)"
    assert layout["pageWidth"] <= layout["width"], f"the page scrolls sideways: {layout}"
    assert layout["loose"] == [], "wider than the screen outside a scroll box that fits it"
    assert layout["text"] == [], "text runs past the screen's edge"
    return layout


def test_the_smoke_report_fits_the_screen(smoke_report: Path, screen) -> None:
    name, page = screen
    opened(page, smoke_report)
    save_screenshots(page, f"smoke-{name}")
    assert_fits(page, name)

    tables = page.evaluate(_TABLES_JS)
    assert "comparison" in [table["table"] for table in tables]
    for table in tables:
        assert table["box"] == "table-scroll" and table["scrolls"] == "auto", table
        assert table["lastColumnReached"], table
    comparison = next(table for table in tables if table["table"] == "comparison")
    # on a phone the main table is wider than the screen: it scrolls inside its box, the page stays put
    assert comparison["overflows"] == (name == "phone"), comparison

    figures = page.evaluate(_FIGURES_JS)
    assert figures, "the smoke report has figures"
    for figure in figures:
        assert figure["scrolls"] == "auto", figure
        if figure["wide"] and name == "phone":  # a row of panels: full height, swiped sideways in its box
            assert figure["height"] >= 200 and figure["width"] > figure["boxWidth"], figure
        else:  # scaled to fit its column
            assert figure["width"] <= figure["boxWidth"] + 0.5, figure

    samples = page.evaluate(_SAMPLES_JS)
    cards, list_box, detail = samples["cards"], samples["list"], samples["detail"]
    assert len(cards) == 3  # base, sft, dpo
    if name == "phone":  # the prompt list above the completions, which stack one under the other
        assert list_box["bottom"] <= detail["top"]
        assert len({round(card["left"]) for card in cards}) == 1
        assert all(above["bottom"] <= below["top"] for above, below in itertools.pairwise(cards))
    else:  # the list beside the completions, which stand side by side
        assert list_box["right"] <= detail["left"] and abs(list_box["top"] - detail["top"]) < 1
        assert len({round(card["top"]) for card in cards}) == 1
        assert all(left["right"] <= right["left"] for left, right in itertools.pairwise(cards))


def test_a_table_wider_than_the_desktop_scrolls_in_its_own_box(wide_report: Path, screen) -> None:
    name, page = screen
    opened(page, wide_report)
    save_screenshots(page, f"wide-{name}")
    assert_fits(page, name)
    (comparison,) = [table for table in page.evaluate(_TABLES_JS) if table["table"] == "comparison"]
    assert comparison["overflows"] and comparison["lastColumnReached"], comparison
    # the page scrolled to the table's end stays where it was: only the table's box moved
    box = page.locator("table.comparison").locator("xpath=..")
    box.evaluate("(box) => { box.scrollLeft = box.scrollWidth; }")
    assert page.evaluate("() => [window.scrollX, document.documentElement.scrollWidth <= window.innerWidth]") == [
        0,
        True,
    ]


def test_without_a_viewport_meta_a_phone_draws_the_page_980_px_wide(screen, tmp_path: Path) -> None:
    """What the report's `<meta name="viewport">` prevents, so that the checks above mean something: a phone's browser
    lays a page without one out 980 px wide and shrinks it to the screen (a desktop's, at the window's width)."""
    name, page = screen
    bare = tmp_path / "bare.html"
    bare.write_text('<!doctype html><html><head><meta charset="utf-8"><title>bare</title></head><body>x</body></html>')
    opened(page, bare)
    assert page.evaluate("() => window.innerWidth") == (980 if name == "phone" else SCREENS[name][0][0])
