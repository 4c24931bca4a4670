"""Writing valid events into the archive, at most once per source and offset.

:meth:`ArchiveWriter.write` takes the valid events of one source's offsets
``first``..``last``. Per tenant and hour it drops the events whose offset a
part already listed in the manifest covers (a replay after a restart
delivers them again), writes the rest as one part file named by the source
and the offset range, then lists that part in the manifest. Each source has
one writer at a time (a flow partition lives on one worker), so the
manifest needs no lock; a crash between the part and the manifest leaves an
unlisted part that readers ignore and the replay writes again.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson

from riffle.operators.ingest import Accepted
from riffle.sinks.archive.layout import HOUR_MS, manifest_name, part_name
from riffle.sinks.archive.store import ArchiveStore


def parquet_bytes(rows: Sequence[Accepted], source: str) -> bytes:
    """One part file: ``rows`` in offset order with the layout's columns."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ordered = sorted(rows, key=lambda row: row[5])
    table = pa.table(
        {
            "event_id": pa.array([r[2] for r in ordered], pa.string()),
            "tenant": pa.array([r[0] for r in ordered], pa.string()),
            "ts": pa.array([r[1] for r in ordered], pa.timestamp("ms", tz="UTC")),
            "type": pa.array([r[3] for r in ordered], pa.string()),
            "source": pa.array([source] * len(ordered), pa.string()),
            "offset": pa.array([r[5] for r in ordered], pa.int64()),
            "event": pa.array([r[4] for r in ordered], pa.binary()),
        }
    )
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


class ArchiveWriter:
    """Writes parts and manifests into one archive store; see the module docstring."""

    def __init__(self, store: ArchiveStore) -> None:
        self.store = store
        self.written = 0
        """Events written by this writer (not counting ones already archived)."""

    def write(self, source: str, first: int, last: int, rows: Sequence[Accepted]) -> None:
        """Archive the valid events of ``source``'s offsets ``first``..``last``."""
        hours: dict[tuple[str, int], list[Accepted]] = defaultdict(list)
        for row in rows:
            hours[(row[0], row[1] - row[1] % HOUR_MS)].append(row)
        for (tenant, hour), items in sorted(hours.items()):
            self._write_hour(tenant, hour, source, first, last, items)

    def _write_hour(
        self, tenant: str, hour: int, source: str, first: int, last: int, rows: list[Accepted]
    ) -> None:
        manifest_path = manifest_name(tenant, hour, source)
        stored = self.store.read(manifest_path)
        manifest: dict[str, Any] = (
            orjson.loads(stored) if stored else {"source": source, "parts": []}
        )
        covered = [(p["first"], p["last"]) for p in manifest["parts"]]
        fresh = [r for r in rows if not any(a <= r[5] <= b for a, b in covered)]
        if not fresh:
            return
        name = part_name(tenant, hour, source, first, last)
        self.store.write(name, parquet_bytes(fresh, source))
        manifest["parts"].append(
            {
                "file": name.rsplit("/", 1)[1],
                "first": first,
                "last": last,
                "rows": len(fresh),
                "min_ts": min(r[1] for r in fresh),
                "max_ts": max(r[1] for r in fresh),
            }
        )
        self.store.write(manifest_path, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        self.written += len(fresh)
