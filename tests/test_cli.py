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


def test_a_bad_value_is_one_error_line(tmp_path) -> None:
    """Printed once, on stderr (it used to be a log line on stdout first); the job's log file keeps the record."""
    result = run_harness(
        "algorithm=dpo", "algorithm.trainer.beta=-1", "logger=none", "debug=smoke", f"results_dir={tmp_path}"
    )
    assert result.returncode == 2
    message = "algorithm.trainer.beta=-1.0: out of range; expected a value > 0"
    assert [line for line in result.stderr.splitlines() if "error" in line.lower()] == [f"error: {message}"]
    assert "error" not in result.stdout.lower() and message not in result.stdout, result.stdout
    (log_file,) = tmp_path.rglob("app.log")
    assert f"[ERROR] - {message}" in log_file.read_text()


def test_an_error_is_logged_to_the_log_file_and_printed_once(tmp_path) -> None:
    """harness.app.log_error: where the console is the terminal, the record goes to the log files only (the
    `error:` line is the terminal's one line); where it is a job's console.log, to both; with no log file, to the
    console after all. A bug's traceback goes with it."""
    import io
    import logging

    from harness.app import log, log_error

    console, path = io.StringIO(), tmp_path / "app.log"
    handlers = [logging.StreamHandler(console), logging.FileHandler(path)]
    for handler in handlers:
        log.addHandler(handler)
    try:
        assert log_error("bad value", console_too=False) == [str(path)]
        try:
            raise ValueError("a bug")
        except ValueError:
            log_error("job failed", console_too=False, traceback=True)
        assert console.getvalue() == ""
        log_error("in console.log", console_too=True)
        assert console.getvalue() == "in console.log\n"
        log.removeHandler(handlers[1])
        assert log_error("no log file", console_too=False) == []
        assert console.getvalue().endswith("no log file\n")
    finally:
        for handler in handlers:
            log.removeHandler(handler)
            handler.close()
    written = path.read_text()
    assert written.startswith("bad value\njob failed\nTraceback") and "ValueError: a bug" in written
    assert written.endswith("in console.log\n")
