"""Backups of the local engines, and their restore (``riffle backup``).

A backup is a directory ``riffle-backup-<UTC time>/`` holding

* ``redis.jsonl``: every key under ``RIFFLE_REDIS_PREFIX`` as Redis' own
  ``DUMP`` image with its remaining time to live — API keys, alert rules,
  silences, acknowledgements, the notifier's state, hot windows, everything;
* ``warehouse/``: the DuckDB warehouse as ``EXPORT DATABASE`` writes it
  (schema, views and one Parquet file per table), taken in a read-only visit
  between the dataflow's writes; a BigQuery warehouse is not copied (its
  table snapshots are the backup: docs/operations.md);
* ``recovery/``: each partition of the dataflow's recovery store, copied
  with SQLite's online backup while the flow runs;
* ``manifest.json``: what was taken, from where, how much, and when.

Each part is consistent by itself, not with the others: the flow resumes from
the recovery snapshot and replays the topic from there, and every sink write
is an upsert, so windows the other parts hold from later are rewritten with
the same values (docs/operations.md#disaster-recovery).
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import orjson
import redis

from riffle.config.errors import RiffleError
from riffle.config.settings import Settings
from riffle.sinks.warehouse.duckdb_file import visit

PARTS = ("redis", "warehouse", "recovery")
_CHUNK = 500


class BackupError(RiffleError):
    """A backup cannot be taken or restored as asked."""


@dataclass
class Manifest:
    """What a backup holds (``manifest.json``)."""

    created_at: str
    redis_prefix: str
    warehouse: str
    recovery_dir: str | None
    parts: dict[str, int] = field(default_factory=dict)
    """Per part taken: Redis keys, warehouse tables or recovery partitions."""
    skipped: dict[str, str] = field(default_factory=dict)
    """Per part not taken: why."""
    seconds: float = 0.0


def create_backup(settings: Settings, root: Path, *, lock_timeout: float = 60.0) -> Path:
    """Back up Redis, the DuckDB warehouse and the recovery store into a new directory
    under ``root``; return it."""
    started = time.monotonic()
    now = datetime.now(UTC)
    target = root / f"riffle-backup-{now:%Y%m%dT%H%M%S%fZ}"
    target.mkdir(parents=True)
    manifest = Manifest(
        created_at=now.isoformat(),
        redis_prefix=settings.redis_prefix,
        warehouse=settings.warehouse,
        recovery_dir=None if settings.recovery_dir is None else str(settings.recovery_dir),
    )
    manifest.parts["redis"] = _dump_redis(settings, target / "redis.jsonl")
    if settings.warehouse_engine == "duckdb":
        if settings.duckdb_path.exists():
            manifest.parts["warehouse"] = _export_duckdb(
                settings.duckdb_path, target / "warehouse", lock_timeout
            )
        else:
            manifest.skipped["warehouse"] = f"{settings.duckdb_path} does not exist"
    else:
        manifest.skipped["warehouse"] = "BigQuery: back up with table snapshots"
    if settings.recovery_dir is not None:
        manifest.parts["recovery"] = _copy_recovery(settings.recovery_dir, target / "recovery")
    else:
        manifest.skipped["recovery"] = "RIFFLE_RECOVERY_DIR is not set"
    manifest.seconds = round(time.monotonic() - started, 3)
    (target / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return target


def read_manifest(backup: Path) -> Manifest:
    """The manifest of the backup in ``backup``; :class:`BackupError` if it is none."""
    path = backup / "manifest.json"
    if not path.is_file():
        raise BackupError(f"{backup} is not a Riffle backup (no manifest.json)")
    return Manifest(**json.loads(path.read_text()))


def restore_backup(
    settings: Settings, backup: Path, parts: tuple[str, ...] = PARTS
) -> dict[str, int]:
    """Restore ``parts`` of ``backup`` into the engines ``settings`` name; return counts.

    Redis keys are replaced one by one (keys not in the backup stay). The
    warehouse file and the recovery store must not exist: restore replaces
    lost data and never merges into live data (move it away first).
    """
    manifest = read_manifest(backup)
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise BackupError(f"unknown parts {sorted(unknown)} (known: {', '.join(PARTS)})")
    missing = [p for p in parts if p not in manifest.parts]
    if missing:
        raise BackupError(f"{backup} holds no {', '.join(missing)}: {manifest.skipped}")
    if "warehouse" in parts:
        if settings.warehouse_engine != "duckdb":
            raise BackupError(
                "a DuckDB warehouse can only be restored into RIFFLE_WAREHOUSE=duckdb"
            )
        if settings.duckdb_path.exists():
            raise BackupError(f"{settings.duckdb_path} exists: move it away to restore")
    if "recovery" in parts:
        if settings.recovery_dir is None:
            raise BackupError("set RIFFLE_RECOVERY_DIR (or --recovery-dir) to restore it")
        if any(settings.recovery_dir.glob("part-*")):
            raise BackupError(f"{settings.recovery_dir} holds partitions: move them away first")
    done: dict[str, int] = {}
    if "redis" in parts:
        done["redis"] = _restore_redis(settings, backup / "redis.jsonl", manifest.redis_prefix)
    if "warehouse" in parts:
        done["warehouse"] = _import_duckdb(backup / "warehouse", settings.duckdb_path)
    if "recovery" in parts:
        assert settings.recovery_dir is not None
        settings.recovery_dir.mkdir(parents=True, exist_ok=True)
        files = sorted((backup / "recovery").glob("part-*.sqlite3"))
        for file in files:
            shutil.copy2(file, settings.recovery_dir / file.name)
        done["recovery"] = len(files)
    return done


def _dump_redis(settings: Settings, path: Path) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    count = 0
    with path.open("wb") as out:
        keys = list(client.scan_iter(match=f"{settings.redis_prefix}:*", count=1000))
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.dump(key)
                pipe.pttl(key)
            answers = pipe.execute()
            for key, image, ttl in zip(chunk, answers[::2], answers[1::2], strict=True):
                if image is None:  # expired or deleted since the scan
                    continue
                line = {
                    "key": base64.b64encode(key).decode(),
                    "ttl_ms": max(int(ttl), 0),
                    "dump": base64.b64encode(image).decode(),
                }
                out.write(orjson.dumps(line) + b"\n")
                count += 1
    client.close()
    return count


def _restore_redis(settings: Settings, path: Path, prefix: str) -> int:
    if prefix != settings.redis_prefix:
        raise BackupError(
            f"the backup holds keys of prefix {prefix!r}, not {settings.redis_prefix!r}"
        )
    client = redis.Redis.from_url(settings.redis_url)
    count = 0
    with path.open("rb") as lines:
        pipe = client.pipeline(transaction=False)
        for line in lines:
            item = orjson.loads(line)
            image = base64.b64decode(item["dump"])
            pipe.restore(base64.b64decode(item["key"]), item["ttl_ms"], image, replace=True)
            count += 1
            if count % _CHUNK == 0:
                pipe.execute()
        pipe.execute()
    client.close()
    return count


def _export_duckdb(path: Path, target: Path, lock_timeout: float) -> int:
    def export(con: duckdb.DuckDBPyConnection) -> int:
        con.execute(f"EXPORT DATABASE '{_quoted(target)}' (FORMAT parquet)")
        row = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database()"
        ).fetchone()
        return 0 if row is None else int(row[0])

    return visit(path, export, read_only=True, lock_timeout=lock_timeout, what="DuckDB backup")


def _import_duckdb(source: Path, path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        con.execute(f"IMPORT DATABASE '{_quoted(source)}'")
        row = con.execute("SELECT count(*) FROM duckdb_tables()").fetchone()
    finally:
        con.close()
    return 0 if row is None else int(row[0])


def _copy_recovery(directory: Path, target: Path) -> int:
    target.mkdir()
    parts = sorted(directory.glob("part-*.sqlite3"))
    for part in parts:
        source = sqlite3.connect(f"file:{part}?mode=ro", uri=True)
        copy = sqlite3.connect(target / part.name)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
    return len(parts)


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
