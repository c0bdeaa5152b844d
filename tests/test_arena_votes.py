"""Votes a person read, on pairs worth judging, with agreement that can be measured, from a server that bounds what a
client can make it read and write (harness/arena/rules.py, schedule.py, limits.py).

The rules are checked on worked numbers; the server in-process on a small synthetic sweep (three methods, some
completions identical or identical up to whitespace), over real loopback HTTP; the console script on the shared smoke
sweep; and the page in Chromium, as a rater uses it: a held key, a double press, a press while the next pair loads,
keys with modifiers."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from smoke_sweep import shared_smoke_sweep
from sqlalchemy import select
from test_arena import arena, client, next_pair, query, vote

from harness.arena.limits import BodyLimit
from harness.arena.rules import Dwell, identical_outputs, same_text, seed_pairs, wants_overlap
from harness.arena.schedule import Arena, Method
from harness.arena.server import BODY_MAX, create_app
from harness.arena.store import Store, default_url, load_votes
from harness.arena.store import presentations as store_presentations
from harness.arena.store import votes as store_votes
from harness.errors import HarnessError

EIGHT_MB = 8 * 2**20
# run in the page: every request the page makes waits 1.5 s before it is sent (a slow network)
SLOW_FETCH = """() => {
    const plain = window.fetch;
    window.fetch = (...args) => new Promise((done) => setTimeout(() => done(plain(...args)), 1500));
}"""


# -- the rules, worked ----------------------------------------------------------------------------------------------
def test_the_dwell_rule() -> None:
    """1.5 s + 10 ms per character of the two completions (whitespace runs count once), at most 6 s:
    an empty pair 1500 ms; 100 + 200 characters 1500 + 3000 = 4500 ms; 300 + 400 characters would be 8500, capped
    at 6000. Scaled to a base of 300 ms: 2 ms per character, at most 1200 ms. A base of 0: no dwell."""
    rule = Dwell()
    assert rule.required_ms("", "") == 1500
    assert rule.required_ms("x" * 100, "y" * 200) == 4500
    assert rule.required_ms("x" * 100, "  " + "y  " * 100) == 1500 + 10 * (100 + 199)
    assert rule.required_ms("x" * 300, "y" * 400) == 6000
    fast = Dwell.scaled(300)
    assert (fast.base_ms, fast.per_character_ms, fast.max_ms) == (300, 2.0, 1200)
    assert fast.required_ms("x" * 100, "y" * 200) == 900 and fast.required_ms("x" * 1000, "") == 1200
    assert Dwell.scaled(0).required_ms("x" * 1000, "y") == 0
    assert "1.5 s + 10 ms per character" in rule.describe() and "at most 6 s" in rule.describe()


def test_overlap_quota_gives_three_shared_of_fifteen() -> None:
    """At 0.15, a rater with nothing shared yet gets an item another rater judged on votes 1, 7 and 14 of 15 (while
    shared < ceil(0.15 * (votes + 1))): 3 shared items of 15, i.e. 20% after rounding up, never less than 15%."""
    shared, on_shared = 0, []
    for votes in range(15):
        if wants_overlap(shared, votes, 0.15):
            shared += 1
            on_shared.append(votes + 1)
    assert on_shared == [1, 7, 14]
    assert not any(wants_overlap(0, votes, 0.0) for votes in range(100))
    assert wants_overlap(19, 99, 0.2) and not wants_overlap(20, 99, 0.2)  # 0.2 * 100 = 20.000000000000004: still 20


def test_identical_outputs_are_counted_from_the_samples() -> None:
    """Same prompt and seed, same text up to whitespace: identical. Prompts that differ are not compared; methods
    with a common seed are compared on it alone, others on every pair of seeds."""
    rows_a = {
        0: [
            {"prompt": "p", "completion": "a b"},
            {"prompt": "q", "completion": "x"},
            {"prompt": "r", "completion": "y"},
        ]
    }
    rows_b = {
        0: [
            {"prompt": "p", "completion": " a\n b "},
            {"prompt": "q", "completion": "z"},
            {"prompt": "s", "completion": "y"},
        ]
    }
    counted = identical_outputs(rows_a, rows_b)
    assert (counted.identical, counted.compared, counted.share) == (1, 2, 0.5)
    assert same_text("a  b\n", "a b") and not same_text("a b", "ab")
    assert seed_pairs([0, 1, 2], [1, 2, 3]) == [(1, 1), (2, 2)]
    assert seed_pairs([0, 1], [5]) == [(0, 5), (1, 5)]


# -- the body limit, with a fake server ------------------------------------------------------------------------------
def test_body_limit_stops_reading_at_the_limit() -> None:
    """An 8 MB body in 1 KiB messages (as a chunked request arrives): the middleware reads 17 of them (16 KiB, then
    the one that crosses the limit), answers 413 with one line, and the app never runs. A body of exactly the limit,
    in pieces, reaches the app whole."""
    limit = 16 * 1024

    async def drive(total: int) -> tuple[int, list[dict[str, Any]], list[bytes]]:
        pulled, sent, seen = 0, [], []

        async def receive() -> dict[str, Any]:
            nonlocal pulled
            pulled += 1
            return {"type": "http.request", "body": b"x" * 1024, "more_body": pulled * 1024 < total}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            while True:
                message = await receive()
                seen.append(message["body"])
                if not message.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        await BodyLimit(app, limit)({"type": "http"}, receive, send)
        return pulled, sent, seen

    pulled, sent, seen = asyncio.run(drive(EIGHT_MB))
    assert pulled == 17 and not seen
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(sent[1]["body"]) == {"error": f"request body over {limit} bytes"}
    pulled, sent, seen = asyncio.run(drive(limit))
    assert pulled == 16 and b"".join(seen) == b"x" * limit and sent[0]["status"] == 200


# -- the server in-process, on a synthetic sweep -----------------------------------------------------------------
WORDS = {"m1": "plainly", "m2": "warmly", "m3": "briefly"}


def synthetic_methods(prompts: int = 12) -> dict[str, Method]:
    """Three methods, one seed, `prompts` prompts. On every third prompt all three say the same (m2 with other
    whitespace); on prompt 1, m1 and m2 agree; otherwise each says its own thing."""
    methods = {}
    for name, word in WORDS.items():
        rows = []
        for index in range(prompts):
            if index % 3 == 0:
                completion = f"the same answer {index}" if name != "m2" else f"the  same\nanswer {index} "
            elif index == 1 and name in ("m1", "m2"):
                completion = "one agreed answer"
            else:
                completion = f"answer {index}, {word}"
            rows.append({"prompt": f"prompt {index}", "completion": completion})
        methods[name] = Method(name, {0: rows})
    return methods


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """`app` under uvicorn in a thread, on a free loopback port; yields its base URL."""
    import uvicorn

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the in-process arena did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()


@contextmanager
def synthetic_arena(
    tmp_path: Path, token: str | None = None, require_token: bool = False, prompts: int = 12, **options: Any
) -> Iterator[SimpleNamespace]:
    """The synthetic sweep's arena served in-process (no dwell unless `options` give one)."""
    store = Store(default_url(tmp_path))
    scheduler = Arena(synthetic_methods(prompts), store, **({"dwell": Dwell.scaled(0)} | options))
    app = create_app(scheduler, token, require_token)
    try:
        with serving(app) as url:
            yield SimpleNamespace(url=url, arena=scheduler, store=store, app=app)
    finally:
        store.close()


def get_next(http: httpx.Client, url: str, rater: str) -> dict[str, Any]:
    response = http.get(f"{url}api/next", params={"rater": rater})
    assert response.status_code == 200, response.text
    return response.json()


def post_vote(http: httpx.Client, url: str, shown: dict[str, Any], rater: str, choice: str, **extra: Any):
    body = {"presentation": shown["presentation"], "rater": rater, "choice": choice, **extra}
    return http.post(f"{url}api/vote", json=body)


def test_identical_pairs_are_never_shown_and_are_counted(tmp_path: Path) -> None:
    """12 prompts x 3 pairs = 36 questions; 4 prompts are identical for every pair (one with other whitespace) and
    prompt 1 for m1-m2: 13 left out, 23 shown. A rater who votes until done sees each of the 23 once, never an
    identical pair."""
    with synthetic_arena(tmp_path) as served, client() as http:
        assert served.arena.identical == {("m1", "m2"): 5, ("m1", "m3"): 4, ("m2", "m3"): 4}
        first = get_next(http, served.url, "ann")
        assert first["remaining"] == 23 and first["voted"] == 0
        shown, turns = first, 0
        while not shown.get("done"):
            assert not same_text(shown["left"], shown["right"]), shown
            assert post_vote(http, served.url, shown, "ann", "tie").status_code == 200
            shown, turns = get_next(http, served.url, "ann"), turns + 1
        assert turns == 23 and shown == {"done": True, "voted": 23, "remaining": 0}
    votes = load_votes(tmp_path)
    assert len({(v.prompt_index, v.method_a, v.method_b) for v in votes}) == 23
    assert all(not same_text(v.completion_a, v.completion_b) for v in votes)


def test_next_writes_one_open_presentation_per_rater(tmp_path: Path) -> None:
    """200 GETs of /api/next by one rater, and 10 at once by another, write one presentation row each: the open one
    comes back until it is voted on."""
    with synthetic_arena(tmp_path) as served, client() as http:
        shown = [get_next(http, served.url, "bea") for _ in range(200)]
        assert len({pair["presentation"] for pair in shown}) == 1
        assert served.store.presentation_count() == 1
        at_once: list[str] = []
        threads = [
            threading.Thread(target=lambda: at_once.append(get_next(client(), served.url, "cal")["presentation"]))
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(at_once)) == 1 and served.store.presentation_count() == 2
        assert post_vote(http, served.url, shown[0], "bea", "left").status_code == 200
        assert get_next(http, served.url, "bea")["presentation"] != shown[0]["presentation"]
        assert served.store.presentation_count() == 3


def test_a_vote_before_the_dwell_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    """The default rule (no test setting): a vote at once gets 425 with one line and writes nothing; so does one whose
    page says the pair was visible for less than the dwell; after the dwell the vote counts, and the row says how
    long the pair was shown (server's clock) and visible (the page's report)."""
    with synthetic_arena(tmp_path, dwell=Dwell()) as served, client() as http:
        shown = get_next(http, served.url, "dee")
        required = Dwell().required_ms(shown["left"], shown["right"])
        assert shown["dwell_ms"] == required and 1500 < required < 2000  # short answers: 1.5 s and a little
        early = post_vote(http, served.url, shown, "dee", "left", visible_ms=60_000)  # the page cannot vouch for it
        assert early.status_code == 425, early.text
        reason = early.json()["error"]
        assert set(early.json()) == {"error"} and "\n" not in reason
        assert re.search(
            rf"too early: the pair has been shown for \d+ ms and a vote counts after {required} ms", reason
        )
        assert load_votes(tmp_path) == []
        time.sleep(required / 1000 + 0.05)
        short = post_vote(http, served.url, shown, "dee", "left", visible_ms=required - 1)
        assert short.status_code == 425 and "the page says" in short.json()["error"]
        assert load_votes(tmp_path) == []
        assert post_vote(http, served.url, shown, "dee", "left", visible_ms=required + 7).status_code == 200
        assert get_next(http, served.url, "dee")["presentation"] != shown["presentation"]
    (row,) = query(tmp_path, select(store_votes.c.dwell_ms, store_votes.c.visible_ms, store_votes.c.required_dwell_ms))
    assert row[0] >= required and row[1:] == (required + 7, required)
    (stored,) = load_votes(tmp_path)
    assert stored.dwell_ms == row[0] and stored.visible_ms == required + 7


def test_a_chunked_body_over_the_limit_gets_413_and_is_not_read(tmp_path: Path) -> None:
    """8 MB sent chunked (no Content-Length) over a raw socket: 413 with one line, the connection closed, and of
    the body the server read only the piece uvicorn handed over when the limit was crossed (it buffers at most 64 KiB
    of a body nobody receives, plus one socket read), nowhere near the 8 MB; no vote, no presentation."""
    with synthetic_arena(tmp_path) as served:
        port = int(served.url.rstrip("/").rsplit(":", 1)[1])
        head, sent = chunked_post(port, "/api/vote", EIGHT_MB)
        status, _, rest = head.partition(b"\r\n")
        assert status.startswith(b"HTTP/1.1 413"), head[:200]
        assert b"connection: close" in rest.lower()
        assert json.loads(rest.split(b"\r\n\r\n", 1)[1]) == {"error": f"request body over {BODY_MAX} bytes"}
        read = served.app.state.body_limit.most_read_refused
        assert BODY_MAX < read <= BODY_MAX + 64 * 1024 + 256 * 1024, read
        print(f"chunked 8 MB: the client got {sent} bytes into the socket, the server read {read}")
        assert served.store.presentation_count() == 0
    assert load_votes(tmp_path) == []


def chunked_post(port: int, path: str, total: int, headers: str = "") -> tuple[bytes, int]:
    """POST `total` bytes chunked (4 KiB chunks) while reading the answer; returns the answer's bytes and how much
    of the body the socket took before the server closed it."""
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Transfer-Encoding: chunked\r\n{headers}\r\n"
    )
    connection.sendall(request.encode())
    chunk = b"%x\r\n" % 4096 + b"7" * 4096 + b"\r\n"
    sent = 0

    def send_body() -> None:
        nonlocal sent
        try:
            while sent < total:
                connection.sendall(chunk)
                sent += 4096
            connection.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server closed the connection: what it should do

    sender = threading.Thread(target=send_body)
    sender.start()
    answer = b""
    try:
        while True:
            data = connection.recv(65536)
            if not data:
                break
            answer += data
    except OSError:
        pass  # reset after the answer
    sender.join(timeout=30)
    connection.close()
    return answer, sent


def test_require_token_asks_every_client(tmp_path: Path) -> None:
    """Behind a proxy every request comes from loopback, under the proxy's Host: with require_token, a loopback
    client needs the token too, and with it any Host will do (the token, not the address, says who it is)."""
    with synthetic_arena(tmp_path, token="s3cret", require_token=True) as served, client() as http:
        url = served.url
        refused = http.get(f"{url}api/next", params={"rater": "eve"})
        assert refused.status_code == 403 and "every client" in refused.json()["error"]
        assert http.get(url).status_code == 403
        assert (
            http.get(f"{url}api/next", params={"rater": "eve"}, headers={"Authorization": "Bearer no"}).status_code
            == 403
        )
        proxied = {"Authorization": "Bearer s3cret", "Host": "arena.example.org"}
        assert http.get(f"{url}api/next", params={"rater": "eve"}, headers=proxied).status_code == 200
        assert http.get(f"{url}?token=s3cret").status_code == 200  # sets the cookie the page's requests carry
        assert http.get(f"{url}api/next", params={"rater": "eve"}).status_code == 200
    (tmp_path / "open").mkdir()
    with synthetic_arena(tmp_path / "open", token="s3cret") as served, client() as http:  # the default: loopback is in
        assert http.get(f"{served.url}api/next", params={"rater": "eve"}).status_code == 200


def test_overlap_sends_a_share_to_a_second_rater(tmp_path: Path) -> None:
    """Two raters, 15 votes each, in turns, on 60 prompts (about 160 items: room for both to vote on their own):
    the quota gives 3 or more items both judged (the 1st, 7th and 14th of the vote of whoever asks first, each time
    counting the other's shares too); with --overlap 0, none."""
    for overlap, expected in ((0.15, range(3, 8)), (0.0, range(0, 1))):
        folder = tmp_path / str(overlap)
        folder.mkdir()
        with synthetic_arena(folder, overlap=overlap, prompts=60) as served, client() as http:
            for _, rater in itertools.product(range(15), ("ann", "bob")):
                shown = get_next(http, served.url, rater)
                if shown.get("done"):
                    continue
                assert post_vote(http, served.url, shown, rater, "left").status_code == 200
        items = {}
        for stored in load_votes(folder):
            items.setdefault((stored.prompt_index, stored.method_a, stored.method_b), set()).add(stored.rater)
        assert sum(len(raters) >= 2 for raters in items.values()) in expected, (overlap, items)


def test_a_database_from_before_the_dwell_is_read_and_upgraded(tmp_path: Path) -> None:
    """An arena.sqlite written before votes carried their dwell: load_votes reads it as it is (reading writes
    nothing), and the server's store adds the columns (NULL for the old votes) and the index, keeping every vote."""
    import sqlite3

    from harness.arena.store import DWELL_COLUMNS, Presentation

    store = Store(default_url(tmp_path))
    shown = Presentation("old", "ann", 0, "m1", "m2", 0, 0, "a", 1.0)
    store.add_presentation(shown)
    store.record_vote(shown, "ann", "a", "prompt 0", "one", "two")
    store.close()
    with sqlite3.connect(tmp_path / "arena.sqlite") as database:
        database.execute("DROP INDEX presentations_by_rater")
        for column in DWELL_COLUMNS:
            database.execute(f"ALTER TABLE votes DROP COLUMN {column}")
    (old,) = load_votes(tmp_path)
    assert (old.rater, old.outcome, old.dwell_ms, old.visible_ms) == ("ann", "a", None, None)
    with sqlite3.connect(tmp_path / "arena.sqlite") as database:
        assert "dwell_ms" not in {row[1] for row in database.execute("PRAGMA table_info(votes)")}
    Store(default_url(tmp_path)).close()
    with sqlite3.connect(tmp_path / "arena.sqlite") as database:
        assert set(DWELL_COLUMNS) <= {row[1] for row in database.execute("PRAGMA table_info(votes)")}
        assert "presentations_by_rater" in {row[1] for row in database.execute("PRAGMA index_list(presentations)")}
    assert load_votes(tmp_path) == [old]


def test_the_arena_refuses_a_sweep_with_nothing_to_judge(tmp_path: Path) -> None:
    same = {name: Method(name, {0: [{"prompt": "p", "completion": "same"}]}) for name in ("m1", "m2")}
    with pytest.raises(HarnessError, match="every pair of completions is identical"):
        Arena(same, Store(default_url(tmp_path)))
    with pytest.raises(HarnessError, match=r"--overlap 1\.5: expected a share from 0 to 1"):
        Arena(synthetic_methods(), Store(default_url(tmp_path)), overlap=1.5)


# -- the console script, on the shared smoke sweep ---------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return shared_smoke_sweep(tmp_path_factory)


@pytest.fixture
def sweep(smoke, tmp_path: Path) -> Path:
    return smoke.copy(tmp_path)


def test_two_raters_fifteen_votes_each_give_agreement_in_the_report(sweep: Path) -> None:
    """The acceptance check: two raters vote 15 items each through the HTTP API (one after the other, the worst
    case for overlap: the second can only share items with the first), and the rebuilt report's human section
    measures agreement between raters over at least 3 shared items."""
    from harness.report import build_report

    with arena(sweep) as server, client() as http:
        for rater in ("ann", "bob"):
            for turn in range(15):
                shown = next_pair(http, server, rater)
                assert vote(http, server, shown["presentation"], rater, ("left", "right")[turn % 2]).status_code == 200
    report = build_report(sweep)
    (human,) = [section for section in report.sections if section.key == "human"]
    shared = human.summary["human/shared_items"]
    print(f"2 raters x 15 votes: {shared:.0f} items judged by both")
    assert shared >= 3 and "human/rater_agreement" in human.summary
    line = next(line for line in report.markdown.splitlines() if line.startswith("Rater agreement"))
    assert re.match(
        rf"Rater agreement: on {shared:.0f} items \(one prompt .*\) voted on by two or more raters, of ", line
    )
    assert "Identical outputs" in report.markdown and "dpo vs sft" in report.markdown


def test_token_from_the_environment_or_a_file_never_in_ps(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$HARNESS_ARENA_TOKEN or --token-file: the server needs it from other clients (and with --require-token from
    loopback too) while its command line, as `ps` shows it, does not carry it."""
    secret = "from-the-environment-42"
    monkeypatch.setenv("HARNESS_ARENA_TOKEN", secret)
    with arena(sweep, "--require-token") as server, client() as http:
        assert server.token == secret
        assert secret not in Path(f"/proc/{server.process.pid}/cmdline").read_text()
        assert http.get(f"{server.url}api/next", params={"rater": "fay"}).status_code == 403
        bearer = {"Authorization": f"Bearer {secret}"}
        assert http.get(f"{server.url}api/next", params={"rater": "fay"}, headers=bearer).status_code == 200
    monkeypatch.delenv("HARNESS_ARENA_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-7\n")
    with arena(sweep, "--token-file", str(token_file), "--require-token") as server, client() as http:
        assert server.token == "from-a-file-7"
        assert "from-a-file-7" not in Path(f"/proc/{server.process.pid}/cmdline").read_text()
        assert http.get(f"{server.url}?token=from-a-file-7").status_code == 200
    help_text = subprocess.run([str(server.process.args[0]), "--help"], capture_output=True, text=True).stdout
    assert "shows in `ps`" in " ".join(help_text.split()) and "--require-token" in help_text


# -- the page in Chromium ---------------------------------------------------------------------------------------------
@contextmanager
def rating_page(server) -> Iterator[Any]:
    """Chromium on the arena's page, signed in as `rita`; console errors fail the test."""
    from browser import chromium_page

    errors: list[str] = []
    with chromium_page() as page:
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.context.set_offline(False)
        page.route(
            "**/*", lambda route: route.continue_() if route.request.url.startswith(server.url) else route.abort()
        )
        page.goto(server.url)
        page.fill("#rater-name", "rita")
        page.click("#rater-save")
        page.wait_for_selector('#arena:not([hidden])[data-shown="1"]')
        yield page
    assert not [error for error in errors if "425" not in error], errors


def pair_on_screen(page: Any) -> tuple[str, str]:
    return page.text_content("#left"), page.text_content("#right")


def wait_ready(page: Any, shown: int) -> None:
    page.wait_for_selector(f'#arena[data-shown="{shown}"][data-ready="1"]')


def test_a_rater_casts_one_vote_per_pair_shown(sweep: Path) -> None:
    """In Chromium, with the default dwell: keys pressed before it passed cast nothing; then a held key (30 repeats)
    casts one vote; a double press, one; Enter and Space on the button just clicked, none; Ctrl, Alt, Shift and Meta
    with a vote key, none; a press while the vote is sent and the next pair loads (both slowed to 1.5 s), none.
    Every vote is on a pair that was on screen, after its dwell, and no pair shown is identical."""
    with arena(sweep, "--min-dwell", "1500") as server, rating_page(server) as page:
        screens = [pair_on_screen(page)]
        # 1. too early: the buttons are disabled and keys do nothing
        assert page.is_disabled("#vote-left") and page.get_attribute("#arena", "data-ready") == "0"
        page.keyboard.press("ArrowLeft")
        page.keyboard.press("b")
        page.wait_for_timeout(300)
        assert load_votes(sweep) == []
        # 2. a held key: one vote, however long it repeats (while the next pair loads and after)
        wait_ready(page, 1)
        page.keyboard.down("ArrowLeft")
        for _ in range(30):
            page.keyboard.down("ArrowLeft")  # Playwright sends these with repeat: true, as a held key does
            page.wait_for_timeout(20)
        page.wait_for_selector('#arena[data-shown="2"]')
        # script-made repeats, even without the repeat flag, are not a rater's
        page.evaluate("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowLeft', repeat: true}))")
        page.keyboard.up("ArrowLeft")
        screens.append(pair_on_screen(page))
        assert len(load_votes(sweep)) == 1
        # 3. a double press once the pair can be voted on: one vote
        wait_ready(page, 2)
        page.keyboard.press("t")
        page.keyboard.press("t")
        page.wait_for_selector('#arena[data-shown="3"]')
        screens.append(pair_on_screen(page))
        assert len(load_votes(sweep)) == 2
        # 4. a click, then Enter and Space on the next pair: the clicked button lost its focus, nothing more
        wait_ready(page, 3)
        page.dblclick("#vote-right")
        page.wait_for_selector('#arena[data-shown="4"]')
        screens.append(pair_on_screen(page))
        wait_ready(page, 4)
        for key in ("Enter", " ", "Control+a", "Alt+ArrowLeft", "Shift+b", "Meta+ArrowRight", "Shift+ArrowDown"):
            page.keyboard.press(key)
        page.wait_for_timeout(300)
        assert len(load_votes(sweep)) == 3 and page.get_attribute("#arena", "data-shown") == "4"
        # 5. a slow network: presses while the vote is sent and the next pair loads cast nothing
        page.evaluate(SLOW_FETCH)
        page.click("#vote-left")
        for key in ("b", "a", "t", "ArrowRight"):
            page.keyboard.press(key)
            page.wait_for_timeout(150)
        page.click("#vote-tie", force=True, no_wait_after=True, timeout=2000)
        page.wait_for_selector('#arena[data-shown="5"]', timeout=10_000)
        for key in ("b", "a"):
            page.keyboard.press(key)
        page.wait_for_timeout(300)
        screens.append(pair_on_screen(page))
    votes = load_votes(sweep)
    assert len(votes) == 4, [(v.outcome, v.dwell_ms) for v in votes]
    assert [v.outcome != "tie" for v in votes] == [True, False, True, True]
    rows = query(sweep, select(store_votes.c.dwell_ms, store_votes.c.visible_ms, store_votes.c.required_dwell_ms))
    for dwell_ms, visible_ms, required in rows:
        assert required >= 1500 and dwell_ms >= required and visible_ms >= required
    for stored, (left, right) in zip(votes, screens, strict=False):
        assert {stored.completion_a, stored.completion_b} == {left, right}  # the vote is on the pair on screen
    assert all(not same_text(left, right) for left, right in screens)
    issued = query(sweep, select(store_presentations.c.id))
    assert len(issued) == 5  # one per pair shown: four voted on, the fifth open


def test_identical_pairs_never_reach_the_page(sweep: Path) -> None:
    """The smoke sweep's sft and dpo say the same on most prompts: a rater clicking through every pair there is in
    Chromium never sees two identical completions, and sees every pair that differs once."""
    store = Store(default_url(sweep))
    expected = Arena.for_sweep(sweep, store)
    store.close()
    questions = len({item.question for item in expected.items})
    with arena(sweep) as server, rating_page(server) as page:
        for turn in range(1, questions + 1):
            page.wait_for_selector(f'#arena[data-shown="{turn}"][data-ready="1"]')
            left, right = pair_on_screen(page)
            assert not same_text(left, right), (turn, left)
            page.click("#vote-tie")
        page.wait_for_selector("#done:not([hidden])")
    votes = load_votes(sweep)
    assert len(votes) == questions and sum(expected.identical.values()) > 0
    assert all(not same_text(v.completion_a, v.completion_b) for v in votes)
