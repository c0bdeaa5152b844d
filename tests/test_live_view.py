"""A sweep you can follow: one view redrawn in place in a terminal, one plain line per event without one, and every
job's own console in console.log in its folder (hydra_plugins/harness_launcher, harness/progress.py).

The sweeps here run on the shared smoke sweep's stage cache (tests/smoke_sweep.py): their jobs only evaluate.
`algorithm=checkpoint` without a path is the job that fails, at once.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest
from conftest import HARNESS, REPO, job_env, run_harness
from smoke_sweep import shared_smoke_sweep

from harness import progress
from hydra_plugins.harness_launcher import varying, view_mode
from hydra_plugins.harness_launcher.view import Job, SweepView, clock, estimate_left, fit

ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
WIDTH, HEIGHT = 100, 30  # the pseudo-terminal's window
JOBS = ("0_base_seed0", "1_sft_seed0", "2_dpo_seed0")  # the shared smoke sweep's
# the terminal's sweep: the failing job first, so that the view shows it while the others still run
FAILED, TERMINAL_JOBS = "0_checkpoint_seed0", ("1_base_seed0", "2_sft_seed0", "3_dpo_seed0")
NO_PATH = "algorithm.path is not set"
# what a job prints that must stay in its console.log: a log record, a tqdm bar, TRL's logged dict, Hydra's listing
JOB_OUTPUT = re.compile(r"\[INFO\]|\[HYDRA\] \t#\d+ : |\d+%\|.*\||it/s\]|\{'loss'|Running in WANDB")


def run_in_terminal(args: list[str], timeout: float = 300) -> tuple[int, str]:
    """`harness args` with a pseudo-terminal (a 100 x 30 window) as its stdin, stdout and stderr: its exit status and
    everything it wrote to the terminal, as the terminal received it."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", HEIGHT, WIDTH, 0, 0))
    env = {**job_env(), "TERM": "xterm-256color"}
    job = subprocess.Popen(
        [str(HARNESS), *args], cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
    )
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    data = os.read(master, 1 << 16)
                except OSError:  # EIO: nothing holds the terminal open any more
                    break
                if not data:
                    break
                chunks.append(data)
            elif job.poll() is not None:  # ended, and nothing left to read (joblib's idle workers may hold it open)
                break
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait()
        os.close(master)
    return job.returncode, b"".join(chunks).decode("utf-8", "replace")


def screen(output: str) -> list[str]:
    """What a terminal shows after `output`: text, newlines, carriage returns, cursor up (CSI n A), erase line
    (CSI 2K) and erase below (CSI J); colours and other sequences are ignored. Scrollback is unlimited (the view is
    shorter than the window, so it never scrolls while redrawn)."""
    lines, row, column = [""], 0, 0
    for token in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", output):
        if not token:
            continue
        if token == "\n":
            row, column = row + 1, 0  # the terminal's own translation (onlcr) sends \r\n anyway
        elif token == "\r":
            column = 0
        elif token.startswith("\x1b["):
            argument, command = token[2:-1], token[-1]
            if command == "A":
                row = max(0, row - int(argument or 1))
            elif command == "K":
                lines[row] = ""
            elif command == "J":
                del lines[row + 1 :]
                lines[row] = lines[row][:column]
        else:
            line = lines[row].ljust(column)
            lines[row] = line[:column] + token + line[column + len(token) :]
            column += len(token)
        while len(lines) <= row:
            lines.append("")
    return lines


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return shared_smoke_sweep(tmp_path_factory)


@pytest.fixture(scope="module")
def terminal_sweep(sweep, tmp_path_factory) -> tuple[int, str, Path]:
    """A parallel sweep (two jobs at a time) of three methods and one job that fails, in a terminal."""
    results = tmp_path_factory.mktemp("live")
    returncode, output = run_in_terminal(
        [
            "-m", "algorithm=checkpoint,base,sft,dpo", "seed=0", "debug=smoke", "hydra/launcher=parallel",
            "cpu_threads=1", "logger=none", f"cache_dir={sweep.cache}", f"results_dir={results}",
        ]
    )  # fmt: skip
    (folder,) = (results / "sweeps" / "default").iterdir()
    return returncode, output, folder


def test_a_terminal_shows_one_view_redrawn_in_place(terminal_sweep) -> None:
    returncode, output, folder = terminal_sweep
    assert returncode == 1, output[-3000:]  # the failed job: the report is written, the exit status says so
    view, report = output.split("## default", 1)  # the view, then the report callback's table
    assert len(re.findall(r"\x1b\[\d+A", view)) >= 3, view[-2000:]  # redrawn in place, not printed again below
    frames = [ESCAPE.sub("", line) for line in re.split(r"\r\n|\r|\n", view) if "\x1b[2K" in line]
    # never wider than the terminal, but for a failed job's reason in the summary (drawn once: it may wrap)
    assert all(len(line) < WIDTH for line in frames if not line.startswith("  failed: ")), max(frames, key=len)
    text = "\n".join(frames)
    assert "left estimating" in text and re.search(r"left ~\d+:\d\d", text), text[-2000:]
    counts = [tuple(map(int, c)) for c in re.findall(r"(\d) done, (\d) running, (\d) failed, (\d) waiting", text)]
    assert counts[0] == (0, 0, 0, 4) and all(sum(count) == 4 for count in counts)
    assert [count[0] for count in counts] == sorted(count[0] for count in counts)  # done only goes up
    assert "4 jobs, 2 at a time" in text and max(count[1] for count in counts) <= 2  # the launcher's n_jobs
    # a running job's line: its name, its stage, what it does there (each job evaluates for a second or more)
    assert re.search(r"\n  \d_(base|sft|dpo)_seed0 +eval +(sampling|gold|kl|diversity|win_rate) +\d+:\d\d\n", text)
    for name in (FAILED, *TERMINAL_JOBS):
        assert name in text
    assert re.search(rf"failed: {FAILED}: {NO_PATH}", text)
    assert not JOB_OUTPUT.search(output), JOB_OUTPUT.search(output)
    # what stays on screen: the sweep's summary once, no line of a frame it replaced, then the report
    shown = [line for line in screen(view) if line.strip()]
    assert len(shown) == 3, shown
    assert re.fullmatch(r"sweep \S+: 4 jobs ended in \d+:\d\d: 3 done, 1 failed", shown[0])
    assert re.fullmatch(rf"  failed: {FAILED} failed after \d+:\d\d: {NO_PATH}; expected the .* saved model", shown[1])
    assert shown[2].startswith("  each job's console: ")
    assert "| dpo | 1 |" in report and f"report: {folder / 'report.html'}" in report
    assert NO_PATH not in report  # the failed job's reason once, in the summary; comparison.md keeps it too
    assert NO_PATH in (folder / "comparison.md").read_text()


def test_each_job_keeps_its_console_in_its_folder(terminal_sweep) -> None:
    _, _, folder = terminal_sweep
    for name in TERMINAL_JOBS:
        console = (folder / name / progress.CONSOLE_FILE).read_text()
        assert "stage sft: cached" in console and f"result: {folder / name / 'result.json'}" in console, console
    failed = (folder / FAILED / progress.CONSOLE_FILE).read_text()
    assert f"[ERROR] - {NO_PATH}" in failed and f"error: {NO_PATH}" in failed
    launcher = (folder / "launcher.log").read_text()  # Hydra's own listing of the jobs, out of the view's way
    assert "#0 : algorithm=checkpoint seed=0" in launcher
    assert not (folder / progress.LIVE_FOLDER).exists()  # the progress reports go when the launch ends


def test_without_a_terminal_a_sweep_prints_one_plain_line_per_event(sweep) -> None:
    """The shared smoke sweep ran through the parallel launcher with its output captured: plain lines only."""
    for text in (sweep.stdout, sweep.stderr):
        assert "\x1b[" not in text and "\r" not in text
    lines = sweep.stdout.splitlines()
    assert re.fullmatch(rf"sweep: 3 jobs, 3 at a time, in {re.escape(str(sweep.dir))}; .*console\.log.*", lines[0])
    events = [line for line in lines if re.match(r"\[\d+:\d\d\] ", line)]
    assert len(events) == len(set(events))  # each event once
    for name in JOBS:
        mine = [line.split(" ", 1)[1] for line in events if f" {name}: " in line]
        assert mine[0] == f"{name}: started (algorithm={name.split('_')[1]})" and f"{name}: stage eval" in mine, mine
        assert re.fullmatch(rf"{name}: done in \d+:\d\d, gold reward 0\.\d{{3}}", mine[-1]), mine
    building = [line.split(": stage ")[1] for line in events if ": stage " in line]
    # the sweep built every stage once (whichever job got there first), and each job evaluated
    for stage in ("data", "base_model", "sft", "preferences", "dpo"):
        assert building.count(stage) == 1, building
    assert building.count("eval") == 3
    assert re.fullmatch(r"\[\d+:\d\d\] sweep \S+: 3 jobs ended in \d+:\d\d: 3 done, 0 failed", events[-1])
    assert not JOB_OUTPUT.search(sweep.stdout + sweep.stderr)
    assert sweep.stdout.index("\n## smoke: ") > sweep.stdout.index(events[-1])  # then the report
    for folder in sweep.jobs().values():
        assert "[INFO]" in (folder / progress.CONSOLE_FILE).read_text()


def test_a_failed_job_is_one_error_line_without_a_terminal(sweep, tmp_path: Path) -> None:
    """Through the default launcher (one job at a time, in the launching process)."""
    done = run_harness(
        "-m", "algorithm=checkpoint", "seed=0", "debug=smoke", "logger=none", "eval=[gold]",
        f"cache_dir={sweep.cache}", f"results_dir={tmp_path}",
    )  # fmt: skip
    assert done.returncode == 1
    (folder,) = (tmp_path / "sweeps" / "default").iterdir()
    for text in (done.stdout, done.stderr):
        assert "\x1b[" not in text and "\r" not in text and "Traceback" not in text
    console = folder / "0_checkpoint_seed0" / progress.CONSOLE_FILE
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    expected = rf"error: {NO_PATH}; expected the directory of a saved model \(job 0_checkpoint_seed0 failed after "
    assert re.fullmatch(expected + rf"\d+:\d\d; its output: {re.escape(str(console))}\)", errors[0]), errors
    assert len(errors) == 1 and (done.stdout + done.stderr).count(NO_PATH) == 1  # once on the terminal
    stdout = done.stdout.splitlines()
    assert stdout[0].startswith("sweep: 1 job, 1 at a time, in ") and re.match(r"\[\d+:\d\d\] 0_checkpoint", stdout[1])
    assert re.search(r"1 job ended in \d+:\d\d: 0 done, 1 failed", done.stdout)
    assert f"error: {NO_PATH}" in console.read_text()  # the job's own line, where it printed it


# -- the parts -----------------------------------------------------------------------------------------------------
def test_the_estimate_fills_the_slots_with_the_jobs_left() -> None:
    """Finished jobs took 60 s and 100 s: a job takes 80 s. Two slots; one job is 30 s in (50 s left), three wait.
    Slot ends: [0, 50] -> the first waiting job takes the free slot: [50, 80] -> the next the one freed at 50:
    [80, 130] -> the last the one freed at 80: [130, 160]. Everything has ended in 160 s."""
    assert estimate_left([60, 100], [(30, None)], waiting=3, slots=2) == 160
    # a job whose training alone needs longer than the average has its own say: 50 s -> 70 s
    assert estimate_left([60, 100], [(30, 70.0)], waiting=0, slots=2) == 70
    # over the average already: nothing left for it, the waiting job gets the other slot
    assert estimate_left([60, 100], [(90, None)], waiting=1, slots=2) == 80
    # nothing finished: only a running job's own progress tells, and then it stands for the waiting ones (20 + 40)
    assert estimate_left([], [(20, 40.0)], waiting=2, slots=1) == 40 + 60 + 60
    assert estimate_left([], [(20, None)], waiting=2, slots=2) is None
    assert estimate_left([], [], waiting=3, slots=2) is None
    assert estimate_left([10], [], waiting=0, slots=2) == 0


def test_a_running_job_counts_its_own_pace() -> None:
    """Started counting at step 10 100 s ago, now at step 30 of 110: 20 steps per 100 s, 80 to go: 400 s."""
    job = Job(0, status="running", done=30, total=110, since=1000.0, start_done=10)
    assert job.needs(now=1100.0) == pytest.approx(400.0)
    assert job.doing() == "30/110"
    assert Job(0, activity="train", done=3, total=None, unit="steps").doing() == "train 3 steps"
    assert Job(0, done=10, total=110, since=1000.0, start_done=10).needs(now=1100.0) is None  # no step yet


def test_the_view_fits_any_window() -> None:
    view = SweepView(Path("/results/sweeps/compare/2026-01-01_00-00-00"), slots=8, started=0.0)
    view.add(range(20))
    for num in range(12):
        job = view.jobs[num]
        job.name, job.status, job.started = f"{num}_a_rather_long_method_name_seed{num}", "running", 10.0
        job.stage, job.activity, job.done, job.total, job.unit = "dpo", "train", 40, 120, "steps"
    view.jobs[12].status, view.jobs[12].error, view.jobs[12].finished = "failed", "x" * 300, 50.0
    for width, height in ((100, 30), (40, 10), (20, 5), (5, 3)):
        lines = view.frame(now=100.0, width=width, height=height)
        assert 1 <= len(lines) <= height - 1 and all(len(line) < width for line in lines), (width, lines)
    lines = view.frame(now=100.0, width=100, height=10)
    assert lines[1] == "0 done, 12 running, 1 failed, 7 waiting"
    assert lines[2].split() == ["0_a_rather_long_method_name_seed0", "dpo", "train", "40/120", "steps", "1:30"]
    assert lines[-2].startswith("  ... and ") and lines[-2].endswith(" more running")
    assert lines[-1].startswith("failed: ") and lines[-1].endswith("...") and len(lines[-1]) == 99
    assert fit("abcde", 6) == "abcde" and fit("abcdef", 6) == "ab..." and fit("abc", 1) == "a"
    assert [clock(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00", "1:02:05"]


def test_a_job_is_told_by_what_its_launch_varies() -> None:
    launch = [["algorithm=sft", "seed=0", "debug=smoke"], ["algorithm=dpo", "seed=0", "debug=smoke", "kl_beta=0.1"]]
    assert varying(launch) == [["algorithm=sft"], ["algorithm=dpo", "kl_beta=0.1"]]
    assert varying([["seed=0"]]) == [[]]


def test_the_view_is_live_only_in_a_terminal(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as file:
        assert view_mode("auto", file.fileno()) == "plain"
        assert view_mode("off", file.fileno()) == "off"
    with pytest.raises(ValueError, match=r"hydra.launcher.view='fancy': expected one of auto, plain, off"):
        view_mode("fancy")


def test_a_job_console_is_redirected_below_python(tmp_path: Path) -> None:
    """C's buffered stdout, direct writes and child processes go to the file too, and the descriptors come back as
    they were. (Python's own sys.stdout writes to descriptor 1 in a job; under pytest it is pytest's capture.)"""
    import ctypes

    console = tmp_path / "console.log"
    before = os.fstat(1).st_ino, os.fstat(2).st_ino
    with progress.redirect_console(console):
        ctypes.CDLL(None).printf(b"from C\n")  # buffered in C: flushed before the descriptors change back
        os.write(2, b"from the descriptor\n")
        subprocess.run(["sh", "-c", "echo from a child"], check=True)
    assert (os.fstat(1).st_ino, os.fstat(2).st_ino) == before
    assert sorted(console.read_text().splitlines()) == ["from C", "from a child", "from the descriptor"]
