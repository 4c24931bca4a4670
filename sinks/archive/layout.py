"""The archive's layout: where each hour of each tenant lives and what a part file holds.

```
<root>/tenant=<T>/date=<YYYY-MM-DD>/hour=<HH>/<source>-<first>-<last>.parquet
<root>/tenant=<T>/date=<YYYY-MM-DD>/hour=<HH>/_manifest/<source>.json
```

Hours are UTC. A part file holds valid events of one source (a Kafka
partition, an imported file) whose event time falls in the hour, with the
columns of :data:`COLUMNS`; ``event`` is the event's JSON as it entered,
before enrichment. The source's manifest of the hour lists its parts, each
with the offset range ``[first, last]`` it covers: every valid event of the
source at an offset in that range with its time in the hour is in that
part. Only listed parts count; a part the manifest does not list (a write
cut short before its manifest) is ignored.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

HOUR_MS = 3_600_000
COLUMNS = ("event_id", "tenant", "ts", "type", "source", "offset", "event")
MANIFEST_DIR = "_manifest"


def hour_dir(tenant: str, hour_start: int) -> str:
    """The folder of one tenant's hour (``hour_start`` in epoch ms)."""
    moment = datetime.fromtimestamp(hour_start / 1000, UTC)
    return f"tenant={tenant}/date={moment:%Y-%m-%d}/hour={moment:%H}"


def date_dir(tenant: str, day_start: int) -> str:
    """The folder of one tenant's UTC day."""
    return f"tenant={tenant}/date={datetime.fromtimestamp(day_start / 1000, UTC):%Y-%m-%d}"


def source_slug(source: str) -> str:
    """A file-name-safe name of a source, unique per source (a readable tail and a hash)."""
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", source)[-48:].strip("_")
    digest = hashlib.blake2b(source.encode(), digest_size=6).hexdigest()
    return f"{tail}-{digest}"


def part_name(tenant: str, hour_start: int, source: str, first: int, last: int) -> str:
    """The part file of a source's offsets ``first``..``last`` in one hour."""
    return f"{hour_dir(tenant, hour_start)}/{source_slug(source)}-{first:012d}-{last:012d}.parquet"


def manifest_name(tenant: str, hour_start: int, source: str) -> str:
    """The manifest of one source's parts in one hour."""
    return f"{hour_dir(tenant, hour_start)}/{MANIFEST_DIR}/{source_slug(source)}.json"
