"""The warehouse table ``dead_letters``: every rejected or failed event, queryable and replayable.

One row per dead letter, key ``letter_id`` (:attr:`DeadLetter.letter_id`, a
hash of tenant, source and original bytes), so writing the same letter twice
— a redelivered message, a retried request — leaves one row readers see.
Columns (:data:`sinks.warehouse.tables.DEAD_LETTERS`): ``tenant``, ``failure_type``,
``reason``/``path`` (the first broken rule), ``errors`` (JSON
``[[path, rule, message], ...]``), ``raw`` (the original bytes), ``source``,
``event_type``, ``event_id``, ``event_ts``, ``lateness_ms``,
``received_at``, ``stored_at`` (first written) and ``replayed_at`` (set once
a replay re-injected it).

:class:`WarehouseDeadLetters` implements :class:`DeadLetterStore` over any
:class:`~sinks.warehouse.base.Warehouse` (DuckDB or BigQuery) with the
generic ``upsert``/``select``. Marking a letter replayed writes its row again
with ``replayed_at`` set; the table's ``keep`` order (first replay mark,
else first write) makes that the row readers see, without an ``UPDATE`` —
BigQuery refuses DML on rows still in its streaming buffer.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from riffle.operators.records import DeadLetter
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import AllOf, AnyOf, Cmp, In, Null, Pred, Select
from riffle.sinks.warehouse.tables import DEAD_LETTERS


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
    """What the API needs of a dead-letter table."""

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


class WarehouseDeadLetters:
    """``dead_letters`` in ``warehouse`` (either engine); holds no connection of its own."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def write(self, letters: Sequence[DeadLetter]) -> None:
        if letters:
            now = int(time.time() * 1000)
            self.warehouse.upsert(DEAD_LETTERS, [_row(d, now, None) for d in letters])

    def query(self, query: LetterQuery) -> tuple[list[StoredLetter], str | None]:
        where: list[Pred] = [Cmp("tenant", "=", query.tenant)]
        if query.failure_type is not None:
            where.append(Cmp("failure_type", "=", query.failure_type))
        if query.event_type is not None:
            where.append(Cmp("event_type", "=", query.event_type))
        if query.since_ms is not None:
            where.append(Cmp("received_at", ">=", query.since_ms))
        if query.until_ms is not None:
            where.append(Cmp("received_at", "<", query.until_ms))
        if query.replayed is not None:
            where.append(Null("replayed_at", null=not query.replayed))
        if query.cursor is not None:
            at, letter_id = decode_cursor(query.cursor)
            after = AllOf((Cmp("received_at", "=", at), Cmp("letter_id", ">", letter_id)))
            where.append(AnyOf((Cmp("received_at", "<", at), after)))
        rows = self._select(where, ("received_at DESC", "letter_id ASC"), limit=query.limit + 1)
        page = rows[: query.limit]
        cursor = None
        if len(rows) > query.limit:
            last = page[-1]
            cursor = encode_cursor(last.letter.received_at, last.letter_id)
        return page, cursor

    def get(self, tenant: str, letter_ids: Sequence[str]) -> list[StoredLetter]:
        if not letter_ids:
            return []
        where: list[Pred] = [Cmp("tenant", "=", tenant), In("letter_id", tuple(letter_ids))]
        return self._select(where, ("received_at ASC", "letter_id ASC"))

    def mark_replayed(self, tenant: str, letter_ids: Sequence[str], at_ms: int) -> None:
        """Write the letters again with ``replayed_at``; a letter already marked keeps its mark."""
        fresh = [s for s in self.get(tenant, letter_ids) if s.replayed_at is None]
        if fresh:
            now = int(time.time() * 1000)
            self.warehouse.upsert(
                DEAD_LETTERS, [_row(s.letter, s.stored_at, at_ms, now) for s in fresh]
            )

    def _select(
        self, where: list[Pred], order: tuple[str, ...], limit: int | None = None
    ) -> list[StoredLetter]:
        query = Select(DEAD_LETTERS, where=tuple(where), order_by=order, limit=limit)
        return [_stored(row) for row in self.warehouse.select(query)]


def _row(
    d: DeadLetter, stored_at: int, replayed_at: int | None, written_at: int | None = None
) -> dict[str, Any]:
    return {
        "letter_id": d.letter_id,
        "tenant": d.tenant,
        "failure_type": d.failure_type,
        "reason": d.reason,
        "path": d.path,
        "errors": orjson.dumps(d.issues).decode(),
        "raw": d.raw,
        "source": d.source,
        "event_type": d.event_type,
        "event_id": d.event_id,
        "event_ts": d.event_ts,
        "lateness_ms": d.lateness_ms,
        "received_at": d.received_at,
        "stored_at": stored_at,
        "replayed_at": replayed_at,
        "written_at": stored_at if written_at is None else written_at,
    }


def _stored(row: dict[str, Any]) -> StoredLetter:
    letter = DeadLetter(
        failure_type=row["failure_type"],
        reason=row["reason"],
        path=row["path"],
        raw=bytes(row["raw"]),
        source=row["source"],
        tenant=row["tenant"],
        received_at=row["received_at"],
        event_type=row["event_type"],
        event_ts=row["event_ts"],
        lateness_ms=row["lateness_ms"],
        errors=tuple(tuple(issue) for issue in orjson.loads(row["errors"])),
        event_id=row["event_id"],
    )
    return StoredLetter(row["letter_id"], letter, row["stored_at"], row["replayed_at"])
