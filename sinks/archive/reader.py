"""Reading the archive back: the listed parts of a time range, and their events.

Only parts a manifest lists are read (see :mod:`sinks.archive.layout`).
:func:`archived_parts` gives them hour by hour, within an hour by source and
offset, which is the order a replay feeds them in; :func:`part_rows` reads
one. An event id seen twice in one hour (a producer that sent an event
twice) is read once: :class:`HourDedup`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from riffle.sinks.archive.layout import HOUR_MS, MANIFEST_DIR, date_dir
from riffle.sinks.archive.store import ArchiveStore

DAY_MS = 86_400_000

ArchivedRow = tuple[str, str, int, int, bytes]
"""``(tenant, event_id, ts, offset, event JSON)``."""


@dataclass(frozen=True, slots=True)
class ArchivedPart:
    """One listed part file."""

    tenant: str
    hour: int
    source: str
    name: str
    first: int
    last: int
    rows: int


def is_archive(store: ArchiveStore) -> bool:
    """Whether the store's root is an archive (it holds ``tenant=…`` folders)."""
    return any(child.startswith("tenant=") for child in store.children(""))


def tenants(store: ArchiveStore) -> list[str]:
    """The tenants with anything archived."""
    return [c.removeprefix("tenant=") for c in store.children("") if c.startswith("tenant=")]


def archived_parts(
    store: ArchiveStore, start: int, end: int, tenant: str | None = None
) -> list[ArchivedPart]:
    """The listed parts of hours overlapping ``[start, end)`` (epoch ms), in replay order."""
    parts: list[ArchivedPart] = []
    for name in [tenant] if tenant is not None else tenants(store):
        for folder in store.children(f"tenant={name}"):
            day = _day_start(folder)
            if day is not None and day + DAY_MS > start and day < end:
                parts.extend(_day_parts(store, name, day, start, end))
    return sorted(parts, key=lambda p: (p.hour, p.tenant, p.source, p.first))


def _day_parts(
    store: ArchiveStore, tenant: str, day: int, start: int, end: int
) -> Iterator[ArchivedPart]:
    folder = date_dir(tenant, day)
    for name in store.names(folder):
        hour_folder, _, rest = name.rpartition(f"/{MANIFEST_DIR}/")
        if not rest.endswith(".json"):
            continue
        hour = day + int(hour_folder.rsplit("hour=", 1)[1]) * HOUR_MS
        if hour + HOUR_MS <= start or hour >= end:
            continue
        stored = store.read(name)
        if stored is None:
            continue
        manifest = orjson.loads(stored)
        for part in manifest["parts"]:
            yield ArchivedPart(
                tenant,
                hour,
                manifest["source"],
                f"{hour_folder}/{part['file']}",
                part["first"],
                part["last"],
                part["rows"],
            )


def part_rows(store: ArchiveStore, part: ArchivedPart) -> list[ArchivedRow]:
    """The events of one part in offset order."""
    import pyarrow.parquet as pq

    data = store.read(part.name)
    if data is None:
        return []
    table = pq.read_table(io.BytesIO(data), columns=["tenant", "event_id", "ts", "offset", "event"])
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    tss = [_millis(t) for t in columns[2]]
    return list(zip(columns[0], columns[1], tss, columns[3], columns[4], strict=True))


def _day_start(folder: str) -> int | None:
    """The epoch ms of a ``date=YYYY-MM-DD`` folder; ``None`` for anything else."""
    try:
        day = datetime.strptime(folder.removeprefix("date="), "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(day.timestamp() * 1000)


def _millis(moment: datetime) -> int:
    return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp() * 1000)


class HourDedup:
    """Event ids already read in the current hour; a new hour forgets the last one's."""

    def __init__(self) -> None:
        self._hour = -1
        self._seen: set[tuple[str, str]] = set()

    def first(self, hour: int, tenant: str, event_id: str) -> bool:
        """Whether this is the first time the event is read."""
        if hour != self._hour:
            self._hour, self._seen = hour, set()
        key = (tenant, event_id)
        if key in self._seen:
            return False
        self._seen.add(key)
        return True
