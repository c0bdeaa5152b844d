"""The browser check itself: a hand-made self-contained page, looked at in headless Chromium (see tests/browser.py)."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import chromium_page, render_report

# A PNG header and then garbage: the browser must fail to decode it.
BROKEN_PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\nnot really a png").decode()


def png_data_uri(width_in: float, height_in: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=50)
    ax.plot([0, 1, 2], [0.2, 0.6, 0.4])
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="module")
def page() -> Iterator:
    with chromium_page() as page:
        yield page


def write_page(path: Path, body: str) -> Path:
    head = '<meta charset="utf-8"><title>smoke</title>'
    path.write_text(f"<!doctype html>\n<html><head>{head}</head>\n<body>{body}</body></html>\n")
    return path


def test_self_contained_page(page, tmp_path: Path) -> None:
    body = f"""
    <table class="comparison">
      <thead><tr><th>algorithm</th><th>reward</th></tr></thead>
      <tbody><tr><td>sft</td><td>0.41</td></tr><tr><td>dpo</td><td>0.57</td></tr></tbody>
    </table>
    <img alt="reward curve" src="{png_data_uri(4, 3)}">
    <img alt="win rate" src="{png_data_uri(2, 2)}">
    <img alt="broken" src="{BROKEN_PNG}">
    """
    seen = render_report(page, write_page(tmp_path / "report.html", body))

    assert seen["title"] == "smoke"
    assert seen["tables"] == [{"headers": ["algorithm", "reward"], "rows": 2}]
    images = {img["alt"]: img for img in seen["images"]}
    assert list(images) == ["reward curve", "win rate", "broken"]
    assert all(img["complete"] and img["scheme"] == "data" for img in images.values())
    assert (images["reward curve"]["naturalWidth"], images["reward curve"]["naturalHeight"]) == (200, 150)
    assert (images["win rate"]["naturalWidth"], images["win rate"]["naturalHeight"]) == (100, 100)
    assert images["broken"]["naturalWidth"] == 0  # so the check can tell a broken image from a good one
    assert seen["requests"] == []
    assert seen["failed_requests"] == []
    assert seen["console_errors"] == []


def test_external_references_are_caught(page, tmp_path: Path) -> None:
    """A page that is not self-contained shows up: its fetches are recorded (and refused, never sent)."""
    body = """
    <link rel="stylesheet" href="https://cdn.example.invalid/style.css">
    <img alt="remote" src="https://cdn.example.invalid/plot.png">
    <script>console.error("boom")</script>
    """
    seen = render_report(page, write_page(tmp_path / "leaky.html", body))

    assert seen["tables"] == []
    assert set(seen["requests"]) == {"https://cdn.example.invalid/style.css", "https://cdn.example.invalid/plot.png"}
    assert {r["url"] for r in seen["failed_requests"]} == set(seen["requests"])
    assert seen["images"][0]["naturalWidth"] == 0
    assert "boom" in seen["console_errors"]
