"""Where the ledger keeps its books: SQLite for one shop, PostgreSQL for a chain.

The two speak one SQL here (``?`` placeholders, ``INSERT … ON CONFLICT``, ``RETURNING``),
so the ledger's logic is written once and the same tests run on both; what differs —
how a transaction takes its locks, the placeholder, the auto-numbered key, which
errors mean "try the transaction again" — is a few attributes of each :class:`Store`.

A batch of check-ins is a few statements, whatever its size: a list of keys is one
parameter (:meth:`Store.any_of`, a JSON array), and on PostgreSQL rows are inserted or
updated by one statement each (:meth:`Store.insert`, :meth:`Store.update`: the rows as
one JSON parameter, an array of arrays). So the statement texts do not change with
the batch's size: psycopg converts each once and prepares it, instead of parsing a
query of thousands of placeholders per batch, and no value costs Python work in the
driver (both were most of the backend's CPU when profiled); the JSON is written by
``json``'s C encoder and read by PostgreSQL's.

The schema is versioned: :data:`MIGRATIONS` holds every step from an empty database
(version 1 is the demo ledger of earlier releases), and :meth:`Store.migrate` applies
the missing ones at start, each in its own transaction, so a ledger written by an
older backend is carried forward, not replaced. Several PostgreSQL instances starting
together migrate once: the first takes an advisory lock, the others wait and find
nothing left to do.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from backend.errors import BackendError

MIGRATIONS: tuple[str, ...] = (
    # 1: the demo ledger (balances and visits only).
    """
    CREATE TABLE IF NOT EXISTS accounts (
        member_id TEXT PRIMARY KEY, balance BIGINT NOT NULL, visits BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS visits (
        event_id TEXT PRIMARY KEY, member_id TEXT NOT NULL, device_id TEXT NOT NULL,
        boot_id TEXT NOT NULL, seq BIGINT NOT NULL, captured_at DOUBLE PRECISION NOT NULL,
        received_at DOUBLE PRECISION NOT NULL, replayed INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS refusals (
        event_id TEXT PRIMARY KEY, device_id TEXT NOT NULL, reason TEXT NOT NULL,
        payload {blob} NOT NULL, received_at DOUBLE PRECISION NOT NULL)
    """,
    # 2: members with tiers, the append-only ledger of entries, visits with their site
    # and outcome, the visit limit's last credited visit per member and site. Balances of
    # version 1 are carried over as an opening entry each.
    """
    CREATE TABLE members (
        member_id TEXT PRIMARY KEY, display_name TEXT NOT NULL,
        balance BIGINT NOT NULL, visits BIGINT NOT NULL, tier TEXT NOT NULL,
        tier_until DOUBLE PRECISION NOT NULL, last_visit_at DOUBLE PRECISION NOT NULL,
        created_at DOUBLE PRECISION NOT NULL, merged_into TEXT);
    CREATE TABLE entries (
        entry_id {serial}, member_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL,
        kind TEXT NOT NULL, points BIGINT NOT NULL, balance_after BIGINT NOT NULL,
        qualifying BIGINT NOT NULL, reason TEXT NOT NULL,
        event_id TEXT, device_id TEXT, staff TEXT);
    CREATE INDEX entries_by_member ON entries (member_id, at);
    ALTER TABLE visits RENAME TO visits_v1;
    CREATE TABLE visits (
        arrival {serial}, event_id TEXT NOT NULL UNIQUE, member_id TEXT NOT NULL,
        device_id TEXT NOT NULL, site TEXT NOT NULL, boot_id TEXT NOT NULL, seq BIGINT NOT NULL,
        captured_at DOUBLE PRECISION NOT NULL, received_at DOUBLE PRECISION NOT NULL,
        replayed INTEGER NOT NULL, outcome TEXT NOT NULL);
    CREATE INDEX visits_by_device ON visits (device_id, arrival);
    INSERT INTO visits (event_id, member_id, device_id, site, boot_id, seq, captured_at,
                        received_at, replayed, outcome)
        SELECT event_id, member_id, device_id, '', boot_id, seq, captured_at, received_at,
               replayed, 'credited' FROM visits_v1 ORDER BY received_at;
    DROP TABLE visits_v1;
    CREATE TABLE visit_limits (
        member_id TEXT NOT NULL, site TEXT NOT NULL,
        last_credited_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (member_id, site));
    INSERT INTO members SELECT member_id, '', balance, visits, '', 0, 0, 0, NULL
        FROM accounts;
    INSERT INTO entries (member_id, at, kind, points, balance_after, qualifying, reason)
        SELECT member_id, 0, 'opening', balance, balance, 0,
               'balance carried over from ledger schema 1' FROM accounts;
    DROP TABLE accounts
    """,
    # 3: each entry names the rules version it was made under (NULL: before this schema);
    # a member may have been referred by another (who earns the referral bonus).
    """
    ALTER TABLE entries ADD COLUMN rules TEXT;
    ALTER TABLE members ADD COLUMN referred_by TEXT
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
COLUMN_TYPES = {
    "member_id": "text", "display_name": "text", "balance": "int8", "visits": "int8",
    "tier": "text", "tier_until": "float8", "last_visit_at": "float8",
    "created_at": "float8", "merged_into": "text", "referred_by": "text", "at": "float8",
    "kind": "text", "points": "int8", "balance_after": "int8", "qualifying": "int8",
    "reason": "text", "event_id": "text", "device_id": "text", "staff": "text",
    "rules": "text", "site": "text", "boot_id": "text", "seq": "int8",
    "captured_at": "float8", "received_at": "float8", "replayed": "int4",
    "outcome": "text", "payload": "bytea", "last_credited_at": "float8",
}
"""Every column :meth:`Store.insert` and :meth:`Store.update` write, with its type (what
PostgreSQL's arrays are cast to)."""
CHUNK = 400
"""Rows per multi-row SQLite statement (well under its parameter limit)."""


class StoreError(BackendError, RuntimeError):
    """The database cannot be used (unreachable, or written by a newer backend)."""


class Store(ABC):
    """One connection to the ledger's database. Not thread-safe: the ledger serialises."""

    serial = ""
    """The auto-numbered primary key column type."""
    blob = ""
    for_update = ""
    """What a SELECT adds to lock the rows it reads until the commit."""
    retryable: tuple[type[BaseException], ...] = ()
    """Errors after which the whole transaction is simply tried again (deadlocks)."""
    name = ""
    round_trips = 0
    """Statements sent to the database (an ``executemany`` counts once: it is pipelined)."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement (``?`` placeholders); the cursor, for rows and ``rowcount``."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for every row (pipelined where the driver can)."""

    @abstractmethod
    def any_of(self, column: str) -> str:
        """A condition: ``column`` is one of a list given as one parameter (:meth:`listed`)."""

    @staticmethod
    def listed(values: Sequence[Any]) -> str:
        """``values`` as the one parameter :meth:`any_of` takes: a JSON array."""
        return json.dumps(list(values))

    @abstractmethod
    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               tail: str = "") -> list[tuple[Any, ...]]:
        """Insert ``rows`` in one statement; ``tail`` follows the rows (``ON CONFLICT …``,
        ``RETURNING …``); the rows returned, if any."""

    @abstractmethod
    def update(self, table: str, key: str, columns: Sequence[str],
               rows: Sequence[Sequence[Any]]) -> None:
        """Set ``columns`` of the rows whose ``key`` is each row's last value."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractContextManager[None]:
        """A transaction that holds its write locks until it commits (or rolls back)."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    @abstractmethod
    def _lock_schema(self) -> None:
        """Keep other instances from migrating at the same time (inside the transaction)."""

    def version(self) -> int:
        """The schema version the database is at (0: empty)."""
        if self._has_table("schema_version"):
            return int(self.execute("SELECT version FROM schema_version").fetchone()[0])
        return 1 if self._has_table("accounts") else 0

    @abstractmethod
    def _has_table(self, name: str) -> bool: ...

    def migrate(self) -> int:
        """Apply the migrations the database lacks; returns the version it started at."""
        started = None
        while True:
            with self.transaction():
                self._lock_schema()
                at = self.version()
                started = at if started is None else started
                if at > SCHEMA_VERSION:
                    raise StoreError(f"the ledger's schema is version {at}, newer than this "
                                     f"backend's {SCHEMA_VERSION}: upgrade the backend")
                if at == SCHEMA_VERSION:
                    return started
                script = MIGRATIONS[at].format(serial=self.serial, blob=self.blob)
                for statement in filter(str.strip, script.split(";")):
                    self.execute(statement)
                if at == 0:
                    self.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    self.execute("INSERT INTO schema_version VALUES (1)")
                elif not self._has_table("schema_version"):  # a demo ledger of version 1
                    self.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                    self.execute("INSERT INTO schema_version VALUES (2)")
                else:
                    self.execute("UPDATE schema_version SET version = ?", (at + 1,))


class SqliteStore(Store):
    """The embedded store: one file, WAL, ``synchronous=FULL`` (a credit is on disk before
    its acknowledgement is sent). Its transactions take the write lock at BEGIN."""

    serial = "INTEGER PRIMARY KEY"
    blob = "BLOB"
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=30.0,
                                     check_same_thread=False)
        try:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error:
            self._conn.close()
            raise

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.round_trips += 1
        return self._conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.round_trips += 1
            self._conn.executemany(sql, rows)

    def any_of(self, column: str) -> str:
        return f"{column} IN (SELECT value FROM json_each(?))"

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               tail: str = "") -> list[tuple[Any, ...]]:
        head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
        one = f"({', '.join('?' * len(columns))})"
        if "RETURNING" not in tail:
            self.executemany(f"{head}{one} {tail}", rows)
            return []
        returned: list[tuple[Any, ...]] = []
        for i in range(0, len(rows), CHUNK):
            chunk = rows[i:i + CHUNK]
            returned += self.execute(f"{head}{', '.join([one] * len(chunk))} {tail}",
                                     [value for row in chunk for value in row]).fetchall()
        return returned

    def update(self, table: str, key: str, columns: Sequence[str],
               rows: Sequence[Sequence[Any]]) -> None:
        self.executemany(f"UPDATE {table} SET {', '.join(f'{c} = ?' for c in columns)} "
                         f"WHERE {key} = ?", rows)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.round_trips += 2  # BEGIN, COMMIT
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _lock_schema(self) -> None:
        """Nothing to do: BEGIN IMMEDIATE already holds the database's one write lock."""

    def _has_table(self, name: str) -> bool:
        return self.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (name,)).fetchone() is not None

    def close(self) -> None:
        self._conn.close()

    def __str__(self) -> str:
        return str(self.path)


class PostgresStore(Store):
    """A chain's store: PostgreSQL through psycopg 3. Rows read ``FOR UPDATE`` stay locked
    until the commit, which is what lets several backend instances share one ledger;
    a deadlock between two of them is retried, as PostgreSQL advises."""

    serial = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    blob = "BYTEA"
    for_update = " FOR UPDATE"
    name = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreError("PostgreSQL needs psycopg: pip install 'psycopg[binary]'") from None
        self.url = url
        self.retryable = (psycopg.errors.DeadlockDetected,
                          psycopg.errors.SerializationFailure)
        try:
            self._conn = psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL: {str(exc).strip()}") from None

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.round_trips += 1
        return self._conn.execute(sql.replace("?", "%s"), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.round_trips += 1
            with self._conn.cursor() as cursor:
                cursor.executemany(sql.replace("?", "%s"), rows)

    def any_of(self, column: str) -> str:
        return f"{column} = ANY(ARRAY(SELECT json_array_elements_text(?::json)))"

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
               tail: str = "") -> list[tuple[Any, ...]]:
        if not rows:
            return []
        cursor = self.execute(f"INSERT INTO {table} ({', '.join(columns)}) "
                              f"{self._rows(columns)} {tail}", (_json_rows(rows),))
        return cursor.fetchall() if "RETURNING" in tail else []

    def update(self, table: str, key: str, columns: Sequence[str],
               rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.execute(f"UPDATE {table} AS t SET {', '.join(f'{c} = r.{c}' for c in columns)} "
                         f"FROM ({self._rows([*columns, key])}) AS r WHERE t.{key} = r.{key}",
                         (_json_rows(rows),))

    @staticmethod
    def _rows(columns: Sequence[str]) -> str:
        """The rows of one JSON parameter (an array of arrays) as a query: PostgreSQL
        parses the JSON in C, where psycopg would adapt each value in Python (measured:
        jsonb arrays cost the least on both sides, a third of ``json_to_recordset``'s
        client time and less server time)."""
        values = ", ".join(f"(x->>{i})::{COLUMN_TYPES[c]} AS {c}" for i, c in enumerate(columns))
        return f"SELECT {values} FROM jsonb_array_elements(?::jsonb) AS x"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        self.round_trips += 2  # BEGIN, COMMIT
        with self._conn.transaction():
            yield

    def _lock_schema(self) -> None:
        self.execute("SELECT pg_advisory_xact_lock(7211015)")  # any constant of our own

    def _has_table(self, name: str) -> bool:
        return self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]

    def close(self) -> None:
        self._conn.close()

    def __str__(self) -> str:
        return self.url.split("@")[-1]  # never a password in a log line


def _json_rows(rows: Sequence[Sequence[Any]]) -> str:
    """Rows as a JSON array of arrays (bytes as PostgreSQL's hex ``bytea`` text)."""
    return json.dumps(rows, default=lambda value: "\\x" + bytes(value).hex())


def open_store(where: str | Path) -> Store:
    """The store ``where`` names: a ``postgresql://`` URL, or a SQLite file path; migrated
    to this backend's schema."""
    text = str(where)
    store: Store
    if text.startswith(("postgresql://", "postgres://")):
        store = PostgresStore(text)
    else:
        store = SqliteStore(Path(text))
    try:
        store.migrate()
    except BaseException:
        store.close()
        raise
    return store
