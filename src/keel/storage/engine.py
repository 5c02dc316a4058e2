"""Engines and transactions for SQLite and PostgreSQL.

SQLite runs in WAL mode with foreign keys on and a busy timeout. Writers are serialised in-process by a lock and in
the database by ``BEGIN IMMEDIATE``, so two writers never deadlock on a lock upgrade and readers never block.
PostgreSQL uses psycopg 3; an optional schema (one organisation per schema) is set on every connection's
``search_path``, which keeps every query single-schema for Citus.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's own busy handler is the only cross-process queue
    fcntl = None  # type: ignore[assignment]

Dialect = Literal["sqlite", "postgresql"]
DEFAULT_URL = "sqlite:///keel.db"
_AFTER_READ = "keel_after_read"  # ``Connection.info`` key: writes to run when a ``read()`` ends

# SQLite has no decimal type; numbers are stored as REAL, so bind Decimals as floats.
sqlite3.register_adapter(Decimal, float)


def normalise_url(url: str) -> tuple[str, str | None]:
    """Map user-facing URLs onto SQLAlchemy driver URLs; split off ``?schema=`` for PostgreSQL."""
    schema = None
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "postgresql":
        query = dict(parsed.query)
        raw = query.pop("schema", None)
        schema = raw if isinstance(raw, str) else None
        parsed = parsed.set(drivername="postgresql+psycopg", query=query)
    return parsed.render_as_string(hide_password=False), schema


SQLITE_POOL_SIZE = 20  # kept open (see Database._make_engine)
SQLITE_POOL_OVERFLOW = 30  # opened beyond that under bursts, closed when returned
# PostgreSQL connections kept open per server process: 16 concurrent creates on a pool of 10 opened and closed a
# backend per request beyond the tenth (528 against 738 creates/s in bench/api.py). Size the server's
# max_connections for workers x (PG_POOL_SIZE + 20 overflow), or put PgBouncer in front (docs/deploy.md).
PG_POOL_SIZE = 20


BUSY_TIMEOUT_S = 30.0  # as PRAGMA busy_timeout


def _flock_within(fd: int, timeout: float) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    deadline, pause = time.monotonic() + timeout, 0.0002
    while True:
        time.sleep(pause)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise sqlite3.OperationalError("database is locked (another process has held the write lock for "
                                               f"{timeout:.0f} s)") from None
            pause = min(pause * 2, 0.002)


def _writer_lock_path(engine: Engine) -> str | None:
    """``<database file>-writer``: beside the ``-wal`` and ``-shm`` files SQLite keeps; None in memory."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{os.path.abspath(database)}-writer"


class Database:
    """One organisation's database: an engine plus the write discipline Keel relies on."""

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False,
                 sqlite_functions: Sequence[Callable[[Any], None]] = ()) -> None:
        """``sqlite_functions`` register user functions on each new SQLite connection (the formula language
        needs REGEX and number formatting, which SQLite lacks); storage stays ignorant of what they are."""
        self.url = url
        self._sqlite_functions = tuple(sqlite_functions)
        driver_url, self.schema = normalise_url(url)
        self.dialect: Dialect = "postgresql" if driver_url.startswith("postgresql") else "sqlite"
        self._write_lock = threading.RLock()
        self._local = threading.local()  # per thread: the write transactions open (innermost last)
        self.engine: Engine = self._make_engine(driver_url, echo)
        self._lock_path = _writer_lock_path(self.engine) if self.dialect == "sqlite" else None
        self._lock_fd: tuple[int, int] | None = None  # (pid, fd): a forked child must open its own description
        self._lock_depth = 0  # guarded by _write_lock

    def _make_engine(self, url: str, echo: bool) -> Engine:
        if self.dialect == "sqlite":
            memory = ":memory:" in url or url.rstrip("/").endswith("sqlite:")
            kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
            parsed = sa.engine.make_url(url)
            if memory:
                kwargs["poolclass"] = sa.pool.StaticPool
            elif issubclass(cast(Any, parsed.get_dialect()).get_pool_class(parsed), sa.pool.QueuePool):
                # A server thread per concurrent request each checks a connection out (the token check, reads);
                # with SQLAlchemy's default five, the rest were opened and closed per request, and opening one
                # (pragmas, functions, parsing the schema) cost more than the request. SQLite connections are
                # cheap to keep, so the pool holds as many as the server's worker threads usually need.
                kwargs.update(pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_POOL_OVERFLOW)
            engine = sa.create_engine(url, echo=echo, **kwargs)

            @event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                if not memory:
                    cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA cache_size=-65536")
                cur.close()
                for register in self._sqlite_functions:
                    register(dbapi_conn)

            @event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

            return engine
        engine = sa.create_engine(url, echo=echo, pool_size=PG_POOL_SIZE, max_overflow=20, pool_pre_ping=True,
                                  poolclass=NullPool if url.endswith("nullpool") else None)
        if self.schema:
            schema = self.schema

            @event.listens_for(engine, "connect")
            def _on_pg_connect(dbapi_conn: Any, _record: Any) -> None:
                with dbapi_conn.cursor() as cur:
                    cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    cur.execute(f'SET search_path TO "{schema}"')
                dbapi_conn.commit()

        return engine

    def _writers(self) -> list[Connection]:
        w: list[Connection] | None = getattr(self._local, "writers", None)
        if w is None:
            w = self._local.writers = []
        return w

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it holds the single-writer lock from BEGIN IMMEDIATE to COMMIT."""
        writers = self._writers()
        if self.dialect == "sqlite":
            with self._write_lock, self._process_lock(), self.engine.connect() as conn:
                conn = conn.execution_options(sqlite_begin="BEGIN IMMEDIATE")
                with conn.begin():
                    writers.append(conn)
                    try:
                        yield conn
                    finally:
                        writers.pop()
        else:
            with self.engine.begin() as conn:
                writers.append(conn)
                try:
                    yield conn
                finally:
                    writers.pop()

    @contextmanager
    def _process_lock(self) -> Iterator[None]:
        """The writer queue across processes (``keel serve --workers N`` on one SQLite file).

        SQLite's busy handler polls with sleeps of up to 100 ms, so two processes contending for the write lock
        lost most of their throughput to sleeping and their p99 to the longest sleep. Waiting on a ``flock`` of a
        side file, polled every 2 ms at most, the next writer starts almost as soon as the lock is released, and
        gives up after SQLite's busy timeout ("database is locked") as before, so a stuck process never hangs the
        others. Called with ``_write_lock`` held, so one thread per process waits here and the depth counter needs
        no lock of its own."""
        if self._lock_path is None or fcntl is None:
            yield
            return
        if self._lock_fd is None or self._lock_fd[0] != os.getpid():
            self._lock_fd = (os.getpid(), os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600))
        fd = self._lock_fd[1]
        if self._lock_depth == 0:
            _flock_within(fd, BUSY_TIMEOUT_S)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work; it sees one consistent snapshot. Writes a reader asked for with
        ``write_after_read`` run when it ends without an error, before control returns to the caller."""
        with self.engine.connect() as conn:
            after: list[Callable[[Connection], None]] = []
            conn.info[_AFTER_READ] = after
            try:
                with conn.begin():
                    yield conn
            finally:
                conn.info.pop(_AFTER_READ, None)
        if after:
            self._write(after)

    def write_after_read(self, conn: Connection, write: Callable[[Connection], None]) -> None:
        """Have ``write(conn)`` run in a write transaction without writing on a read connection.

        - ``conn`` is (or this thread already holds) a write transaction: it runs there at once, so it commits or
          rolls back with that work, and SQLite's single writer is never asked for twice by one thread.
        - ``conn`` is a ``read()``: it runs in a short transaction of its own just after the read ends (and after
          its connection is returned to the pool), so read snapshots and read-only transactions never write, and
          a failure reaches the reader's caller before it sees the result.
        - Any other connection (the caller's own unit of work): it runs there at once."""
        writers = self._writers()
        if writers:
            write(conn if any(w is conn for w in writers) else writers[-1])
            return
        pending: list[Callable[[Connection], None]] | None = conn.info.get(_AFTER_READ)
        if pending is not None:
            pending.append(write)
        else:
            write(conn)

    def _write(self, writes: Sequence[Callable[[Connection], None]]) -> None:
        writers = self._writers()
        if writers:  # a read nested in this thread's write transaction
            for w in writes:
                w(writers[-1])
            return
        with self.transaction() as conn:
            for w in writes:
                w(conn)

    def dispose(self) -> None:
        self.engine.dispose()
        with self._write_lock:
            if self._lock_fd is not None and self._lock_fd[0] == os.getpid() and self._lock_depth == 0:
                os.close(self._lock_fd[1])
                self._lock_fd = None


def in_transaction(conn: Connection) -> bool:
    return conn.in_transaction()


_SAVEPOINTS = itertools.count(1)


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint issued as driver SQL: the same semantics as ``conn.begin_nested()`` for a block that does not
    need the SQLAlchemy transaction object, at a fraction of its cost (``begin_nested`` compiles its SAVEPOINT and
    RELEASE statements anew on every call, which dominated a one-row save). Leaving the block by an exception rolls
    back to the savepoint and re-raises."""
    name = f"keel_sp_{next(_SAVEPOINTS)}"
    conn.exec_driver_sql(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        try:
            conn.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {name}")
            conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
        except sa.exc.DBAPIError:
            pass  # the transaction itself is gone (connection lost, database-level rollback): the caller's error wins
        raise
    conn.exec_driver_sql(f"RELEASE SAVEPOINT {name}")
