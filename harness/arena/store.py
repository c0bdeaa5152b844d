"""Where the arena's votes live: a SQL database (SQLite in the sweep folder by default, any SQLAlchemy URL otherwise),
written through SQLAlchemy Core.

Two tables. `presentations`: every pair the server showed a rater, with which method it put on the left and when it
first served it, so a vote names a presentation and the server, not the client, knows which method was where and
for how long the pair has been shown. A rater has at most one open (not voted on) presentation at a time: asking
again returns it rather than writing another row. `votes`: one row per vote, the methods in canonical order
(method_a < method_b), with the prompt and both completions as shown, which side each was on, and how long the pair
was on screen before the vote (measured by the server; the page's own measure beside it).

What holds a vote in place:
- an acknowledged vote is committed before the answer goes out; SQLite runs in WAL mode with synchronous=FULL, so
  the commit is on disk (the WAL is fsynced) and survives `kill -9` of the server or a power cut;
- the unique constraint on (rater, prompt_index, method_a, method_b) lets one rater vote once per prompt and pair,
  and the one on presentation_id makes a replayed vote a conflict, whatever the interleaving of concurrent raters;
- on SQLite a vote's checks and its insert run in one `BEGIN IMMEDIATE` transaction: a deferred one would start as a
  reader and could fail to become a writer when another rater committed in between (SQLITE_BUSY, no retry).

A presentation is written with synchronous=NORMAL: it survives the server's crash (the WAL is in the OS's hands once
the commit returns) and is fsynced with the next vote, but its commit does not wait for the disk; each fsync costs
milliseconds, and SQLite commits one at a time, so this halves what concurrent raters wait for. A presentation lost
to a power cut only makes its vote a 404 ("unknown presentation"), and the page asks for another pair.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from harness.arena.votes import OUTCOMES, Vote
from harness.errors import HarnessError

DB_FILE = "arena.sqlite"
DWELL_COLUMNS = ("dwell_ms", "visible_ms", "required_dwell_ms")  # added to `votes` later: an older database lacks them
SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another's transaction before giving up

metadata = MetaData()

presentations = Table(
    "presentations",
    metadata,
    Column("id", String(64), primary_key=True),  # random, unguessable; names nothing
    Column("rater", String(200), nullable=False),
    Column("prompt_index", Integer, nullable=False),
    Column("method_a", String(400), nullable=False),
    Column("method_b", String(400), nullable=False),
    Column("seed_a", Integer, nullable=False),  # whose samples were shown for method_a
    Column("seed_b", Integer, nullable=False),
    Column("shown_left", String(1), nullable=False),  # "a" or "b": which method's completion was on the left
    Column("created_at", Float, nullable=False),  # when the server first served it: the dwell counts from here
    CheckConstraint("method_a < method_b", name="presentation_canonical_order"),
    CheckConstraint("shown_left IN ('a', 'b')", name="presentation_side"),
    Index("presentations_by_rater", "rater"),
)

votes = Table(
    "votes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("presentation_id", String(64), ForeignKey("presentations.id"), nullable=False, unique=True),
    Column("rater", String(200), nullable=False),
    Column("prompt_index", Integer, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("method_a", String(400), nullable=False),
    Column("method_b", String(400), nullable=False),
    Column("completion_a", Text, nullable=False),
    Column("completion_b", Text, nullable=False),
    Column("outcome", String(3), nullable=False),
    Column("seed_a", Integer, nullable=False),
    Column("seed_b", Integer, nullable=False),
    Column("shown_left", String(1), nullable=False),
    Column("created_at", Float, nullable=False),
    # how long the pair was on screen before the vote: from the presentation's first serving to the vote (the
    # server's clock), what the page reported as visible (None: not reported), and what the dwell rule required;
    # None in all three for votes cast before the arena measured them
    Column("dwell_ms", Integer, nullable=True),
    Column("visible_ms", Integer, nullable=True),
    Column("required_dwell_ms", Integer, nullable=True),
    UniqueConstraint("rater", "prompt_index", "method_a", "method_b", name="one_vote_per_rater_prompt_and_pair"),
    CheckConstraint("method_a < method_b", name="vote_canonical_order"),
    CheckConstraint("outcome IN ('a', 'b', 'tie')", name="vote_outcome"),
)


@dataclass(frozen=True)
class Presentation:
    """One pair as the server showed it to one rater."""

    id: str
    rater: str
    prompt_index: int
    method_a: str
    method_b: str
    seed_a: int
    seed_b: int
    shown_left: str  # "a" or "b"
    created_at: float


@dataclass(frozen=True)
class Dwelled:
    """How long a pair was on screen before its vote, in ms: by the server's clock, as the page reported it (None:
    not reported), and what the dwell rule required."""

    dwell_ms: int | None = None
    visible_ms: int | None = None
    required_ms: int | None = None

    def columns(self) -> dict[str, int | None]:
        return {"dwell_ms": self.dwell_ms, "visible_ms": self.visible_ms, "required_dwell_ms": self.required_ms}


class Rejected(Exception):
    """A request the arena refused, with the HTTP status that says why (404 unknown, 403 not yours, 409 replayed,
    425 too early)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def default_url(sweep_dir: Path | str) -> str:
    """The embedded default: SQLite at SWEEP_DIR/arena.sqlite."""
    return f"sqlite:///{(Path(sweep_dir) / DB_FILE).resolve()}"


def printable_url(url: str) -> str:
    """A database URL as it may be printed: without its password."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _backend(url: str) -> str:
    try:
        return make_url(url).get_backend_name()
    except ArgumentError as error:
        raise HarnessError(
            f"arena database {url!r}: {error} (expected an SQLAlchemy URL, e.g. sqlite:///votes.sqlite)"
        ) from None


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for another database or an in-memory SQLite)."""
    database = make_url(url).database if _backend(url) == "sqlite" else None
    if database in (None, "", ":memory:") or str(database).startswith("file::memory:"):
        return None
    return Path(database)


def _engine(url: str, **kwargs: Any) -> Engine:
    try:
        return create_engine(url, **kwargs)
    except ImportError as error:
        raise HarnessError(f"arena database {printable_url(url)!r}: {error} (install the database's driver)") from None
    except (ArgumentError, ValueError) as error:
        raise HarnessError(
            f"arena database {printable_url(url)!r}: {error} (expected an SQLAlchemy URL, e.g. sqlite:///votes.sqlite)"
        ) from None


def _durable_sqlite(engine: Engine) -> None:
    """WAL with synchronous=FULL (a commit is fsynced before it returns), a busy timeout for concurrent writers, and
    SQLAlchemy in charge of BEGIN, so a write transaction can be `BEGIN IMMEDIATE` (module docstring)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver emits no BEGIN of its own; _on_begin does
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        options = connection.get_execution_options()
        if options.get("write", False):
            synchronous = "FULL" if options.get("durable", True) else "NORMAL"
            connection.exec_driver_sql(f"PRAGMA synchronous = {synchronous}")  # outside a transaction, as it must be
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            connection.exec_driver_sql("BEGIN")


class Store:
    """The arena's votes and presentations in one database; safe to share between the server's threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.sqlite = _backend(url) == "sqlite"
        sqlite_file = _sqlite_file(url)
        if self.sqlite and sqlite_file is None:
            raise HarnessError(
                f"arena database {url!r}: in memory, every vote is lost when the server stops "
                "(expected a file, e.g. sqlite:///votes.sqlite)"
            )
        if sqlite_file is not None and not sqlite_file.parent.is_dir():
            raise HarnessError(f"arena database {url!r}: folder {sqlite_file.parent} does not exist")
        # the server's worker threads each hold a connection while they work; more than SQLite's one writer at a
        # time is only waiting, but waiting in the pool would hit the pool's timeout instead of the busy timeout
        self.engine = _engine(url, pool_size=20, max_overflow=20, pool_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        if self.sqlite:
            _durable_sqlite(self.engine)
        try:
            metadata.create_all(self.engine)
            self._upgrade()
        except OperationalError as error:
            raise HarnessError(
                f"arena database {printable_url(url)!r}: {error.orig} (expected a database the arena can write)"
            ) from None

    def _upgrade(self) -> None:
        """Bring a database written by an older arena up to these tables: the dwell columns (NULL in its votes) and the
        index on presentations' raters."""
        inspector = inspect(self.engine)
        existing = {column["name"] for column in inspector.get_columns(votes.name)}
        indexes = {index["name"] for index in inspector.get_indexes(presentations.name)}
        columns = [name for name in DWELL_COLUMNS if name not in existing]
        missing = [index for index in presentations.indexes if index.name not in indexes]
        if not columns and not missing:
            return
        with self._write() as connection, connection.begin():
            for name in columns:
                connection.exec_driver_sql(f"ALTER TABLE {votes.name} ADD COLUMN {name} INTEGER")
            for index in missing:
                index.create(connection)

    def close(self) -> None:
        self.engine.dispose()

    def _write(self, durable: bool = True):
        """A connection whose transaction takes the write lock at once (SQLite's BEGIN IMMEDIATE) and, if `durable`,
        is on disk when its commit returns."""
        return self.engine.connect().execution_options(write=True, durable=durable)

    def add_presentation(self, presentation: Presentation) -> None:
        with self._write(durable=False) as connection, connection.begin():
            connection.execute(presentations.insert().values(**presentation.__dict__))

    def open_presentations(self, rater: str, limit: int = 5) -> list[Presentation]:
        """The presentations issued to `rater` that have no vote yet, newest first (at most `limit`)."""
        query = (
            select(presentations)
            .where(presentations.c.rater == rater, presentations.c.id.not_in(select(votes.c.presentation_id)))
            .order_by(presentations.c.created_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [Presentation(**row._asdict()) for row in connection.execute(query)]

    def presentation_count(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(presentations)).scalar_one()

    def presentation(self, presentation_id: str) -> Presentation | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(presentations).where(presentations.c.id == presentation_id)).first()
        return Presentation(**row._asdict()) if row is not None else None

    def record_vote(
        self,
        presentation: Presentation,
        rater: str,
        outcome: str,
        prompt: str,
        completion_a: str,
        completion_b: str,
        dwell: Dwelled | None = None,
    ) -> Vote:
        """Insert the vote on `presentation` (with how long the pair was on screen, where measured) and commit it
        before returning; `Rejected` (nothing written) when the presentation was issued to someone else, was voted on
        already, or its rater voted on this prompt and pair under another presentation."""
        if outcome not in OUTCOMES:
            raise Rejected(422, f"outcome {outcome!r}: expected one of {', '.join(OUTCOMES)}")
        if rater != presentation.rater:
            raise Rejected(403, f"presentation {presentation.id} was not issued to rater {rater!r}")
        row = {
            "presentation_id": presentation.id,
            "rater": rater,
            "prompt_index": presentation.prompt_index,
            "prompt": prompt,
            "method_a": presentation.method_a,
            "method_b": presentation.method_b,
            "completion_a": completion_a,
            "completion_b": completion_b,
            "outcome": outcome,
            "seed_a": presentation.seed_a,
            "seed_b": presentation.seed_b,
            "shown_left": presentation.shown_left,
            "created_at": time.time(),
            **(dwell or Dwelled()).columns(),
        }
        try:
            with self._write() as connection, connection.begin():
                # under BEGIN IMMEDIATE nobody else writes between these checks and the insert; elsewhere the
                # unique constraints below still refuse the second of two racing votes
                if connection.execute(select(votes.c.id).where(votes.c.presentation_id == presentation.id)).first():
                    raise Rejected(409, f"presentation {presentation.id} was voted on already (a replayed vote)")
                same_pair = (
                    (votes.c.rater == rater)
                    & (votes.c.prompt_index == presentation.prompt_index)
                    & (votes.c.method_a == presentation.method_a)
                    & (votes.c.method_b == presentation.method_b)
                )
                if connection.execute(select(votes.c.id).where(same_pair)).first():
                    raise Rejected(
                        409, f"rater {rater!r} already voted on prompt {presentation.prompt_index} for this pair"
                    )
                connection.execute(votes.insert().values(**row))
        except IntegrityError as error:
            raise Rejected(409, "this vote was recorded already (a replayed vote)") from error
        return _vote(row)

    def tallies(self) -> list[tuple[str, int, str, str, int, int]]:
        """(rater, prompt_index, method_a, method_b, seed_a, seed_b) of every vote: who judged which item."""
        columns = ("rater", "prompt_index", "method_a", "method_b", "seed_a", "seed_b")
        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(select(*(votes.c[name] for name in columns)))]


def _vote(row: Any) -> Vote:
    return Vote(
        rater=row["rater"],
        prompt_index=row["prompt_index"],
        prompt=row["prompt"],
        method_a=row["method_a"],
        method_b=row["method_b"],
        completion_a=row["completion_a"],
        completion_b=row["completion_b"],
        outcome=row["outcome"],
        # one seed per vote: the arena shows both methods' samples of the same seed wherever both have it; where
        # they share none, seed_a and seed_b differ and the database keeps both
        seed=row["seed_a"],
        created_at=row["created_at"],
        dwell_ms=row.get("dwell_ms"),
        visible_ms=row.get("visible_ms"),
    )


def _read_votes(connection: Any) -> list[Vote]:
    # an older database has no dwell columns: read the columns it has (reading writes nothing, so it is not upgraded)
    existing = {column["name"] for column in inspect(connection).get_columns(votes.name)}
    columns = [column for column in votes.c if column.name in existing]
    return [_vote(row._mapping) for row in connection.execute(select(*columns).order_by(votes.c.id))]


def load_votes(url_or_sweep_dir: Path | str) -> list[Vote]:
    """Every vote, oldest first, from a database URL or a sweep folder's default database; [] where there is no
    database or it holds no votes yet. Reads only: creates no file and no table."""
    if isinstance(url_or_sweep_dir, Path) or "://" not in str(url_or_sweep_dir):
        folder = Path(url_or_sweep_dir)
        if not folder.is_dir():
            raise HarnessError(f"arena votes: {folder} is not a directory (expected a sweep folder or a database URL)")
        url = default_url(folder)
    else:
        url = str(url_or_sweep_dir)
    sqlite_file = _sqlite_file(url)
    if sqlite_file is not None and not sqlite_file.exists():
        return []
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            if not inspect(connection).has_table(votes.name):
                return []
            return _read_votes(connection)
    except OperationalError as error:
        raise HarnessError(
            f"arena database {printable_url(url)!r}: {error.orig} (expected the arena's vote database)"
        ) from None
    finally:
        engine.dispose()
