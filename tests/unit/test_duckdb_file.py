"""Short visits to a DuckDB file that another process may be creating at that moment."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import duckdb
import pytest

from riffle.sinks.errors import SinkError, TransientSinkError
from riffle.sinks.warehouse.duckdb_file import visit


def _count(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT count(*) FROM t").fetchone()
    assert row is not None
    return int(row[0])


def test_a_file_whose_header_is_not_written_yet_is_waited_for(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    path.write_bytes(b"\0" * 100)  # what a reader can see while another process creates it
    ready = tmp_path / "ready.duckdb"
    with duckdb.connect(str(ready)) as con:
        con.execute("CREATE TABLE t AS SELECT 1 AS x")

    def finish() -> None:
        time.sleep(0.3)
        os.replace(ready, path)

    creator = threading.Thread(target=finish)
    creator.start()
    try:
        assert visit(path, _count, read_only=True, lock_timeout=10, what="test") == 1
    finally:
        creator.join()


def test_a_file_that_never_becomes_a_database_is_a_lasting_error(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    path.write_bytes(b"not a database" * 100)
    started = time.monotonic()
    with pytest.raises(SinkError, match="test") as caught:
        visit(path, _count, read_only=True, lock_timeout=0.5, what="test")
    assert not isinstance(caught.value, TransientSinkError)
    assert time.monotonic() - started >= 0.5  # retried first, like a lock conflict
