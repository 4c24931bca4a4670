"""Both warehouse engines, same contract: DuckDB on a file, BigQuery on the real emulator.

Every test here takes ``warehouse_target`` and so runs once per engine.
What "readers see" is ``metric_windows`` — the table in DuckDB, the
deduplicating view in BigQuery — queried with each engine's own SQL.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from google.cloud import bigquery

from riffle.operators.records import DeadLetter
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.batching import BackpressureError, BatchWriter
from riffle.sinks.warehouse.bigquery import BigQueryWarehouse
from riffle.sinks.warehouse.dead_letters import LetterQuery, WarehouseDeadLetters
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.duckdb_file import release
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.sinks.warehouse.query import expiry_cutoff_ms
from riffle.sinks.warehouse.tables import METRIC_WINDOWS, RAW_SUFFIX, TABLES, Column
from tests.bq_support import Emulator
from tests.fault_proxy import FaultProxy, start_proxy
from tests.integration.stores_support import BASE_MS, window
from tests.warehouse_fixtures import WarehouseTarget

pytestmark = pytest.mark.integration

MIN = 60_000
ROOT = Path(__file__).parents[2]


def sql(warehouse: Warehouse, query: str) -> list[tuple[Any, ...]]:
    """Run ``query`` (``{t}`` stands for the dataset prefix) the way a user's SQL would."""
    if isinstance(warehouse, DuckDBWarehouse):
        release(warehouse.path)  # the writer's connection lingers in this process
        with duckdb.connect(str(warehouse.path), read_only=True) as con:
            return con.execute(query.format(t="")).fetchall()
    assert isinstance(warehouse, BigQueryWarehouse)
    prefix = f"`{warehouse.project}`.{warehouse.dataset}."
    return [tuple(r.values()) for r in warehouse.client.query(query.format(t=prefix)).result()]


def seen(warehouse: Warehouse) -> tuple[int, float]:
    """(rows, total count) in what readers query: ``metric_windows``."""
    rows = sql(warehouse, "SELECT count(*), sum(count) FROM {t}metric_windows")
    return int(rows[0][0]), float(rows[0][1] or 0)


def stored(warehouse: Warehouse) -> int:
    """Physical rows, duplicates included (BigQuery's raw table; DuckDB upserts in place)."""
    table = "metric_windows" + (RAW_SUFFIX if isinstance(warehouse, BigQueryWarehouse) else "")
    return int(sql(warehouse, f"SELECT count(*) FROM {{t}}{table}")[0][0])


def test_init_is_idempotent_and_creates_the_logical_tables(
    warehouse_target: WarehouseTarget,
) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    warehouse.init()
    warehouse.ping()
    assert seen(warehouse) == (0, 0.0)
    assert sql(warehouse, "SELECT count(*) FROM {t}dead_letters") == [(0,)]


def test_upserts_are_idempotent(warehouse_target: WarehouseTarget) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    batch = [
        window(BASE_MS + i * MIN, (("country", c),), values=(i, 2.0))
        for i in range(3)
        for c in ("de", "fr")
    ]
    warehouse.upsert_windows(batch)
    warehouse.upsert_windows(batch)
    assert seen(warehouse) == (6, 12.0)
    read = warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + 3 * MIN)
    assert read == [((("country", "de"),), batch[0::2]), ((("country", "fr"),), batch[1::2])]
    assert warehouse.read_series("t2", "page_views", BASE_MS, BASE_MS + 3 * MIN) == []


def test_replay_and_correction_dedup_last_write_wins(warehouse_target: WarehouseTarget) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    first = [window(BASE_MS + i * MIN, values=(1.0,), revision=5) for i in range(4)]
    warehouse.upsert_windows(first)
    time.sleep(0.01)  # a replay is a later write
    corrected = window(BASE_MS, values=(1.0, 1.0, 1.0), revision=2)  # revisions restart
    warehouse.upsert_windows([*first[1:], corrected])
    assert seen(warehouse) == (4, 6.0)
    points = warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + 4 * MIN)[0][1]
    assert points[0] == corrected
    assert points[1:] == first[1:]


def test_a_spec_that_adds_a_dimension_needs_no_ddl(warehouse_target: WarehouseTarget) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    warehouse.upsert_windows([window(BASE_MS, (("country", "de"),), values=(1.0, 2.0))])
    warehouse.upsert_windows(
        [window(BASE_MS + MIN, (("country", "de"), ("device", "mobile")), values=(5.0,))]
    )
    by_device = warehouse.rollup(
        "t1", "page_views", BASE_MS, BASE_MS + 2 * MIN, step_ms=None, by=["device"]
    )
    assert [(dict(r.dims)["device"], r.count) for r in by_device] == [("", 2), ("mobile", 1)]
    mobile = warehouse.read_series(
        "t1", "page_views", BASE_MS, BASE_MS + 2 * MIN, {"device": ["mobile"]}
    )
    assert [dims for dims, _ in mobile] == [(("country", "de"), ("device", "mobile"))]


def test_a_new_column_is_added_to_existing_tables(warehouse_target: WarehouseTarget) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    old = window(BASE_MS, values=(3.0,))
    warehouse.upsert_windows([old])
    grown = dataclasses.replace(
        METRIC_WINDOWS, columns=(*METRIC_WINDOWS.columns, Column("note", "STRING"))
    )
    assert isinstance(warehouse, DuckDBWarehouse | BigQueryWarehouse)
    warehouse.init([grown])
    warehouse.init([grown])
    table = "metric_windows" + (RAW_SUFFIX if isinstance(warehouse, BigQueryWarehouse) else "")
    assert sql(warehouse, f"SELECT count(*) FROM {{t}}{table} WHERE note IS NULL") == [(1,)]
    assert warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + MIN)[0][1] == [old]
    warehouse.upsert_windows([old])
    assert seen(warehouse) == (1, 1.0)


def test_rollup_merges_exactly_in_the_engine(warehouse_target: WarehouseTarget) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    hour = 3_600_000
    start = BASE_MS - BASE_MS % hour
    warehouse.upsert_windows(
        [
            window(start + i * 20 * MIN, (("country", c), ("device", "m")), values=(i, 10.0 * i))
            for i in range(6)
            for c in ("de", "fr")
        ]
        + [window(start, (("country", "de"),), tenant="other", values=(99.0,))]
    )
    rows = warehouse.rollup(
        "t1",
        "page_views",
        start,
        start + 2 * hour,
        step_ms=hour,
        by=["country"],
        filters={"device": ["m"]},
    )
    assert [
        (dict(r.dims)["country"], r.bucket - start, r.count, r.sum, r.min, r.max, r.windows)
        for r in rows
    ] == [
        ("de", 0, 6, 33.0, 0.0, 20.0, 3),
        ("de", hour, 6, 132.0, 3.0, 50.0, 3),
        ("fr", 0, 6, 33.0, 0.0, 20.0, 3),
        ("fr", hour, 6, 132.0, 3.0, 50.0, 3),
    ]
    everything = warehouse.rollup("t1", "page_views", start, start + 2 * hour, step_ms=None, by=[])
    assert [(r.dims, r.bucket, r.count, r.windows) for r in everything] == [((), start, 24, 12)]


WRITER = textwrap.dedent(
    """
    import sys
    from riffle.config.settings import Settings
    from riffle.sinks.warehouse.batching import BatchWriter
    from riffle.sinks.warehouse.engines import open_warehouse
    from tests.integration.stores_support import BASE_MS, window

    url, endpoint, first, batches, size = sys.argv[1:6]
    warehouse = open_warehouse(Settings(warehouse=url, bigquery_endpoint=endpoint or None))
    writer = BatchWriter(warehouse.upsert_windows, max_rows=50, max_delay_s=0.05)
    for i in range(int(first), int(batches)):
        writer.write([window(BASE_MS + i * 60_000, (("n", str(k)),), values=(float(i),))
                      for k in range(int(size))])
        print(i, flush=True)  # acknowledged: like a committed offset or a recovery snapshot
    writer.close()
    """
)


def run_writer(
    target: WarehouseTarget, first: int, batches: int, size: int
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            target.url,
            target.endpoint or "",
            str(first),
            str(batches),
            str(size),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_kill_9_mid_batch_then_replay_loses_and_duplicates_nothing(
    warehouse_target: WarehouseTarget,
) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    batches, size = 12, 120
    writer = run_writer(warehouse_target, 0, batches, size)
    assert writer.stdout is not None
    acked = -1
    while acked < 3:
        acked = int(writer.stdout.readline())
    writer.kill()  # SIGKILL while the next batch is in flight
    writer.wait()
    assert seen(warehouse)[0] >= (acked + 1) * size  # every acknowledged batch is durable
    # A restart resumes at the last acknowledgement and replays what followed it
    # (at least once: the batch in flight when it died is written again).
    again = run_writer(warehouse_target, acked, batches, size)
    assert again.wait(timeout=120) == 0
    rows, total = seen(warehouse)
    assert rows == batches * size
    assert total == batches * size
    assert stored(warehouse) >= rows
    per_batch = sql(
        warehouse,
        "SELECT min(sum), max(sum), count(*) FROM {t}metric_windows "
        "GROUP BY window_start ORDER BY 1",
    )
    assert per_batch == [(float(i), float(i), size) for i in range(batches)]


@pytest.fixture
def outage(warehouse_target: WarehouseTarget, request: pytest.FixtureRequest) -> Any:
    """``(warehouse, start(), end())``: a real outage of the target engine.

    DuckDB: another process holds the file's write lock. BigQuery: the
    emulator is stopped with SIGSTOP (its socket stays open, nothing answers;
    requests time out), then continued.
    """
    if warehouse_target.engine == "duckdb":
        warehouse: Warehouse = DuckDBWarehouse(
            Path(warehouse_target.url.removeprefix("duckdb:///")), lock_timeout_seconds=0.3
        )
        holder: list[subprocess.Popen[str]] = []

        def start() -> None:
            holder.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        "import sys, time, duckdb; c = duckdb.connect(sys.argv[1]);"
                        " print('held', flush=True); time.sleep(600)",
                        str(warehouse.path),
                    ],  # type: ignore[attr-defined]
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            assert holder[0].stdout is not None
            holder[0].stdout.readline()

        def end() -> None:
            holder[0].kill()
            holder[0].wait()

        request.addfinalizer(lambda: [p.kill() for p in holder])
    else:
        emulator: Emulator = request.getfixturevalue("bq_emulator")
        project, dataset = warehouse_target.url.removeprefix("bigquery://").split("/")
        warehouse = BigQueryWarehouse(project, dataset, endpoint=emulator.endpoint, timeout_s=1.0)
        start, end = emulator.pause, emulator.resume
        request.addfinalizer(emulator.resume)  # noqa: PT021 - one of two branches
    warehouse.init()
    return warehouse, start, end


def outage_run(outage: Any, seconds: float) -> None:
    warehouse, start, end = outage
    failed: list[None] = []  # what feeds riffle_dataflow_sink_errors_total{sink="warehouse"}
    writer: BatchWriter[Any] = BatchWriter(
        warehouse.upsert_windows,
        max_rows=50,
        max_delay_s=0.05,
        max_buffer=200,
        give_up_s=600,
        on_error=lambda: failed.append(None),
    )
    rows = [
        window(BASE_MS + i * MIN, (("n", str(k)),), values=(1.0,))
        for i in range(20)
        for k in range(50)
    ]
    writer.write(rows[:100])
    start()
    producer = threading.Thread(target=writer.submit, args=(rows[100:],))
    producer.start()
    began = time.monotonic()
    peak = 0
    while time.monotonic() - began < seconds:
        peak = max(peak, writer.buffered)
        time.sleep(0.05)
    assert writer.buffered == 200  # full, and no larger: the producer is held back
    assert producer.is_alive()
    with pytest.raises(BackpressureError) as caught:
        writer.submit([rows[0]], timeout=0.2)
    assert caught.value.retry_after > 0
    end()
    producer.join(timeout=120)
    writer.write([])
    writer.close()
    assert peak <= 200
    assert seen(warehouse) == (1000, 1000.0)
    assert failed, "every failed attempt during the outage is reported"


def test_an_outage_is_ridden_out_with_backpressure(outage: Any) -> None:
    outage_run(outage, 3.0)


@pytest.mark.soak
def test_a_one_minute_outage_is_ridden_out(outage: Any) -> None:
    outage_run(outage, 60.0)


def test_bigquery_layout_is_partitioned_and_clustered(bq_emulator: Emulator) -> None:
    warehouse = BigQueryWarehouse(bq_emulator.project, "layout", endpoint=bq_emulator.endpoint)
    warehouse.init()
    raw = warehouse.client.get_table(warehouse.table_id("metric_windows_raw"))
    assert raw.time_partitioning.type_ == bigquery.TimePartitioningType.DAY
    assert raw.time_partitioning.field == "window_start"
    assert raw.clustering_fields == ["tenant", "metric"]
    view = warehouse.client.get_table(warehouse.table_id("metric_windows"))
    assert view.table_type == "VIEW"


def test_riffle_warehouse_init_cli(warehouse_target: WarehouseTarget) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")},
        "RIFFLE_WAREHOUSE": warehouse_target.url,
        "RIFFLE_BIGQUERY_ENDPOINT": warehouse_target.endpoint or "",
    }
    if not warehouse_target.endpoint:
        env.pop("RIFFLE_BIGQUERY_ENDPOINT")
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "riffle.cli", "warehouse", "init"],
            env=env, capture_output=True, text=True, cwd=ROOT, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "warehouse ready" in done.stdout
    assert seen(warehouse_target.open()) == (0, 0.0)


def letter(n: int, tenant: str = "t1") -> DeadLetter:
    return DeadLetter(
        failure_type="schema",
        reason="bad",
        path="props.x",
        raw=f"raw-{n}".encode() + b"\xff",
        source=f"kafka:events/0@{n}",
        tenant=tenant,
        received_at=BASE_MS + n,
        event_type="purchase",
    )


def test_dead_letters_keep_the_first_write_and_the_first_replay_mark(
    warehouse_target: WarehouseTarget,
) -> None:
    store = WarehouseDeadLetters(warehouse_target.open())
    store.write([letter(1), letter(2), letter(3, tenant="t2")])
    (first,) = store.get("t1", [letter(1).letter_id])
    time.sleep(0.01)
    store.write([letter(1)])  # redelivered: the first write stays
    other = letter(3, tenant="t2").letter_id
    store.mark_replayed("t1", [letter(1).letter_id, other], BASE_MS + 100)
    store.mark_replayed("t1", [letter(1).letter_id], BASE_MS + 200)  # a second replay: no-op
    store.write([letter(1)])  # redelivered after the replay: it stays replayed
    (again,) = store.get("t1", [letter(1).letter_id])
    assert again.letter == first.letter and again.letter.raw.endswith(b"\xff")
    assert (again.stored_at, again.replayed_at) == (first.stored_at, BASE_MS + 100)
    assert store.get("t2", [other])[0].replayed_at is None  # t1 cannot mark t2's letters
    replayed, _ = store.query(LetterQuery("t1", replayed=True))
    assert [s.letter_id for s in replayed] == [letter(1).letter_id]
    page, cursor = store.query(LetterQuery("t1", limit=1))
    rest, end = store.query(LetterQuery("t1", limit=5, cursor=cursor))
    assert [s.letter_id for s in page + rest] == [letter(2).letter_id, letter(1).letter_id]
    assert end is None
    assert sql(store.warehouse, "SELECT count(*) FROM {t}dead_letters") == [(3,)]


def raw_rows(warehouse: Warehouse, table: str) -> int:
    """Stored rows of ``table``, duplicates included."""
    suffix = RAW_SUFFIX if isinstance(warehouse, BigQueryWarehouse) else ""
    return int(sql(warehouse, f"SELECT count(*) FROM {{t}}{table}{suffix}")[0][0])


def test_compaction_removes_superseded_rows_only_and_is_idempotent(
    warehouse_target: WarehouseTarget,
) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    batch = [window(BASE_MS + i * MIN, (("n", str(k)),), values=(1.0,)) for i in range(5)
             for k in range(4)]  # fmt: skip
    for revision in (1, 2, 3):  # a replay and a correction: superseded rows pile up in raw
        warehouse.upsert_windows([dataclasses.replace(w, revision=revision) for w in batch])
        time.sleep(0.005)
    store = WarehouseDeadLetters(warehouse)
    store.write([letter(1), letter(2)])
    store.write([letter(1)])
    before = warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + 5 * MIN)
    duplicates = 3 if isinstance(warehouse, BigQueryWarehouse) else 1
    assert raw_rows(warehouse, "metric_windows") == len(batch) * duplicates
    assert warehouse.compact(3_600_000) in ({}, {t.name: 0 for t in TABLES})  # too young
    done = threading.Event()

    def keep_writing() -> None:  # compaction must be safe while writers run
        i = 5
        while not done.is_set():
            warehouse.upsert_windows([window(BASE_MS + i * MIN, values=(2.0,))])
            i += 1

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        removed = warehouse.compact(0)
    finally:
        done.set()
        writer.join()
    if isinstance(warehouse, BigQueryWarehouse):
        assert removed["metric_windows"] == len(batch) * 2
        assert removed["dead_letters"] == 1
    else:
        assert removed == {}
    assert raw_rows(warehouse, "metric_windows") == seen(warehouse)[0]
    assert raw_rows(warehouse, "dead_letters") == 2
    assert warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + 5 * MIN) == before
    assert [p.revision for _, points in before for p in points] == [3] * len(batch)
    assert not any(warehouse.compact(0).values())  # idempotent


def test_retention_expires_partitions_by_one_rule(warehouse_target: WarehouseTarget) -> None:
    day = 86_400_000
    now = BASE_MS + 40 * day
    settings = warehouse_target.settings()
    warehouse = open_warehouse(settings, timedelta(days=30))
    warehouse.init()
    cutoff = expiry_cutoff_ms(now, 30 * day)
    assert cutoff % day == 0 and now - 31 * day < cutoff <= now - 30 * day + day
    starts = [cutoff - day, cutoff - 1, cutoff, cutoff + day]
    warehouse.upsert_windows([window(s - s % MIN) for s in starts])
    warehouse.upsert_windows([window(cutoff - 1 - (cutoff - 1) % MIN, (("country", "fr"),))])
    if isinstance(warehouse, BigQueryWarehouse):
        for table in (t for t in TABLES if t.partition_by):  # BigQuery drops expired ones
            raw = warehouse.client.get_table(warehouse.table_id(table.name + RAW_SUFFIX))
            assert raw.time_partitioning.expiration_ms == 30 * day
        shorter = open_warehouse(settings, timedelta(days=7))
        shorter.init()  # the spec's retention changed: init updates the option
        raw = warehouse.client.get_table(warehouse.table_id("metric_windows_raw"))
        assert raw.time_partitioning.expiration_ms == 7 * day
        assert warehouse.expire(now) == {}
        return
    assert warehouse.expire(now)["metric_windows"] == 3
    left = [p.window_start for _, points in warehouse.read_series("t1", "page_views", 0, 2**50)
            for p in points]  # fmt: skip
    assert left == [cutoff, cutoff + day]
    assert warehouse.expire(now)["metric_windows"] == 0


def test_riffle_warehouse_compact_cli(warehouse_target: WarehouseTarget, tmp_path: Path) -> None:
    warehouse = warehouse_target.open()
    warehouse.init()
    recent = int(time.time() * 1000) // MIN * MIN - 60 * MIN  # inside the spec's retention
    old = window(recent)
    warehouse.upsert_windows([old])
    warehouse.upsert_windows([dataclasses.replace(old, revision=2)])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")},
        "RIFFLE_WAREHOUSE": warehouse_target.url,
        **({"RIFFLE_BIGQUERY_ENDPOINT": warehouse_target.endpoint} if warehouse_target.endpoint
           else {}),
    }  # fmt: skip
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "riffle.cli", "warehouse", "compact", "--min-age-minutes", "0"],
            env=env, capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "warehouse compacted" in done.stdout
    assert raw_rows(warehouse, "metric_windows") == seen(warehouse)[0] == 1
    assert warehouse.read_series("t1", "page_views", recent, recent + MIN)[0][1][0].revision == 2


@pytest.fixture
def faulty(bq_emulator: Emulator) -> Iterator[tuple[FaultProxy, BigQueryWarehouse]]:
    """A fresh dataset of the emulator, reached through a fault-injecting proxy."""
    proxy = start_proxy(bq_emulator.endpoint)
    warehouse = BigQueryWarehouse(
        bq_emulator.project, f"f_{uuid.uuid4().hex[:12]}", endpoint=proxy.endpoint, timeout_s=5.0
    )
    warehouse.init()
    try:
        yield proxy, warehouse
    finally:
        proxy.stop()


def test_429_and_503_are_retried_with_backoff_and_nothing_is_lost_or_doubled(
    faulty: tuple[FaultProxy, BigQueryWarehouse],
) -> None:
    """BigQuery only: HTTP faults are what the emulator's clients see (DuckDB's
    equivalent, a held lock, is the outage test above)."""
    proxy, warehouse = faulty
    writer: BatchWriter[Any] = BatchWriter(
        warehouse.upsert_windows, max_rows=50, max_delay_s=0.05, max_buffer=200, give_up_s=600
    )
    rows = [window(BASE_MS + i * MIN, (("n", str(k)),), values=(1.0,)) for i in range(20)
            for k in range(50)]  # fmt: skip
    writer.write(rows[:100])
    proxy.arm("reject", 429, path="/insertAll", seconds=4.0)  # throttled: nothing lands
    producer = threading.Thread(target=writer.submit, args=(rows[100:],))
    producer.start()
    time.sleep(3.0)
    assert writer.buffered == 200  # full, and no larger: the producer is held back
    assert producer.is_alive()
    while proxy.armed():
        time.sleep(0.05)
    throttled = [at for at, _, status in proxy.faulted if status == 429]
    assert 3 <= len(throttled) <= 12  # retried, and not hammered: backoff between attempts
    gaps = [b - a for a, b in itertools.pairwise(throttled)]
    assert max(gaps) >= 0.4
    # Lost answers: the rows land, the client hears 503 and writes them again.
    proxy.arm("lose", 503, path="/insertAll", count=3)
    producer.join(timeout=120)
    writer.write([])
    writer.close()
    assert [s for _, _, s in proxy.faulted].count(503) == 3
    assert seen(warehouse) == (1000, 1000.0)
    assert stored(warehouse) > 1000  # duplicates in the raw table, none in the view
    per_window = sql(
        warehouse,
        "SELECT count(*), sum(count) FROM {t}metric_windows GROUP BY window_start",
    )
    assert per_window == [(50, 50)] * 20
