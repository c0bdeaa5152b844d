"""The `harness` command as a user meets it: help, and one-line errors for bad input (no tracebacks)."""

from __future__ import annotations

from conftest import run_harness


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def test_help_lists_every_group_and_its_choices() -> None:
    result = run_harness("--help")
    assert result.returncode == 0, result.stderr
    from test_config import GROUPS, options

    for group in GROUPS:
        assert f"{group}: {', '.join(options(group))}" in result.stdout


def test_unknown_algorithm_names_the_choice_and_the_options() -> None:
    result = run_harness("algorithm=nope")
    assert result.returncode != 0
    assert "Could not find 'algorithm/nope'" in result.stderr
    assert "Available options in 'algorithm'" in result.stderr
    assert "Traceback" not in result.stderr
    from test_config import options

    assert len(result.stderr.splitlines()) < 15 + len(options("algorithm"))  # Hydra's message lists the options


def test_misspelled_trainer_field_names_the_key() -> None:
    result = run_harness("sft.trainer.lerning_rate=1")
    assert result.returncode != 0
    assert "Key 'lerning_rate' not in 'SFTConfigFields'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_preference_file_is_one_line(tmp_path) -> None:
    missing = tmp_path / "nowhere.jsonl"
    result = run_harness("task=hf_preferences", f"task.path={missing}", "logger=none", f"results_dir={tmp_path}")
    assert result.returncode == 2
    assert last_line(result.stderr) == f"error: task.path='{missing}': no such file"
    assert "Traceback" not in result.stderr + result.stdout


def test_malformed_preference_file_is_one_line(tmp_path) -> None:
    broken = tmp_path / "prefs.jsonl"
    broken.write_text('{"prompt": "the movie", "chosen": " was good ."}\n{"prompt": oops\n')
    result = run_harness("task=hf_preferences", f"task.path={broken}", "logger=none", f"results_dir={tmp_path}")
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert line.startswith("error: task.path=") and str(broken) in line
    assert "Traceback" not in result.stderr + result.stdout
    # the failure is recorded, not lost
    (result_file,) = tmp_path.rglob("result.json")
    assert '"status": "failed"' in result_file.read_text()
