"""``riffle import``: CSV and Parquet of the demo's shape, malformed files, the error budget,
resumption after a kill, replays of a range, backfills of one metric, and what a window
written by two runs holds."""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from riffle.config.mapping import parse_mapping
from riffle.config.settings import Settings
from riffle.config.spec import parse_spec
from riffle.dataflows.imports import ImportRequest, run_import, run_replay
from riffle.sinks.archive.store import ArchiveStore
from tests.integration.imports_support import (
    SPEC,
    assert_same_windows,
    demo_events,
    finals,
    write_ndjson,
)

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MAPPING = """
type: purchase
event_id: order_id
ts: {column: created_at, format: "%Y-%m-%d %H:%M:%S", zone: UTC}
props:
  amount: {column: total, type: float}
  currency: currency
context:
  country: country
  device: device
"""


def orders(count: int) -> list[dict[str, object]]:
    rng = random.Random(5)
    return [
        {
            "order_id": f"o-{i}",
            "created_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(BASE / 1000 + i * 7)),
            "country": rng.choice(["DE", "US", "FR"]),
            "device": rng.choice(["mobile", "desktop"]),
            "total": round(rng.uniform(5, 200), 2),
            "currency": rng.choice(["EUR", "USD"]),
        }
        for i in range(count)
    ]


def riffle(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(settings.as_environment())
    return subprocess.run(
        [sys.executable, "-m", "riffle.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def letters(settings: Settings) -> list[tuple[str, str, str, str]]:
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        rows = con.execute(
            "SELECT failure_type, source, path, reason FROM dead_letters ORDER BY source"
        ).fetchall()
    return [tuple(r) for r in rows]


def test_csv_and_parquet_of_the_demo_shape_give_the_same_windows(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    rows = orders(300)
    (tmp_path / "orders.mapping.yaml").write_text(MAPPING)
    lines = ["order_id,created_at,country,device,total,currency"]
    lines += [",".join(str(r[k]) for k in rows[0]) for r in rows]
    lines.insert(11, 'o-bad1,2026-01-01 00:01:00,DE,"mobile,1.0,EUR')  # a broken quote
    lines.insert(21, "o-bad2,2026-01-01 00:02:00,DE,mobile,twelve,EUR")  # a wrong type
    (tmp_path / "orders.csv").write_text("\n".join(lines) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "orders.parquet", row_group_size=64)

    csv_run = settings_factory(warehouse=f"duckdb:///{tmp_path / 'csv.duckdb'}")
    done = riffle(
        csv_run,
        "import",
        str(tmp_path / "orders.csv"),
        "--mapping",
        str(tmp_path / "orders.mapping.yaml"),
    )
    assert done.returncode == 3, done.stderr  # finished, with rejected rows
    assert "rows read 302, accepted 300, rejected 2" in done.stdout
    assert "import total" in done.stdout and "import $row" in done.stdout
    got = letters(csv_run)
    csv_path = tmp_path / "orders.csv"
    assert got == [
        ("import", f"import:{csv_path}@11", "$row", "a quote is not closed"),
        (
            "import",
            f"import:{csv_path}@21",
            "total",
            "'twelve' for amount: could not convert string to float: 'twelve'",
        ),
    ]

    parquet_run = settings_factory(warehouse=f"duckdb:///{tmp_path / 'parquet.duckdb'}")
    mapping = parse_mapping(MAPPING)
    typed = mapping.model_copy(update={"ts": mapping.ts.model_copy(update={"format": "iso"})})
    result = run_import(
        parquet_run, SPEC, ImportRequest(source=str(tmp_path / "orders.parquet"), mapping=typed)
    )
    assert (result.status, result.report.rows_read, result.report.rejected) == ("succeeded", 300, 0)
    from_csv, from_parquet = finals(csv_run), finals(parquet_run)
    assert {k[0] for k in from_csv} >= {"revenue", "purchases", "avg_order_value"}
    assert from_csv.keys() == from_parquet.keys()
    assert_same_windows(from_parquet, from_csv)
    total = sum(p.sum for k, p in from_csv.items() if k[0] == "revenue")
    assert total == pytest.approx(sum(float(r["total"]) for r in rows))  # type: ignore[arg-type]


def test_junk_stops_at_the_error_budget_and_every_rejected_row_is_recorded(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    rng = random.Random(3)
    junk = tmp_path / "junk.ndjson"
    with junk.open("wb") as out:
        for _ in range(40_000):  # ~4 MB of lines that are not JSON
            out.write(bytes(rng.randrange(32, 127) for _ in range(100)) + b"\n")
    settings = settings_factory()
    done = riffle(settings, "import", str(junk), "--type", "signup", "--max-errors", "500")
    assert done.returncode == 4, done.stderr
    assert "more than --max-errors 500; stopped early" in done.stdout
    recorded = letters(settings)
    assert len(recorded) > 500
    assert len(recorded) < 40_000  # it stopped early
    assert all(r[0] == "import" and r[3].startswith("not valid JSON") for r in recorded)


def test_an_interrupted_import_resumes_to_the_uninterrupted_result(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    events = demo_events(24_000, BASE, rate=60.0)
    folder = tmp_path / "in"
    folder.mkdir()
    for part in range(6):
        write_ndjson(folder / f"part-{part}.ndjson", events[part * 4000 : (part + 1) * 4000])
    write_ndjson(folder / "part-6.ndjson", events[24_000:])
    whole = settings_factory(
        warehouse=f"duckdb:///{tmp_path / 'whole.duckdb'}", import_state_dir=tmp_path / "s1"
    )
    expected = run_import(whole, SPEC, ImportRequest(source=str(folder)))
    killed = settings_factory(
        warehouse=f"duckdb:///{tmp_path / 'killed.duckdb'}", import_state_dir=tmp_path / "s2"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIFFLE_")}
    env.update(killed.as_environment())
    command = [sys.executable, "-m", "riffle.cli", "import", str(folder)]
    process = subprocess.Popen(
        [*command, "--checkpoint-seconds", "0.2"], env=env, stdout=subprocess.DEVNULL
    )
    ledger = next(iter((tmp_path / "s2").glob("*")), None)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        ledger = next(iter((tmp_path / "s2").glob("*/ledger.sqlite")), None)
        if ledger is not None and _files_done(ledger) >= 2:
            break
        time.sleep(0.1)
    assert process.poll() is None, "the import ended before it could be interrupted"
    process.kill()
    process.wait(10)
    assert ledger is not None and 2 <= _files_done(ledger) < 7

    resumed = riffle(killed, "import", str(folder))
    assert resumed.returncode in (0, 3), resumed.stderr
    state = orjson.loads(next((tmp_path / "s2").glob("*/run.json")).read_bytes())
    assert state["status"] in ("succeeded", "rejected")
    assert f"rows read {expected.report.rows_read:,}" in resumed.stdout
    assert f"rejected {expected.report.rejected:,}," in resumed.stdout
    assert finals(killed).keys() == finals(whole).keys()
    assert_same_windows(finals(killed), finals(whole))


def _files_done(ledger: Path) -> int:
    con = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
    try:
        (count,) = con.execute("SELECT count(*) FROM files").fetchone()
    except sqlite3.OperationalError:  # the ledger is still being created
        return 0
    finally:
        con.close()
    return int(count)


NEW_METRIC = """
  - name: page_views_10m
    description: Pages viewed per device in 10 minutes (added after the data came in).
    events: [page_view]
    aggregation: count
    dimensions: [device]
    window: 10m
"""


def test_replays_and_backfills_rebuild_only_what_they_cover(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    events = demo_events(4000, BASE, rate=2.0)  # about an hour
    archive = tmp_path / "archive"
    first = settings_factory(archive_url=str(archive), import_state_dir=tmp_path / "state")
    ndjson = write_ndjson(tmp_path / "e.ndjson", events)
    run_import(first, SPEC, ImportRequest(source=str(ndjson)))
    store = ArchiveStore(str(archive))
    imported = finals(first)

    # A backfill of a new metric writes that metric's windows and nothing else.
    demo = Path("config/demo.yaml").read_text()
    grown = parse_spec(demo.replace("\nmetrics:\n", "\nmetrics:\n" + NEW_METRIC, 1))
    backfilled = settings_factory(warehouse=f"duckdb:///{tmp_path / 'backfill.duckdb'}")
    end = BASE + 3_600_000
    run_replay(backfilled, grown, store, BASE, end, metric="page_views_10m")
    written = finals(backfilled, grown)
    assert written and {k[0] for k in written} == {"page_views_10m"}
    views = sum(w.count for k, w in imported.items() if k[0] == "page_views" and BASE <= k[2] < end)
    assert sum(w.count for w in written.values()) == views

    # A replay of [10m, 20m) rewrites the windows lying whole inside it, nothing else.
    replayed = settings_factory(warehouse=f"duckdb:///{tmp_path / 'replay.duckdb'}")
    start, end = BASE + 600_000, BASE + 1_200_000
    run_replay(replayed, SPEC, store, start, end)
    got = finals(replayed)
    assert got and all(start <= w.window_start and w.window_end <= end for w in got.values())
    expected = {k: w for k, w in imported.items() if k in got}
    assert expected.keys() == got.keys()
    assert_same_windows(got, expected)
    whole_minutes = {
        k
        for k, w in imported.items()
        if k[0] == "page_views" and start <= w.window_start and w.window_end <= end
    }
    assert whole_minutes and whole_minutes <= got.keys()

    # `riffle import` reads the archive natively: its events, every window.
    native = settings_factory(warehouse=f"duckdb:///{tmp_path / 'native.duckdb'}")
    assert run_import(native, SPEC, ImportRequest(source=str(archive))).status == "succeeded"
    assert finals(native).keys() == imported.keys()
    assert_same_windows(finals(native), imported)


def test_a_window_two_runs_wrote_holds_the_last_until_the_archive_merges_them(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    """Windows are upserted whole: a second import into the same minute replaces the
    first one's value (and importing the same file again changes nothing); a replay of
    the archive, which holds both sources' events, gives the minute with all of them."""
    archive = tmp_path / "archive"
    settings = settings_factory(archive_url=str(archive), import_state_dir=tmp_path / "state")
    signup = {"type": "signup", "props": {"channel": "ads"}, "context": {"country": "DE"}}

    def one(name: str, ids: range) -> Path:
        rows = [dict(signup, event_id=f"{name}-{i}", ts=BASE + 1000 * i) for i in ids]
        return write_ndjson(tmp_path / f"{name}.ndjson", [orjson.dumps(r) for r in rows])

    key = ("signups", (("channel", "ads"), ("country", "DE")), BASE)
    run_import(settings, SPEC, ImportRequest(source=str(one("a", range(10)))))
    assert finals(settings)[key].count == 10
    run_import(settings, SPEC, ImportRequest(source=str(one("b", range(10, 14)))))
    assert finals(settings)[key].count == 4
    run_import(settings, SPEC, ImportRequest(source=str(tmp_path / "b.ndjson")))
    assert finals(settings)[key].count == 4
    run_replay(settings, SPEC, ArchiveStore(str(archive)), BASE, BASE + 60_000)
    assert finals(settings)[key].count == 14
