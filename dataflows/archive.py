"""The raw archive as a Bytewax sink: valid events of each source partition, per epoch.

Items are ``(source partition, ArchiveRows)``. Each sink partition buffers
what it receives and writes it (:class:`~sinks.archive.writer.ArchiveWriter`)
at the latest when Bytewax snapshots, at the end of every epoch: a snapshot,
and so the offsets a restart resumes from, never gets ahead of the archive.
A batch the restart delivers again is dropped by the writer's manifest check,
so every valid event is archived once per source and offset.
"""

from __future__ import annotations

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from riffle.dataflows.logic import ArchiveRows
from riffle.operators.ingest import Accepted
from riffle.sinks.archive.store import ArchiveStore
from riffle.sinks.archive.writer import ArchiveWriter

FLUSH_ROWS = 200_000
"""Rows a partition buffers before it writes without waiting for the epoch's end."""


class ArchiveSink(FixedPartitionedSink[ArchiveRows, None]):
    """Valid events into the archive at ``root`` (a directory or ``gs://bucket/prefix``)."""

    def __init__(self, root: str, parts: list[str]) -> None:
        self.root = root
        self.parts = parts

    def list_parts(self) -> list[str]:
        return self.parts

    def build_part(
        self, step_id: str, for_part: str, resume_state: None
    ) -> StatefulSinkPartition[ArchiveRows, None]:
        return _ArchivePartition(ArchiveWriter(ArchiveStore(self.root)))


class _ArchivePartition(StatefulSinkPartition[ArchiveRows, None]):
    def __init__(self, writer: ArchiveWriter) -> None:
        self._writer = writer
        self._pending: dict[str, tuple[int, int, list[Accepted]]] = {}
        self._rows = 0

    def write_batch(self, values: list[ArchiveRows]) -> None:
        for batch in values:
            held = self._pending.get(batch.source)
            if held is None:
                self._pending[batch.source] = (batch.first, batch.last, list(batch.rows))
            else:
                first, last, rows = held
                rows.extend(batch.rows)
                self._pending[batch.source] = (min(first, batch.first), max(last, batch.last), rows)
            self._rows += len(batch.rows)
        if self._rows >= FLUSH_ROWS:
            self._flush()

    def snapshot(self) -> None:
        self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._rows = self._pending, {}, 0
        for source, (first, last, rows) in pending.items():
            self._writer.write(source, first, last, rows)
