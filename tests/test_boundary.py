"""The core's boundary, as `make test` checks it (import-linter contracts in pyproject.toml): plugins import
harness.api and nothing else of the core; the report never imports the arena, jobs or runs; no module cycles.

Each test runs `lint-imports` as `make test` does, on the repository as it is and on a copy with one violation
planted, which must fail naming it: a contract that cannot fail checks nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
EXAMPLE = REPO / "examples" / "harness-example-plugin"


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the repository's contracts, its packages imported from `root`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(EXAMPLE)])}
    return subprocess.run(
        [str(LINT), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120,
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """The repository's packages (their Python files) in `tmp_path`, to plant violations in."""
    for package in ("harness", "plugins", "hydra_plugins"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.json*"))
    return tmp_path


def test_the_repository_keeps_every_contract() -> None:
    result = lint(REPO)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "BROKEN" not in result.stdout
    for contract in ("Plugins import harness.api", "The report reads results", "No import cycles"):
        assert contract in result.stdout


def test_a_plugin_importing_an_internal_module_fails(copy: Path) -> None:
    (copy / "plugins" / "evals" / "planted.py").write_text("from harness.runner import build_plugin\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "plugins.evals.planted -> harness.runner" in result.stdout


def test_the_report_importing_the_arena_fails(copy: Path) -> None:
    (copy / "harness" / "report" / "planted.py").write_text("from harness.arena import store\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "harness.report.planted -> harness.arena" in result.stdout


def test_a_cycle_between_core_modules_fails(copy: Path) -> None:
    (copy / "harness" / "planted.py").write_text("from harness import job\n")
    with (copy / "harness" / "results.py").open("a") as handle:
        handle.write("\nfrom harness import planted  # noqa: E402\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout


def test_the_example_plugin_keeps_its_contract_and_a_planted_import_breaks_it(tmp_path: Path) -> None:
    """examples/harness-example-plugin holds itself to harness.api with an .importlinter of its own (the one an
    out-of-tree package can copy): kept as shipped, broken by one import of an internal module."""

    def lint_example(root: Path) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(root)}
        return subprocess.run(
            [str(LINT), str(root / ".importlinter"), "--no-cache"],
            cwd=root, env=env, capture_output=True, text=True, timeout=120,
        )

    shipped = lint_example(EXAMPLE)
    assert shipped.returncode == 0, shipped.stdout[-2000:]
    copy = tmp_path / "example"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    (copy / "harness_example" / "planted.py").write_text("from harness.stages import StageCache\n")
    planted = lint_example(copy)
    assert planted.returncode != 0
    assert "harness_example.planted -> harness.stages" in planted.stdout
