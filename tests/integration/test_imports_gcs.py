"""Imports from ``gs://`` and the raw archive on Cloud Storage, through the official client
against ``gcp-storage-emulator``; runs are recorded and an unchanged source is skipped."""

from __future__ import annotations

import gzip
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from riffle.config.settings import Settings
from riffle.dataflows.import_runs import execute
from riffle.dataflows.imports import ImportRequest, run_replay
from riffle.sinks.archive.reader import archived_parts
from riffle.sinks.archive.store import ArchiveStore
from riffle.sinks.redis.imports import ImportRun, ImportRunStore
from tests.integration.imports_support import (
    BUCKET,
    SPEC,
    assert_same_windows,
    demo_events,
    finals,
    gcs,  # noqa: F401 - the fixture
    upload,
)

BASE = 1_767_225_600_000


@pytest.mark.usefixtures("gcs")
def test_a_bucket_import_is_recorded_archived_and_skipped_when_unchanged(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    prefix = f"exports-{uuid.uuid4().hex[:6]}"
    events = demo_events(1500, BASE)
    half = len(events) // 2
    upload(f"{prefix}/day1.ndjson.gz", gzip.compress(b"\n".join(events[:half])))
    upload(f"{prefix}/day2.ndjson", b"\n".join(events[half:]))
    upload(f"{prefix}-other/ignored.ndjson", b"{}")
    archive = f"gs://{BUCKET}/archive-{prefix}"
    settings = settings_factory(archive_url=archive, import_state_dir=tmp_path / "state")
    runs = ImportRunStore(redis.Redis.from_url(settings.redis_url), settings.redis_prefix)
    request = ImportRequest(source=f"gs://{BUCKET}/{prefix}")

    def run() -> ImportRun:
        fresh = ImportRun(id=uuid.uuid4().hex[:16], tenant="demo", source=request.source)
        return execute(settings, SPEC, request, runs, fresh, if_changed=True)[0]

    first = run()  # the demo's few schema-invalid events are rejected
    assert (first.status, first.files, first.rows_read) == ("rejected", 2, len(events))
    assert first.accepted == len(events) - first.rejected > 0.97 * len(events)
    assert first.windows > 0 and all(p["source"].startswith("import:gs://") for p in first.problems)
    assert runs.get("demo", first.id) == first
    stored = archived_parts(ArchiveStore(archive), 0, 2**62)
    assert sum(p.rows for p in stored) == first.accepted

    second = run()
    assert second.status == "unchanged" and second.rows_read == 0
    assert [r.id for r in runs.recent("demo", 2)] == [second.id, first.id]

    upload(f"{prefix}/day2.ndjson", b"\n".join(events[half:]) + b"\n")  # a new generation
    third = run()
    assert (third.status, third.rows_read, third.rejected) == (
        "rejected",
        len(events),
        first.rejected,
    )
    assert sum(p.rows for p in archived_parts(ArchiveStore(archive), 0, 2**62)) == first.accepted

    replayed = settings_factory(warehouse=f"duckdb:///{tmp_path / 'replayed.duckdb'}")
    run_replay(replayed, SPEC, ArchiveStore(archive), 0, 2**62, whole_windows=False)
    assert finals(replayed).keys() == finals(settings).keys()
    assert_same_windows(finals(replayed), finals(settings))
