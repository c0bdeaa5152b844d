"""Look at a self-contained HTML report in a real headless browser (the system Chromium, driven by Playwright).

Not a test module: tests import it (`from browser import chromium_page, render_report`).

    with chromium_page() as page:
        seen = render_report(page, tmp_path / "report.html")

Chromium comes from Debian (`make browser`, i.e. `apt-get install chromium`), not from `playwright install`
(whose download host is unreachable here). Where Playwright or Chromium is missing, the helpers skip the calling
test with the reason; a Chromium that is there but will not start is a failure, not a skip.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path(os.environ.get("HARNESS_CHROMIUM", "/usr/bin/chromium"))
# Headless, no sandbox (we run as root), and nothing that phones home: the network is closed, and Chromium's
# background services (component updater, sync, QUIC probes) otherwise stall or log errors trying to reach it.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
TIMEOUT_MS = 30_000

# Runs in the page after `load`: what a reader of the report would see.
_INSPECT_JS = """() => {
    const text = (el) => el.textContent.trim();
    const tables = [...document.querySelectorAll("table.comparison")].map((table) => {
        const headRows = table.tHead ? [...table.tHead.rows] : [];
        let bodyRows = [...table.tBodies].flatMap((body) => [...body.rows]);
        const first = bodyRows[0];
        if (!headRows.length && first && first.querySelector("th") && !first.querySelector("td")) {
            headRows.push(bodyRows.shift());  // a header row written without <thead>
        }
        return {
            headers: headRows.flatMap((row) => [...row.cells].map(text)),
            rows: bodyRows.length,
        };
    });
    const images = [...document.images].map((img) => ({
        alt: img.getAttribute("alt"),
        scheme: ((img.getAttribute("src") || "").match(/^([a-z][a-z0-9+.-]*):/i) || ["", ""])[1].toLowerCase(),
        complete: img.complete,
        naturalWidth: img.naturalWidth,
        naturalHeight: img.naturalHeight,
    }));
    return {title: document.title, tables, images};
}"""


@contextmanager
def chromium_page(viewport: tuple[int, int] | None = None, phone: bool = False) -> Iterator[Page]:
    """A fresh Playwright sync `Page` in the system Chromium (own empty profile); skips the test where there is none.

    `viewport`: (width, height) in CSS pixels (default: Playwright's 1280 x 720). `phone`: a touch screen that honours
    a page's `<meta name="viewport">` as a phone's browser does (without one, the page is laid out 980 px wide and
    shrunk to fit)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed in this virtualenv (pip install playwright)")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium not found at {CHROMIUM} (`make browser` installs it: apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="harness-chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=list(CHROMIUM_ARGS),
            offline=True,
            timeout=TIMEOUT_MS,
            **_screen(viewport, phone),
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            context.close()


def _screen(viewport: tuple[int, int] | None, phone: bool) -> dict[str, Any]:
    screen: dict[str, Any] = {"is_mobile": True, "has_touch": True} if phone else {}
    if viewport is not None:
        screen["viewport"] = {"width": viewport[0], "height": viewport[1]}
    return screen


def render_report(page: Page, path: Path) -> dict[str, Any]:
    """Load `path` (file://) in `page`, wait for `load`, and return what the browser saw, as a dict:

    - `title`: the document title.
    - `tables`: one `{"headers": [str], "rows": int}` per `table.comparison`; `rows` counts body rows only.
    - `images`: one `{"alt", "scheme", "complete", "naturalWidth", "naturalHeight"}` per `<img>`; `scheme` is that of
      its src ("data", "https", ..., "" when relative). A broken image is `complete` with `naturalWidth == 0`.
    - `requests`: every URL the page asked for besides itself and data: URIs. A self-contained report asks for none;
      they are refused (never sent), so each one is also in `failed_requests`.
    - `failed_requests`: `{"url", "failure"}` per failed request.
    - `console_errors`: console error messages, and uncaught page exceptions as "uncaught: ...".
    """
    url = Path(path).resolve().as_uri()
    watch = _LoadWatch(url)
    listeners = watch.listeners()
    for event, listener in listeners.items():
        page.on(event, listener)
    page.route("**/*", watch.on_route)
    try:
        page.goto(url, wait_until="load")
        seen = page.evaluate(_INSPECT_JS)
    finally:
        page.unroute("**/*")
        for event, listener in listeners.items():
            page.remove_listener(event, listener)
    return seen | {"requests": watch.requests, "failed_requests": watch.failed, "console_errors": watch.errors}


class _LoadWatch:
    """What a page at `url` asks for and reports while it loads (render_report's `requests`, `failed_requests` and
    `console_errors`); only the page itself may load."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[str] = []
        self.failed: list[dict[str, str]] = []
        self.errors: list[str] = []

    def listeners(self) -> dict[str, Any]:
        return {
            "request": self.on_request,
            "requestfailed": self.on_failed,
            "console": self.on_console,
            "pageerror": self.on_page_error,
        }

    def on_request(self, request: Any) -> None:
        if request.url != self.url and not request.url.startswith("data:"):
            self.requests.append(request.url)

    def on_failed(self, request: Any) -> None:
        self.failed.append({"url": request.url, "failure": str(request.failure)})

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def on_page_error(self, exc: Any) -> None:
        self.errors.append(f"uncaught: {exc}")

    def on_route(self, route: Any) -> None:
        # Only the report itself may load; anything else it asks for is refused (and shows up as a failed request).
        if route.request.url == self.url:
            route.continue_()
        else:
            route.abort("blockedbyclient")
