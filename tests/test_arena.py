"""The human arena (`harness-arena SWEEP_DIR`) as raters, a crash and a careless or hostile client meet it: the console
script runs as a subprocess on a copy of the shared smoke sweep (base, sft, dpo; 32 prompts), and the tests talk HTTP
to it and read the votes back with `harness.arena.store.load_votes`, as the report does."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import REPO, job_env
from smoke_sweep import shared_smoke_sweep
from sqlalchemy import create_engine, select

from harness.arena.store import default_url, load_votes
from harness.arena.store import votes as store_votes

ARENA = Path(sys.executable).parent / "harness-arena"
METHODS = ("base", "dpo", "sft")  # the smoke sweep's groups, as the report labels them
PAIRS = {("base", "dpo"), ("base", "sft"), ("dpo", "sft")}
NEXT_FIELDS = {"presentation", "prompt_index", "prompt", "left", "right", "dwell_ms", "voted", "remaining"}
PLANTED = "<img src=x onerror=\"window.pwned = 1; document.title = 'pwned'\">"


@dataclass
class Server:
    process: subprocess.Popen
    url: str  # http://127.0.0.1:PORT/: the server on loopback, whatever address it printed
    token: str | None
    stderr: Path
    printed: str = ""  # the URL it printed, without the token

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last flush."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()


@contextmanager
def arena(sweep_dir: Path, *args: str) -> Iterator[Server]:
    """`harness-arena sweep_dir --port 0 args` until the block ends; the URL is read from the line it prints. No
    minimum dwell unless `args` set one (--min-dwell): these clients vote as fast as they can, on purpose."""
    if "--min-dwell" not in args:
        args = (*args, "--min-dwell", "0")
    logs = sweep_dir.parent
    number = len(list(logs.glob("arena-*.out")))
    out, err = logs / f"arena-{number}.out", logs / f"arena-{number}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [str(ARENA), str(sweep_dir), "--port", "0", *args],
            cwd=REPO, env=job_env(), stdout=stdout, stderr=stderr, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (line := next((x for x in out.read_text().splitlines() if x.startswith("arena: ")), None)):
            assert process.poll() is None, f"harness-arena exited {process.returncode}:\n{err.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "harness-arena printed no URL within 60 s"
            time.sleep(0.05)
        printed, _, token = line.removeprefix("arena: ").partition("?token=")
        port = printed.rstrip("/").rsplit(":", 1)[1]
        yield Server(process, f"http://127.0.0.1:{port}/", token or None, err, printed)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def client() -> httpx.Client:
    return httpx.Client(timeout=30, trust_env=False)  # never through a proxy from the environment


def next_pair(http: httpx.Client, server: Server, rater: str) -> dict[str, Any]:
    response = http.get(f"{server.url}api/next", params={"rater": rater})
    assert response.status_code == 200, response.text
    return response.json()


def vote(http: httpx.Client, server: Server, presentation: str, rater: str, choice: str) -> httpx.Response:
    return http.post(f"{server.url}api/vote", json={"presentation": presentation, "rater": rater, "choice": choice})


def recorded(sweep_dir: Path) -> list[tuple]:
    """Every vote in the sweep's database, as comparable tuples."""
    return [
        (v.rater, v.prompt_index, v.method_a, v.method_b, v.outcome, v.completion_a, v.completion_b)
        for v in load_votes(sweep_dir)
    ]


def query(sweep_dir: Path, statement: Any) -> list[tuple]:
    """Rows of a query on the sweep's vote database (what the Vote records leave out, such as the sides shown)."""
    engine = create_engine(default_url(sweep_dir))
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(statement)]
    finally:
        engine.dispose()


def assert_matches(vote_record, shown: dict[str, Any], choice: str) -> None:
    """The stored vote is of what the rater saw, and the side the rater chose is the method the vote credits."""
    assert vote_record.prompt_index == shown["prompt_index"] and vote_record.prompt == shown["prompt"]
    assert {vote_record.completion_a, vote_record.completion_b} == {shown["left"], shown["right"]}
    if choice == "tie":
        assert vote_record.outcome == "tie"
    else:
        chosen = shown[choice]
        credited = vote_record.completion_a if vote_record.outcome == "a" else vote_record.completion_b
        assert vote_record.outcome in ("a", "b") and credited == chosen


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return shared_smoke_sweep(tmp_path_factory)


@pytest.fixture
def sweep(smoke, tmp_path: Path) -> Path:
    return smoke.copy(tmp_path)


def test_acknowledged_votes_survive_kill_9(sweep: Path) -> None:
    """Ten acknowledged votes, then SIGKILL at once: after a restart all ten are there, exactly as cast; a pair shown
    before the crash can still be voted on, and a vote acknowledged before it cannot be replayed after it."""
    rng = random.Random(0)
    cast: list[tuple[dict[str, Any], str]] = []
    with arena(sweep) as server, client() as http:
        for _ in range(10):
            shown, choice = next_pair(http, server, "alice"), rng.choice(["left", "right", "tie"])
            assert vote(http, server, shown["presentation"], "alice", choice).status_code == 200
            cast.append((shown, choice))
        pending = next_pair(http, server, "alice")  # shown, not yet voted on
        server.kill()
    assert server.process.returncode == -signal.SIGKILL
    votes = load_votes(sweep)
    assert len(votes) == 10
    for stored, (shown, choice) in zip(votes, cast, strict=True):
        assert_matches(stored, shown, choice)
    with closing(sqlite3.connect(sweep / "arena.sqlite")) as database:  # the journal that makes a commit one fsync
        assert database.execute("PRAGMA journal_mode").fetchone() == ("wal",)

    with arena(sweep) as server, client() as http:
        assert vote(http, server, pending["presentation"], "alice", "left").status_code == 200
        replay = vote(http, server, cast[0][0]["presentation"], "alice", cast[0][1])
        assert replay.status_code == 409, replay.text
    assert len(load_votes(sweep)) == 11


def make_distinct(sweep: Path) -> None:
    """Every job's completions end in a mark of their own: no two methods say the same, so every prompt and pair can
    be shown (the smoke policies often say the same, and identical pairs are never shown)."""
    for number, samples in enumerate(sorted(sweep.glob("*/samples.jsonl"))):
        rows = [json.loads(line) for line in samples.read_text().splitlines()]
        samples.write_text("".join(json.dumps(row | {"completion": f"{row['completion']} {'~' * (number + 1)}"})
                                   + "\n" for row in rows))  # fmt: skip


def test_concurrent_raters_lose_and_double_count_nothing(sweep: Path) -> None:
    """20 raters voting at once, 50 votes each: exactly 1,000 votes, each (rater, prompt, pair) once, each as the
    rater cast it, and the pairs covered evenly (within what 20 raters asking at the same moment can skew)."""
    make_distinct(sweep)
    raters, per_rater = 20, 50
    cast: dict[str, list[tuple[dict[str, Any], str]]] = {}
    failures: list[str] = []

    def rate(rater: str, seed: int) -> None:
        rng, mine = random.Random(seed), []
        try:
            with client() as http:
                for _ in range(per_rater):
                    shown, choice = next_pair(http, server, rater), rng.choice(["left", "right", "tie"])
                    response = vote(http, server, shown["presentation"], rater, choice)
                    if response.status_code != 200:
                        failures.append(f"{rater}: {response.status_code} {response.text}")
                        return
                    mine.append((shown, choice))
        except Exception as error:  # reported below, with the rater
            failures.append(f"{rater}: {error!r}")
        cast[rater] = mine

    with arena(sweep) as server:
        threads = [threading.Thread(target=rate, args=(f"rater-{i}", i)) for i in range(raters)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert not failures, (failures[:5], server.stderr.read_text()[-2000:])

    votes = load_votes(sweep)
    assert len(votes) == raters * per_rater, f"{len(votes)} votes after {elapsed:.1f} s"
    keys = Counter((v.rater, v.prompt_index, v.method_a, v.method_b) for v in votes)
    assert max(keys.values()) == 1
    assert Counter(v.rater for v in votes) == {f"rater-{i}": per_rater for i in range(raters)}
    assert all(v.method_a < v.method_b for v in votes)
    by_pair = Counter((v.method_a, v.method_b) for v in votes)
    assert set(by_pair) == PAIRS and max(by_pair.values()) - min(by_pair.values()) <= raters, by_pair
    # each rater's votes, in order, are what that rater saw and chose
    for rater, mine in cast.items():
        stored = [v for v in votes if v.rater == rater]  # oldest first
        for record, (shown, choice) in zip(stored, mine, strict=True):
            assert_matches(record, shown, choice)
    # and the alphabetically first method was on the left about half the time (binomial: 500 +- 16 s.d.)
    on_left = Counter(side for (side,) in query(sweep, select(store_votes.c.shown_left)))
    assert 400 < on_left["a"] < 600, on_left


@pytest.fixture(scope="module")
def served(smoke, tmp_path_factory) -> Iterator[tuple[Path, Server]]:
    """One server for the requests that must be refused (they write nothing, so they can share it)."""
    sweep = smoke.copy(tmp_path_factory.mktemp("arena-refusals"))
    with arena(sweep) as server:
        yield sweep, server


def test_bad_requests_get_a_4xx_with_one_line_and_change_nothing(served) -> None:
    sweep, server = served
    with client() as http:
        voted = next_pair(http, server, "carol")
        assert vote(http, server, voted["presentation"], "carol", "left").status_code == 200
        others = next_pair(http, server, "dave")
        before = recorded(sweep)
        assert len(before) == 1
        ok = {"presentation": others["presentation"], "rater": "dave", "choice": "tie"}
        cases = {
            "malformed JSON": (400, '{"presentation": "x", "rater": '),
            "missing field": (422, {"presentation": others["presentation"], "rater": "dave"}),
            "bad outcome": (422, ok | {"choice": "sideways"}),
            "outcome in canonical terms": (422, ok | {"choice": "a"}),
            "unknown presentation": (404, ok | {"presentation": "no-such-presentation"}),
            "replayed vote": (409, {"presentation": voted["presentation"], "rater": "carol", "choice": "left"}),
            "replay with another choice": (409, {"presentation": voted["presentation"], "rater": "carol",
                                                 "choice": "tie"}),
            "another rater's presentation": (403, ok | {"rater": "carol"}),
            "unexpected field": (422, ok | {"method": "dpo"}),
            "wrong type": (422, ok | {"presentation": 7}),
            "empty rater": (422, ok | {"rater": "  "}),
            "not an object": (422, [ok]),
            "empty body": (422, ""),
            "too large": (413, ok | {"rater": "x" * 20_000}),
        }  # fmt: skip
        for name, (status, body) in cases.items():
            content = body if isinstance(body, str) else json.dumps(body)
            response = http.post(f"{server.url}api/vote", content=content, headers={"Content-Type": "application/json"})
            assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
            assert set(response.json()) == {"error"} and response.json()["error"], name
            assert "\n" not in response.json()["error"], name
            assert recorded(sweep) == before, f"{name} changed the votes"
        not_json = http.post(f"{server.url}api/vote", content=json.dumps(ok), headers={"Content-Type": "text/plain"})
        assert not_json.status_code == 415 and set(not_json.json()) == {"error"}
        assert http.get(f"{server.url}api/next").status_code == 422  # no rater named
        # a page of another site whose name now points at 127.0.0.1 (DNS rebinding) is a loopback client too
        rebound = {"Host": "arena.attacker.example", "Content-Type": "application/json"}
        assert http.post(f"{server.url}api/vote", content=json.dumps(ok), headers=rebound).status_code == 403
        assert http.get(f"{server.url}api/next", params={"rater": "dave"}, headers=rebound).status_code == 403
        assert recorded(sweep) == before
        # none of that used up dave's presentation
        assert vote(http, server, others["presentation"], "dave", "tie").status_code == 200
    assert len(recorded(sweep)) == 2


def test_one_vote_per_rater_prompt_and_pair(served) -> None:
    """A second presentation of the same prompt and pair to the same rater (two tabs open, say) cannot add a second
    vote: the first one stands."""
    from harness.arena.store import Store

    sweep, server = served
    store = Store(default_url(sweep))
    try:
        with client() as http:
            first = next_pair(http, server, "erin")
            issued = store.presentation(first["presentation"])
            twin = issued.__class__(**(issued.__dict__ | {"id": "second-tab"}))
            store.add_presentation(twin)
            assert vote(http, server, first["presentation"], "erin", "left").status_code == 200
            before = recorded(sweep)
            second = vote(http, server, "second-tab", "erin", "right")
    finally:
        store.close()
    assert second.status_code == 409 and "already voted" in second.json()["error"]
    assert recorded(sweep) == before


def test_pages_and_answers_name_no_method(served) -> None:
    """Blind: the page, its script and every presentation carry no method name; the page allows no inline script."""
    _, server = served
    assert server.token is None  # listening on loopback only: nobody needs one
    words = re.compile(r"\b(" + "|".join(METHODS) + r")\b")
    with client() as http:
        page = http.get(server.url)
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        for path in ("", "static/arena.js", "static/arena.css"):
            assert not words.search(http.get(f"{server.url}{path}").text), path
        shown = [next_pair(http, server, "frank") for _ in range(12)]
    for pair in shown:
        assert set(pair) == NEXT_FIELDS
        assert not words.search(json.dumps(pair)), pair


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (None if it has none)."""
    candidates = []
    with suppress(OSError, subprocess.SubprocessError):
        candidates += subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout.split()
    candidates += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)]
    for address in candidates:
        if ":" in address or address.startswith("127."):
            continue
        with socket.socket() as probe:
            try:
                probe.bind((address, 0))
            except OSError:
                continue
        return address
    return None


def test_other_machines_need_the_token(sweep: Path) -> None:
    """Listening on every address: a client reaching it through the machine's own network address needs the token
    the server printed (no header makes it loopback); a client on loopback needs none."""
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address to reach the arena from")
    with arena(sweep, "--host", "0.0.0.0") as server, client() as http:
        assert server.token, "a server reachable from other machines printed no token"
        port = server.url.rstrip("/").rsplit(":", 1)[1]
        remote, local = f"http://{address}:{port}/", f"http://127.0.0.1:{port}/"
        # the printed URL names an address other machines can open, not 0.0.0.0, and it opens the page
        printed_host = server.printed.removeprefix("http://").rsplit(":", 1)[0]
        assert printed_host not in ("0.0.0.0", "127.0.0.1", "localhost"), server.printed
        with client() as rater:  # its own client: the page sets a cookie that would carry the token below
            assert rater.get(f"{server.printed}?token={server.token}").status_code == 200
        spoofs = [{}, {"Host": f"127.0.0.1:{port}"}, {"X-Forwarded-For": "127.0.0.1"}, {"Authorization": "Bearer no"}]
        for headers in spoofs:
            response = http.get(f"{remote}api/next", params={"rater": "gina"}, headers=headers)
            assert response.status_code == 403, headers
            assert set(response.json()) == {"error"}
        assert http.get(remote).status_code == 403
        refused = http.post(f"{remote}api/vote", json={"presentation": "x", "rater": "gina", "choice": "tie"})
        assert refused.status_code == 403

        bearer = {"Authorization": f"Bearer {server.token}"}
        shown = http.get(f"{remote}api/next", params={"rater": "gina"}, headers=bearer)
        assert shown.status_code == 200
        assert vote(http, server, "x", "gina", "tie").status_code == 404  # server.url is loopback: no token needed
        voted = http.post(
            f"{remote}api/vote", json={"presentation": shown.json()["presentation"], "rater": "gina", "choice": "left"},
            headers=bearer,
        )  # fmt: skip
        assert voted.status_code == 200
        # the printed URL opens the page, and the cookie it sets carries the page's own requests
        with client() as browser:
            assert browser.get(f"{remote}?token={server.token}").status_code == 200
            assert browser.get(f"{remote}api/next", params={"rater": "hugo"}).status_code == 200
        assert http.get(f"{local}api/next", params={"rater": "ida"}).status_code == 200
    assert [v.rater for v in load_votes(sweep)] == ["gina"]


def plant_script(sweep: Path) -> None:
    """Every dpo completion becomes markup that would run script if the page rendered it as HTML."""
    (job,) = [p for p in sweep.iterdir() if (p / "result.json").exists() and json.loads(
        (p / "result.json").read_text())["algorithm"] == "dpo"]  # fmt: skip
    samples = job / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    samples.write_text("".join(json.dumps(row | {"completion": PLANTED}) + "\n" for row in rows))


def test_rating_in_the_browser(sweep: Path) -> None:
    """A rater types a name and votes by clicking (and once by key) in Chromium: no method name is ever on screen,
    the planted markup shows as text and runs nothing, the first three votes cover the three pairs, each vote
    credits the method on the side clicked, and the votes are there when the report is rebuilt."""
    from browser import chromium_page

    from harness.report import build_report

    plant_script(sweep)
    words = re.compile(r"\b(" + "|".join(METHODS) + r")\b")
    errors: list[str] = []
    with arena(sweep, "--min-dwell", "300") as server, chromium_page() as page:
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        # chromium_page opens its context offline (reports must not fetch); the arena is on this machine, and only
        # it may be reached
        page.context.set_offline(False)
        page.route(
            "**/*", lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort()
        )
        page.goto(server.url)
        page.fill("#rater-name", "juno")
        page.click("#rater-save")
        expected = []
        for turn in range(4):
            page.wait_for_selector(f'#arena:not([hidden])[data-shown="{turn + 1}"][data-ready="1"]')
            assert not words.search(page.inner_text("body")), page.inner_text("body")
            left, right = page.text_content("#left"), page.text_content("#right")
            side = "left" if left == PLANTED else "right" if right == PLANTED else "tie"
            expected.append(side != "tie")
            if turn < 3:
                page.click({"left": "#vote-left", "right": "#vote-right", "tie": "#vote-tie"}[side])
            else:
                page.keyboard.press({"left": "ArrowLeft", "right": "ArrowRight", "tie": "t"}[side])
        page.wait_for_selector('#arena[data-shown="5"]')  # the fourth vote is in: the next pair is on screen
        assert page.evaluate("document.images.length") == 0
        assert page.evaluate("window.pwned === undefined") and page.title() != "pwned"
        assert page.evaluate("localStorage.getItem('harness-arena-rater')") == "juno"
    assert not errors, errors  # no CSP violation and no script error either

    votes = load_votes(sweep)
    assert [v.rater for v in votes] == ["juno"] * 4
    assert {(v.method_a, v.method_b) for v in votes[:3]} == PAIRS  # least-voted pair first
    for record, planted in zip(votes, expected, strict=True):
        assert ("dpo" in (record.method_a, record.method_b)) == planted
        assert (record.winner == "dpo") if planted else (record.outcome == "tie")

    report = build_report(sweep)
    # ---- RATINGS IN THE REBUILT REPORT: the `human` section (harness/arena/report.py) ------------------------------
    # dpo won every vote it was in (the planted side was clicked) and the others tied: it rates highest, loses none
    human = {section.key: section for section in report.sections or []}.get("human")
    assert human is not None, "the rebuilt report has no human section"
    columns, rows = human.tables["human"]
    table = {row[columns.index("method")]: dict(zip(columns, row, strict=True)) for row in rows}
    assert set(table) == set(METHODS) and human.summary["human/votes"] == 4
    assert (table["dpo"]["wins"], table["dpo"]["losses"]) == (sum(expected), 0)
    assert max(table, key=lambda method: table[method]["rating"]) == "dpo"
    assert human.title in report.markdown and human.title in report.html.read_text()
