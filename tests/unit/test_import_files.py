"""Import readers: every format and compression, resuming mid-file, malformed input."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from riffle.sources.files import read_rows
from riffle.sources.storage import StorageError, list_objects

ROWS = [{"id": str(i), "amount": f"{i}.5"} for i in range(1, 8)]


def rows_of(path: Path, start: int = 1, chunk_rows: int = 3) -> list[dict[str, object]]:
    out = []
    for chunk in read_rows(f"file://{path}", start=start, chunk_rows=chunk_rows):
        out.extend(orjson.loads(raw) for _, raw in chunk.rows)
    return out


def csv_bytes() -> bytes:
    return b"id,amount\n" + b"".join(f"{r['id']},{r['amount']}\n".encode() for r in ROWS)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("a.csv", csv_bytes()),
        ("a.csv.gz", gzip.compress(csv_bytes())),
        ("a.csv.zst", zstandard.ZstdCompressor().compress(csv_bytes())),
        ("a.ndjson", b"".join(orjson.dumps(r) + b"\n" for r in ROWS)),
        ("a.jsonl.gz", gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in ROWS))),
        ("a.json", orjson.dumps(ROWS)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_every_format_gives_the_same_rows(tmp_path: Path, name: str, data: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    rows = rows_of(path)
    assert [r["values"] for r in rows] == ROWS
    assert [r["row"] for r in rows] == list(range(1, 8))
    assert [r["values"] for r in rows_of(path, start=5)] == ROWS[4:]


def test_parquet_resumes_at_a_row_inside_a_later_row_group(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path, row_group_size=2)
    assert [r["values"] for r in rows_of(path)] == ROWS
    assert [(r["row"], r["values"]) for r in rows_of(path, start=6)] == [
        (6, ROWS[5]),
        (7, ROWS[6]),
    ]


def test_a_broken_quote_costs_one_row_not_the_rest_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes(b'id,amount\n1,2\n2,"3\n3,4\n4,"5""x"""\n5\n6,7\n7,"8\n')
    got = [(r["row"], r.get("values"), r.get("error")) for r in rows_of(path)]
    assert got == [
        (1, {"id": "1", "amount": "2"}, None),
        (2, None, "a quote is not closed"),
        (3, {"id": "3", "amount": "4"}, None),
        (4, {"id": "4", "amount": '5"x"'}, None),
        (5, None, "expected 2 fields, got 1"),
        (6, {"id": "6", "amount": "7"}, None),
        (7, None, "a quote is not closed"),
    ]


def test_a_truncated_parquet_file_is_one_clear_error(tmp_path: Path) -> None:
    whole = tmp_path / "whole.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), whole)
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(whole.read_bytes()[:-20])
    (row,) = rows_of(cut)
    assert row["row"] == 0 and "not a readable Parquet file" in row["error"]


def test_a_truncated_gzip_keeps_what_was_read_and_says_so(tmp_path: Path) -> None:
    data = gzip.compress(b"id,amount\n" + b"".join(b"%d,1\n" % i for i in range(20_000)))
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    rows = rows_of(path, chunk_rows=1000)
    assert rows[-1]["row"] == 0 and "cannot read the file" in rows[-1]["error"]
    assert len(rows) > 1000 and all("values" in r for r in rows[:-1])


def test_sources_list_files_globs_and_directories(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "sub/c.ndjson", ".hidden/d.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x\n")
    names = [o.uri.rsplit("/", 1)[1] for o in list_objects(str(tmp_path))]
    assert names == ["a.csv", "b.csv", "c.ndjson"]
    assert [o.uri.rsplit("/", 1)[1] for o in list_objects(f"{tmp_path}/*.csv")] == [
        "a.csv",
        "b.csv",
    ]
    with pytest.raises(StorageError, match="no files found"):
        list_objects(str(tmp_path / "none-*.csv"))
