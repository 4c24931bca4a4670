"""DuckDBWarehouse on a file in tmp_path: idempotent upserts, reads, and two processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from riffle.dataflows.outputs import WarehouseSink
from riffle.sinks.errors import SinkError
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.duckdb_file import release
from tests.integration.stores_support import BASE_MS, window

pytestmark = pytest.mark.integration

MIN = 60_000
DE = (("country", "de"), ("device", "desktop"))
DE_M = (("country", "de"), ("device", "mobile"))
FR_M = (("country", "fr"), ("device", "mobile"))


@pytest.fixture
def warehouse(tmp_path: Path) -> DuckDBWarehouse:
    return DuckDBWarehouse(tmp_path / "sub" / "w.duckdb")


def rows(path: Path) -> list[tuple[object, ...]]:
    release(path)  # the writer's connection lingers in this process
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(
            "SELECT * EXCLUDE (updated_at) FROM metric_windows ORDER BY ALL"
        ).fetchall()


def test_missing_file_reads_empty(warehouse: DuckDBWarehouse) -> None:
    assert warehouse.read_series("t1", "page_views", 0, 2**50) == []
    warehouse.ping()
    assert warehouse.purge_before(None, 2**50) == 0
    assert not warehouse.path.exists()


def test_upsert_is_idempotent_and_init_repeatable(warehouse: DuckDBWarehouse) -> None:
    warehouse.init()
    warehouse.init()
    batch = [window(BASE_MS + i * MIN, d, values=(i, 3.0)) for i in range(3) for d in (DE, FR_M)]
    warehouse.upsert_windows(batch)
    once = rows(warehouse.path)
    warehouse.upsert_windows(batch)
    assert rows(warehouse.path) == once
    assert len(once) == 6
    read = warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + 3 * MIN)
    assert read == [(DE, batch[0::2]), (FR_M, batch[1::2])]


def test_replay_rewrites_last_write_wins(warehouse: DuckDBWarehouse) -> None:
    warehouse.upsert_windows([window(values=(1.0, 2.0), revision=9)])
    replayed = window(values=(5.0,), revision=2)  # revisions restart in a new run
    warehouse.upsert_windows([replayed])
    assert warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + MIN) == [
        (replayed.dims, [replayed])
    ]
    # Within one batch, the later of two results for a key wins.
    last = window(values=(7.0,), revision=3)
    warehouse.upsert_windows([window(values=(6.0,), revision=4), last])
    assert warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + MIN)[0][1] == [last]


def test_partials_are_refused(warehouse: DuckDBWarehouse) -> None:
    with pytest.raises(ValueError, match="finals only"):
        warehouse.upsert_windows([window(), window(BASE_MS + MIN, final=False)])
    assert not warehouse.path.exists()


def test_filters_ranges_and_sql_access(warehouse: DuckDBWarehouse) -> None:
    warehouse.upsert_windows(
        [window(BASE_MS + i * MIN, d) for i in range(4) for d in (DE, DE_M, FR_M)]
        + [window(BASE_MS, DE, tenant="t2"), window(BASE_MS, DE, metric="other")]
    )

    def read(
        start: int, end: int, filters: dict[str, list[str]] | None = None
    ) -> dict[object, list[int]]:
        return {
            dims: [(p.window_start - BASE_MS) // MIN for p in points]
            for dims, points in warehouse.read_series("t1", "page_views", start, end, filters)
        }

    assert read(BASE_MS + MIN, BASE_MS + 3 * MIN) == {d: [1, 2] for d in (DE, DE_M, FR_M)}
    assert list(read(BASE_MS, BASE_MS + 4 * MIN, {"country": ["de"]})) == [DE, DE_M]
    assert list(
        read(BASE_MS, BASE_MS + 4 * MIN, {"country": ["de", "fr"], "device": ["mobile"]})
    ) == [DE_M, FR_M]
    assert read(BASE_MS, BASE_MS + 4 * MIN, {"country": ["x' OR 1=1 --"]}) == {}
    assert read(BASE_MS, BASE_MS + 4 * MIN, {"country": []}) == {}
    assert len(read(-(2**62), 2**62)) == 3  # bounds past TIMESTAMP's range are clamped
    release(warehouse.path)
    with duckdb.connect(str(warehouse.path), read_only=True) as con:
        found = con.execute(
            "SELECT count(*) FROM metric_windows"
            " WHERE json_extract_string(dims, '$.device') = 'mobile'"
        ).fetchone()
    assert found == (8,)


def test_purge_before(warehouse: DuckDBWarehouse) -> None:
    warehouse.upsert_windows(
        [window(BASE_MS + i * MIN, tenant=t) for i in range(3) for t in ("t1", "t2")]
    )
    assert warehouse.purge_before("t1", BASE_MS + 2 * MIN) == 2
    assert warehouse.purge_before(None, BASE_MS + MIN) == 1
    assert warehouse.purge_before("t0", 2**62) == 0
    assert [r[0] for r in rows(warehouse.path)] == ["t1", "t2", "t2"]


def test_thousands_of_rows_in_one_batch(warehouse: DuckDBWarehouse) -> None:
    batch = [window(BASE_MS + i * MIN, (("n", str(n)),)) for i in range(100) for n in range(50)]
    began = time.perf_counter()
    warehouse.upsert_windows(batch)
    warehouse.upsert_windows(batch)
    assert time.perf_counter() - began < 5.0
    assert len(rows(warehouse.path)) == 5000


WRITER = textwrap.dedent(
    """
    import sys
    import time
    from pathlib import Path
    from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
    from tests.integration.stores_support import BASE_MS, window

    warehouse = DuckDBWarehouse(Path(sys.argv[1]))
    for i in range(int(sys.argv[2])):
        warehouse.upsert_windows(
            [window(BASE_MS + i * 60_000, (("n", str(n)),)) for n in range(20)]
        )
        print(i, flush=True)
        time.sleep(0.02)  # the dataflow writes every few seconds; this is far busier
    """
)

HOLDER = textwrap.dedent(
    """
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    """
)


def test_reader_and_writer_processes_take_turns(warehouse: DuckDBWarehouse) -> None:
    batches = 40
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(warehouse.path), str(batches)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )
    assert writer.stdout is not None
    writer.stdout.readline()  # the first batch is in
    seen = []
    while writer.poll() is None:
        read = warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + batches * MIN)
        total = sum(len(points) for _, points in read)
        assert total % 20 == 0  # a batch is one transaction: all of it or none
        seen.append(total)
    assert writer.wait() == 0
    assert seen == sorted(seen)
    assert len(seen) > 3
    final = warehouse.read_series("t1", "page_views", BASE_MS, BASE_MS + batches * MIN)
    assert sum(len(points) for _, points in final) == 20 * batches


def test_a_lock_held_too_long_is_a_sink_error(tmp_path: Path) -> None:
    path = tmp_path / "held.duckdb"
    DuckDBWarehouse(path).init()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        holder.stdout.readline()
        impatient = DuckDBWarehouse(path, lock_timeout_seconds=0.5)
        began = time.monotonic()
        with pytest.raises(SinkError, match="locked by another process"):
            impatient.read_series("t1", "page_views", 0, 2**50)
        assert 0.4 < time.monotonic() - began < 5
        with pytest.raises(SinkError, match="locked"):
            impatient.upsert_windows([window()])
    finally:
        holder.kill()
        holder.wait()
    assert DuckDBWarehouse(path).read_series("t1", "page_views", 0, 2**50) == []


def test_a_column_of_an_older_type_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:  # dead_letters as an older layout wrote it
        con.execute("CREATE TABLE dead_letters (letter_id VARCHAR PRIMARY KEY, received_at BIGINT)")
    with pytest.raises(SinkError, match=r"dead_letters\.received_at is BIGINT"):
        DuckDBWarehouse(path).init()


def test_the_warehouse_sink_applies_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    now = int(time.time() * 1000)
    recent = now - now % MIN - 10 * MIN
    old = recent - 3 * 86_400_000
    DuckDBWarehouse(path).upsert_windows([window(old), window(old, (("country", "fr"),))])
    sink = WarehouseSink(path, retention=timedelta(days=2))
    part = sink.build_part("warehouse_sink", "p000", None)
    try:
        part.write_batch([window(recent)])
    finally:
        part.close()
    left = DuckDBWarehouse(path).read_series("t1", "page_views", 0, 2**50)
    assert [p.window_start for _, points in left for p in points] == [recent]
    other_sink = WarehouseSink(path, retention=timedelta(days=2))
    other_sink.place(1)
    other = other_sink.build_part("warehouse_sink", "p001", None)
    try:  # only process 0 expires: the others write and nothing else
        DuckDBWarehouse(path).upsert_windows([window(old)])
        other.write_batch([window(recent + MIN)])
    finally:
        other.close()
    assert len(DuckDBWarehouse(path).read_series("t1", "page_views", 0, 2**50)[0][1]) == 3
