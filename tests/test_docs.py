"""The documentation: the README stays a short guide, and the MkDocs site in docs/ builds with no broken link or
anchor (mkdocs.yml: strict, every link and anchor validated), so a page that names a missing page or heading fails
here rather than rotting."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
README = REPO / "README.md"
README_MAX_LINES = 250

# [text](target): the target up to a space or the closing parenthesis (no titles are used in these files)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def relative_links(markdown: Path) -> list[str]:
    """Every link target of a Markdown file that points into the repository (code blocks left out)."""
    text = FENCE.sub("", markdown.read_text(encoding="utf-8"))
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a README heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_site_builds_strict(tmp_path: Path) -> None:
    built = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert built.returncode == 0, built.stderr
    pages = {p.stem for p in DOCS.glob("*.md")}
    assert pages <= {p.stem for p in (tmp_path / "site").glob("*.html")}, "every page under docs/ is built"
    assert (tmp_path / "site" / "frontier.png").exists() and (tmp_path / "site" / "gao.png").exists()


@pytest.mark.parametrize(
    ("planted", "says"),
    [
        ("[a page that is not there](no-such-page.md)", "no-such-page.md"),
        ("[a heading that is not there](zoo.md#no-such-heading)", "no-such-heading"),
    ],
    ids=["missing-page", "missing-anchor"],
)
def test_broken_link_fails_the_build(tmp_path: Path, planted: str, says: str) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    index = tmp_path / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8") + f"\n{planted}\n", encoding="utf-8")
    built = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert built.returncode != 0, "a broken link must fail the strict build"
    assert says in built.stderr


def test_readme_is_a_short_guide() -> None:
    text = README.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; the rest belongs in docs/"
    # the quickstart's commands, and the demo's table with the command that made it
    for command in ("make demo", "make test", "make bench", "harness -m experiment=compare"):
        assert command in text
    assert "| algorithm | gold reward | Δ vs SFT (paired) |" in text


@pytest.mark.parametrize("markdown", [README, *sorted(DOCS.glob("*.md"))], ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_resolve(markdown: Path) -> None:
    """Every relative link of the README and the pages names a file that exists (and, within the README, a heading
    it has); mkdocs checks the pages' anchors itself."""
    headings = {github_slug(h) for h in re.findall(r"^#+ (.+)$", FENCE.sub("", markdown.read_text("utf-8")), re.M)}
    missing = []
    for target in relative_links(markdown):
        path, _, anchor = target.partition("#")
        exists = (markdown.parent / path).exists() if path else markdown != README or anchor in headings
        if not exists:
            missing.append(target)
    assert not missing, f"{markdown.name}: links to nothing: {missing}"
    if markdown == README:
        assert any(t.startswith("docs/") for t in relative_links(markdown)), "the README links to the docs"
