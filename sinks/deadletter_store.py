"""The warehouse table ``dead_letters``: every rejected or failed event, queryable and replayable.

One row per dead letter, primary key ``letter_id`` (:attr:`DeadLetter.letter_id`,
a hash of tenant, source and original bytes), so writing the same letter
twice — a redelivered message, a retried request — leaves one row. Columns:
``tenant``, ``failure_type``, ``reason``/``path`` (the first broken rule),
``errors`` (JSON ``[[path, rule, message], ...]``), ``raw`` (the original
bytes), ``source``, ``event_type``, ``event_id``, ``event_ts``,
``lateness_ms``, ``received_at``, ``stored_at`` and ``replayed_at`` (set once
a replay re-injected it).

:class:`DeadLetterStore` is the interface the API uses; :class:`DuckDBDeadLetters`
implements it over the DuckDB file of :mod:`sinks.warehouse` with the same
discipline: no connection is kept, each call opens the file briefly and lock
conflicts are retried with backoff.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import duckdb
import orjson

from operators.records import DeadLetter
from sinks.duckdb_file import visit
from sinks.duckdb_sql import evolve
from sinks.tables import DEAD_LETTERS

T = TypeVar("T")

_INSERT = """
INSERT INTO dead_letters
SELECT * FROM (
    SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
           unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
           unnest(?::BLOB[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),
           unnest(?::VARCHAR[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]),
           unnest(?::BIGINT[]), unnest(?::BIGINT[]), NULL::BIGINT
)
ON CONFLICT DO NOTHING
"""

_COLUMNS = (
    "letter_id, tenant, failure_type, reason, path, errors, raw, source, event_type, event_id,"
    " event_ts, lateness_ms, received_at, stored_at, replayed_at"
)


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A dead letter as stored, with its id and replay state."""

    letter_id: str
    letter: DeadLetter
    stored_at: int
    replayed_at: int | None


@dataclass(frozen=True, slots=True)
class LetterQuery:
    """A selection of one tenant's dead letters; times are epoch ms of ``received_at``."""

    tenant: str
    failure_type: str | None = None
    event_type: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    replayed: bool | None = None
    limit: int = 100
    cursor: str | None = None


class DeadLetterStore(Protocol):
    """What the API needs of a dead-letter table (DuckDB here; BigQuery later)."""

    def write(self, letters: Sequence[DeadLetter]) -> None:
        """Store letters; one row per ``letter_id`` however often it is written."""

    def query(self, query: LetterQuery) -> tuple[list[StoredLetter], str | None]:
        """Newest first; ``(page, cursor of the next page or None)``."""

    def get(self, tenant: str, letter_ids: Sequence[str]) -> list[StoredLetter]:
        """The letters of ``tenant`` among ``letter_ids`` (others' are simply absent)."""

    def mark_replayed(self, tenant: str, letter_ids: Sequence[str], at_ms: int) -> None:
        """Record that these letters were re-injected at ``at_ms``."""


def encode_cursor(received_at: int, letter_id: str) -> str:
    """An opaque cursor after the row ``(received_at, letter_id)``."""
    return base64.urlsafe_b64encode(f"{received_at}:{letter_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Inverse of :func:`encode_cursor`; ``ValueError`` for a malformed cursor."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
        at, _, letter_id = text.partition(":")
        return int(at), letter_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed cursor {cursor!r}") from exc


class DuckDBDeadLetters:
    """``dead_letters`` in the DuckDB warehouse file at ``path``; holds no connection."""

    def __init__(self, path: Path, lock_timeout_seconds: float = 10.0) -> None:
        self._path = path
        self._lock_timeout = lock_timeout_seconds

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        now = int(time.time() * 1000)
        unique = {letter.letter_id: letter for letter in letters}
        rows = list(unique.items())
        columns: list[list[Any]] = [
            [i for i, _ in rows],
            [d.tenant for _, d in rows],
            [d.failure_type for _, d in rows],
            [d.reason for _, d in rows],
            [d.path for _, d in rows],
            [orjson.dumps(d.issues).decode() for _, d in rows],
            [d.raw for _, d in rows],
            [d.source for _, d in rows],
            [d.event_type for _, d in rows],
            [d.event_id for _, d in rows],
            [d.event_ts for _, d in rows],
            [d.lateness_ms for _, d in rows],
            [d.received_at for _, d in rows],
            [now] * len(rows),
        ]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("BEGIN TRANSACTION")
            evolve(con, (DEAD_LETTERS,))
            con.execute(_INSERT, columns)
            con.execute("COMMIT")

        self._run(write, read_only=False)

    def query(self, query: LetterQuery) -> tuple[list[StoredLetter], str | None]:
        sql = f"SELECT {_COLUMNS} FROM dead_letters WHERE tenant = ?"  # noqa: S608 - fixed columns
        params: list[Any] = [query.tenant]
        if query.failure_type is not None:
            sql += " AND failure_type = ?"
            params.append(query.failure_type)
        if query.event_type is not None:
            sql += " AND event_type = ?"
            params.append(query.event_type)
        if query.since_ms is not None:
            sql += " AND received_at >= ?"
            params.append(query.since_ms)
        if query.until_ms is not None:
            sql += " AND received_at < ?"
            params.append(query.until_ms)
        if query.replayed is not None:
            sql += " AND replayed_at IS NOT NULL" if query.replayed else " AND replayed_at IS NULL"
        if query.cursor is not None:
            at, letter_id = decode_cursor(query.cursor)
            sql += " AND (received_at < ? OR (received_at = ? AND letter_id > ?))"
            params += [at, at, letter_id]
        sql += " ORDER BY received_at DESC, letter_id LIMIT ?"
        params.append(query.limit + 1)
        rows = self._select(sql, params)
        page = rows[: query.limit]
        cursor = None
        if len(rows) > query.limit:
            last = page[-1]
            cursor = encode_cursor(last.letter.received_at, last.letter_id)
        return page, cursor

    def get(self, tenant: str, letter_ids: Sequence[str]) -> list[StoredLetter]:
        if not letter_ids:
            return []
        sql = (
            f"SELECT {_COLUMNS} FROM dead_letters WHERE tenant = ? "  # noqa: S608 - fixed columns
            "AND list_contains(?::VARCHAR[], letter_id) ORDER BY received_at, letter_id"
        )
        return self._select(sql, [tenant, list(letter_ids)])

    def mark_replayed(self, tenant: str, letter_ids: Sequence[str], at_ms: int) -> None:
        if not letter_ids:
            return
        sql = (
            "UPDATE dead_letters SET replayed_at = ? WHERE tenant = ? "
            "AND list_contains(?::VARCHAR[], letter_id) AND replayed_at IS NULL"
        )

        def update(con: duckdb.DuckDBPyConnection) -> None:
            evolve(con, (DEAD_LETTERS,))
            con.execute(sql, [at_ms, tenant, list(letter_ids)])

        self._run(update, read_only=False)

    def _select(self, sql: str, params: list[Any]) -> list[StoredLetter]:
        def read(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
            try:
                return con.execute(sql, params).fetchall()
            except duckdb.CatalogException:
                return []  # nothing written yet

        if not self._path.exists():
            return []
        return [_stored(row) for row in self._run(read, read_only=True)]

    def _run(self, work: Callable[[duckdb.DuckDBPyConnection], T], *, read_only: bool) -> T:
        return visit(
            self._path,
            work,
            read_only=read_only,
            lock_timeout=self._lock_timeout,
            what=f"dead letters in {self._path}",
        )


def _stored(row: tuple[Any, ...]) -> StoredLetter:
    (
        letter_id,
        tenant,
        failure_type,
        reason,
        path,
        errors,
        raw,
        source,
        event_type,
        event_id,
        event_ts,
        lateness_ms,
        received_at,
        stored_at,
        replayed_at,
    ) = row
    letter = DeadLetter(
        failure_type=failure_type,
        reason=reason,
        path=path,
        raw=bytes(raw),
        source=source,
        tenant=tenant,
        received_at=received_at,
        event_type=event_type,
        event_ts=event_ts,
        lateness_ms=lateness_ms,
        errors=tuple(tuple(issue) for issue in orjson.loads(errors)),
        event_id=event_id,
    )
    return StoredLetter(letter_id, letter, stored_at, replayed_at)
