"""The example plugin package (examples/harness-example-plugin), installed the way a user installs it: its
configs appear in `harness --help` and run in a sweep with no `hydra.searchpath`, found only by its own
SearchPathPlugin in the `hydra_plugins` namespace.

The package goes into a folder of its own (`pip install --target`), not into the venv every test shares; a
subprocess with PYTHONPATH=<folder> then sees it exactly as after `pip install` into site-packages: the folder's
`hydra_plugins/` joins the namespace package that Hydra scans for plugins. An editable install (`pip install -e`,
the README's way) reaches that namespace differently, through setuptools' import hook, and is tested on its own.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import HARNESS, REPO, job_env, results_by_algorithm

EXAMPLE = REPO / "examples" / "harness-example-plugin"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example package installed into `<tmp>/site`. Built from a copy: setuptools builds in the source tree
    (build/, *.egg-info), which must stay clean."""
    root = tmp_path_factory.mktemp("example_plugin")
    source = root / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".*cache"))
    install = [
        sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", "--quiet", "--target", str(root / "site"), str(source),
    ]  # fmt: skip
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "site"


def env(site: Path | None) -> dict[str, str]:
    """The jobs' environment (tests/conftest.py), with `site` as the only extra place Python imports from."""
    environment = job_env()
    environment.pop("PYTHONPATH", None)
    if site is not None:
        environment["PYTHONPATH"] = str(site)
    return environment


def harness(*args: str, site: Path | None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HARNESS), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env(site)
    )


def help_texts(*sites: Path | None) -> list[str]:
    """`harness --help` with each of `sites` on PYTHONPATH, run side by side (each is a few seconds of imports)."""
    jobs = [
        subprocess.Popen([str(HARNESS), "--help"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env(site))
        for site in sites
    ]  # fmt: skip
    texts = []
    for job in jobs:
        out, err = job.communicate(timeout=120)
        assert job.returncode == 0, err[-3000:]
        texts.append(out)
    return texts


def choices(help_text: str, group: str) -> list[str]:
    """`algorithm: base, dpo, ...` in `harness --help` -> ["base", "dpo", ...]."""
    line = next(line for line in help_text.splitlines() if line.startswith(f"{group}: "))
    return line.removeprefix(f"{group}: ").split(", ")


# 1. -------------------------------------------------------------------------------------------------------------
def test_installing_the_package_adds_its_choices_to_help(site: Path, tmp_path: Path) -> None:
    """Installed: `slic` and `hedging` are choices. Not installed: they are not. Installed without its
    hydra_plugins/ portion (the package alone importable): not either, so it is the SearchPathPlugin that
    puts them there, and nothing else (the working directory, an import side effect)."""
    bare = tmp_path / "without_hydra_plugins"
    shutil.copytree(site / "harness_example", bare / "harness_example")
    installed, not_installed, without_plugin = help_texts(site, None, bare)
    assert "slic" in choices(installed, "algorithm")
    assert "hedging" in choices(installed, "eval")
    assert "dpo" in choices(installed, "algorithm")  # the harness's own choices stay
    for text in (not_installed, without_plugin):
        assert "slic" not in choices(text, "algorithm")
        assert "hedging" not in choices(text, "eval")


def test_an_editable_install_adds_them_too(tmp_path: Path) -> None:
    """`pip install -e`, as the README says, into a venv of its own that sees the harness's venv: setuptools'
    editable finder must put the package's hydra_plugins/ folder itself on the namespace's path, or Hydra's
    scan (pkgutil.walk_packages) never sees the plugin. It does so only when the package lists the `hydra_plugins`
    namespace itself (`include = ["harness_example*", "hydra_plugins*"]`), not just `hydra_plugins.harness_example`."""
    source = tmp_path / "source"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build", ".*cache"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    (site_packages,) = (venv / "lib").glob("python*/site-packages")
    shared = sysconfig.get_paths()["purelib"]  # the harness's venv, with its own .pth files (its editable install)
    (site_packages / "zz_shared_venv.pth").write_text(f"import site; site.addsitedir({shared!r})\n")
    install = [
        sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-build-isolation",
        "--no-index", "--disable-pip-version-check", "--quiet", "--editable", str(source),
    ]  # fmt: skip
    done = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    shown = subprocess.run(  # from tmp_path: the repository's own hydra_plugins/ is not in the working directory
        [str(python), "-m", "harness.app", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env=env(None),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr[-3000:]
    assert "slic" in choices(shown.stdout, "algorithm")
    assert "hedging" in choices(shown.stdout, "eval")


# 2. -------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sweep_runs_the_plugin_method_and_suite(site: Path, tmp_path: Path) -> None:
    """sft and slic in one sweep with the hedging suite, no hydra.searchpath: both jobs complete, slic trained,
    its hedging metrics are in result.json, and the suite's headline label is in the sweep's comparison."""
    done = harness(
        "-m", "debug=smoke", "algorithm=sft,slic", "eval=[gold,kl,hedging]", f"results_dir={tmp_path}", "logger=none",
        site=site, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_by_algorithm(tmp_path)
    assert set(results) == {"sft", "slic"}
    assert all(result["status"] == "complete" for result in results.values()), results
    slic = results["slic"]["metrics"]
    assert slic["train/params_changed"] > 0
    # SLiC's hinge at the start, where the policy is its reference (margin 0): max(0, 1 - beta * 0) = 1, where
    # DPO's sigmoid loss would be ln 2 = 0.693: the YAML's loss_type reached TRL
    assert slic["train/first_loss"] == pytest.approx(1.0, abs=0.02)
    assert 0.0 <= slic["eval/hedging/hedge_rate"] <= 1.0
    assert slic["eval/hedging/mean_words"] > 0
    assert "eval/hedging/hedge_rate" in results["sft"]["metrics"]
    samples = (results["slic"]["dir"] / "samples.jsonl").read_text().splitlines()
    assert samples and '"hedges"' in samples[0]  # the suite's per-sample column

    (sweep,) = {path.parent for path in (tmp_path / "sweeps").rglob("comparison.md")}
    header = next(line for line in (sweep / "comparison.md").read_text().splitlines() if line.startswith("| algorithm"))
    assert "| hedged |" in header  # the label hedging.yaml declares for hedge_rate, as a column
    assert "hedged" in (sweep / "report.html").read_text()


# 3. -------------------------------------------------------------------------------------------------------------
def test_the_package_own_tests_pass(site: Path) -> None:
    """examples/harness-example-plugin/tests, against the installed copy (the repository's `pytest` does not
    collect them: its testpaths are tests/)."""
    environment = env(site) | {"PYTHONDONTWRITEBYTECODE": "1"}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120, env=environment)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and "skipped" not in done.stdout
