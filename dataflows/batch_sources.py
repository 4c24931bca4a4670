"""The bounded sources of batch runs: an import's files and the raw archive, each as the
polls of one partition (what the metrics flow's ingest stage takes)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from riffle.operators.ingest import Message
from riffle.sinks.archive.reader import HourDedup, archived_parts, part_rows
from riffle.sinks.archive.store import ArchiveStore
from riffle.sinks.ledger import Ledger
from riffle.sources.files import read_rows
from riffle.sources.kafka import PartitionPoll
from riffle.sources.storage import StoredObject, display

PARTITION = "batch"
"""The one source partition of a batch run."""


@dataclass
class Progress:
    """Where a run is; the source updates it, a display or a logger reads it."""

    total_bytes: int = 0
    files: int = 0
    file_index: int = 0
    rows: int = 0
    bytes_done: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def rate(self) -> float:
        """Rows per second so far."""
        return self.rows / max(1e-9, time.monotonic() - self.started)


Position = tuple[int, int, int]
"""``(file index, next row, rows read before this file)``: where a resumed import starts."""


class FileSource(FixedPartitionedSource[tuple[str, PartitionPoll], Position]):
    """The rows of an import's files, in name order, as polls of one partition."""

    def __init__(
        self,
        objects: list[StoredObject],
        *,
        tenant: str,
        ledger: Ledger,
        progress: Progress,
        chunk_rows: int,
    ) -> None:
        self.objects = objects
        self.tenant = tenant
        self.ledger = ledger
        self.progress = progress
        self.chunk_rows = chunk_rows

    def list_parts(self) -> list[str]:
        return [PARTITION]

    def build_part(
        self, step_id: str, for_part: str, resume_state: Position | None
    ) -> StatefulSourcePartition[tuple[str, PartitionPoll], Position]:
        return _FilePartition(self, resume_state or (0, 1, 0))


class _FilePartition(StatefulSourcePartition[tuple[str, PartitionPoll], Position]):
    def __init__(self, source: FileSource, position: Position) -> None:
        self._source = source
        self._index, self._next_row, self._before = position
        self._chunks: Iterator[Any] | None = None
        progress = source.progress
        progress.files = len(source.objects)
        progress.total_bytes = sum(o.size for o in source.objects)
        done = source.objects[: self._index]
        progress.bytes_done = sum(o.size for o in done)
        progress.rows = self._before + max(0, self._next_row - 1)
        progress.file_index = self._index

    def next_batch(self) -> list[tuple[str, PartitionPoll]]:
        source = self._source
        while self._index < len(source.objects):
            obj = source.objects[self._index]
            if self._chunks is None:
                self._chunks = read_rows(
                    obj.uri, start=self._next_row, chunk_rows=source.chunk_rows
                )
            chunk = next(self._chunks, None)
            if chunk is None:
                self._finish(obj, None)
                continue
            error = None
            messages: list[Message] = []
            for number, row in chunk.rows:
                messages.append((row, source.tenant, number))
                if number == 0:
                    error = orjson.loads(row)["error"]
            if error is not None:
                self._finish(obj, error, messages)
                return [(PARTITION, self._poll(obj, messages))]
            self._next_row = chunk.next_row
            progress = source.progress
            progress.rows = self._before + self._next_row - 1
            done = sum(o.size for o in source.objects[: self._index])
            progress.bytes_done = done + min(chunk.consumed, obj.size)
            return [(PARTITION, self._poll(obj, messages))]
        raise StopIteration

    def _poll(self, obj: StoredObject, messages: list[Message]) -> PartitionPoll:
        return PartitionPoll(PARTITION, messages, False, origin=f"import:{display(obj.uri)}")

    def _finish(
        self,
        obj: StoredObject,
        error: str | None,
        messages: list[tuple[Any, Any, int]] | None = None,
    ) -> None:
        read = self._next_row - 1
        if error is not None and messages:
            read = max(read, max(m[2] for m in messages))
        self._source.ledger.file_done(obj.uri, read, obj.size, error)
        self._before += read
        self._index += 1
        self._next_row = 1
        self._chunks = None
        progress = self._source.progress
        progress.file_index = self._index
        progress.rows = self._before
        progress.bytes_done = sum(o.size for o in self._source.objects[: self._index])

    def snapshot(self) -> Position:
        return (self._index, self._next_row, self._before)


class ArchiveSource(FixedPartitionedSource[tuple[str, PartitionPoll], None]):
    """Archived events of ``[start, end)``, hour by hour, each event id once per hour."""

    def __init__(
        self, store: ArchiveStore, start: int, end: int, tenant: str | None, progress: Progress
    ) -> None:
        self.store = store
        self.start = start
        self.end = end
        self.tenant = tenant
        self.progress = progress

    def list_parts(self) -> list[str]:
        return [PARTITION]

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSourcePartition[tuple[str, PartitionPoll], None]:
        parts = archived_parts(self.store, self.start, self.end, self.tenant)
        self.progress.files = len(parts)
        return _ArchivePartition(self, iter(parts))


class _ArchivePartition(StatefulSourcePartition[tuple[str, PartitionPoll], None]):
    def __init__(self, source: ArchiveSource, parts: Iterator[Any]) -> None:
        self._source = source
        self._parts = parts
        self._dedup = HourDedup()

    def next_batch(self) -> list[tuple[str, PartitionPoll]]:
        source = self._source
        part = next(self._parts, None)
        if part is None:
            raise StopIteration
        messages: list[tuple[bytes | None, str | None, int]] = []
        for tenant, event_id, ts, offset, event in part_rows(source.store, part):
            if source.start <= ts < source.end and self._dedup.first(part.hour, tenant, event_id):
                messages.append((event, tenant, offset))
        source.progress.file_index += 1
        source.progress.rows += len(messages)
        return [(PARTITION, PartitionPoll(PARTITION, messages, False, origin=part.source))]

    def snapshot(self) -> None:
        return None
