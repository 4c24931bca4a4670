"""Rows of import files: CSV/TSV, NDJSON, JSON arrays and Parquet, plain, gzip or zstd.

:func:`read_rows` yields a file's rows in chunks, each row as JSON bytes
``{"file": …, "row": N, "values": {column: value}}`` — or, for a row that
cannot be read, ``{"file": …, "row": N, "error": reason, "text": …}`` — so a
rejected row keeps what it said and where it was. Rows are numbered from 1
(for CSV the first data row, after the header). A file that cannot be read at
all yields one such error row numbered 0.

CSV is read one record per line with every value a string (or ``None`` when
empty); a line with a broken quote or the wrong number of fields is one
rejected row and the lines after it are read as they are, so nothing is lost
to a bad quote. Parquet is read row group by row group. Reading can start at
any row (:func:`read_rows`'s ``start``), which is how an interrupted import
resumes; Parquet then skips whole row groups without reading them.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import IO, Any, Literal

import orjson

from riffle.sources.storage import StorageError, display, open_object

FileFormat = Literal["csv", "tsv", "ndjson", "json", "parquet"]
FORMATS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
    ".json": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True, slots=True)
class RowChunk:
    """Consecutive rows of one file: ``(row number, row bytes)``.

    ``next_row`` is where reading resumes after this chunk; ``consumed`` the
    bytes of the stored object read so far (compressed bytes for a
    compressed file).
    """

    uri: str
    rows: list[tuple[int, bytes]]
    next_row: int
    consumed: int


def file_format(uri: str) -> FileFormat:
    """The format a file's name says (``orders.csv.gz`` is CSV)."""
    name = uri.lower()
    for suffix in (".gz", ".gzip", ".zst", ".zstd"):
        name = name.removesuffix(suffix)
    for suffix, fmt in FORMATS.items():
        if name.endswith(suffix):
            return fmt
    known = ", ".join(sorted(FORMATS))
    raise StorageError(f"{display(uri)}: unknown file type (known: {known}, plus .gz or .zst)")


def read_rows(uri: str, *, start: int = 1, chunk_rows: int = 5000) -> Iterator[RowChunk]:
    """The rows of one file from row ``start`` on, ``chunk_rows`` at a time."""
    where = display(uri)
    try:
        fmt = file_format(uri)
        raw = open_object(uri)
    except StorageError as exc:
        yield RowChunk(uri, [(0, _error(where, 0, str(exc)))], start, 0)
        return
    with raw:
        try:
            rows = _rows(raw, fmt, where, start)
            yield from _chunks(uri, rows, raw, start, chunk_rows)
        except (OSError, EOFError, ValueError, StorageError) as exc:
            # The file stopped being readable part way (truncated, corrupt compression):
            # what was read stands, the rest is one rejected row that says so.
            yield RowChunk(uri, [(0, _error(where, 0, f"cannot read the file: {exc}"))], -1, 0)


def _chunks(
    uri: str, rows: Iterator[tuple[int, bytes]], raw: IO[bytes], start: int, size: int
) -> Iterator[RowChunk]:
    chunk: list[tuple[int, bytes]] = []
    for number, row in rows:
        chunk.append((number, row))
        if len(chunk) >= size:
            yield RowChunk(uri, chunk, number + 1, _position(raw))
            chunk = []
    if chunk:
        yield RowChunk(uri, chunk, chunk[-1][0] + 1, _position(raw))


def _position(raw: IO[bytes]) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError):
        return 0


def _rows(raw: IO[bytes], fmt: FileFormat, where: str, start: int) -> Iterator[tuple[int, bytes]]:
    if fmt == "parquet":
        return _parquet_rows(raw, where, start)
    stream = _decompressed(raw)
    if fmt in ("csv", "tsv"):
        return _csv_rows(stream, where, start, "\t" if fmt == "tsv" else ",")
    if fmt == "ndjson":
        return _ndjson_rows(stream, where, start)
    return _json_rows(stream, where, start)


def _decompressed(raw: IO[bytes]) -> IO[bytes]:
    head = raw.read(4)
    raw.seek(0)
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head == ZSTD_MAGIC:
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
        return io.BufferedReader(reader)
    return raw


def _row(where: str, number: int, values: dict[str, Any]) -> bytes:
    return orjson.dumps({"file": where, "row": number, "values": values}, default=_plain)


def _plain(value: Any) -> Any:
    """What orjson cannot write itself (Parquet decimals, binary) as JSON values."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(f"a {type(value).__name__} value cannot be imported")


def _error(where: str, number: int, reason: str, text: str = "") -> bytes:
    return orjson.dumps({"file": where, "row": number, "error": reason, "text": text[:2000]})


NOT_UTF8 = "\x00"
"""Marks a line that is not UTF-8 (a character no CSV text holds)."""


class _Lines:
    """Lines of a byte stream as text, with lines put back for a second reading."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.back: list[str] = []
        self.taken: list[str] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        if self.back:
            line = self.back.pop()
        else:
            data = self._stream.readline()
            if not data:
                raise StopIteration
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError:
                line = NOT_UTF8 + data.decode("utf-8", "replace")
        self.taken.append(line)
        return line


def _csv_rows(
    stream: IO[bytes], where: str, start: int, delimiter: str
) -> Iterator[tuple[int, bytes]]:
    lines = _Lines(stream)
    header_line = next(lines, "")
    try:
        header = next(csv.reader([header_line], delimiter=delimiter, strict=True))
    except (csv.Error, StopIteration):
        header = []
    if not header or len(set(header)) != len(header) or header_line.startswith(NOT_UTF8):
        raise StorageError(f"the first line is not a CSV header: {header_line[:200]!r}")
    number = 0
    while True:
        lines.taken = []
        try:
            for fields in csv.reader(lines, delimiter=delimiter, strict=True):
                taken, lines.taken = lines.taken, []
                if not fields and len(taken) == 1:
                    continue  # a blank line is no row
                number += 1
                if len(taken) > 1:
                    # A quote left open swallowed the lines after it: this line is the
                    # rejected row, the others are read again.
                    lines.back.extend(reversed(taken[1:]))
                    if number >= start:
                        yield number, _error(where, number, "a quote is not closed", taken[0])
                    break
                if number >= start:
                    yield number, _csv_row(where, number, header, fields, taken[0])
            else:
                return
        except csv.Error:
            # A quote still open at the end of the file.
            taken, lines.taken = lines.taken, []
            if not taken:
                return
            number += 1
            lines.back.extend(reversed(taken[1:]))
            if number >= start:
                yield number, _error(where, number, "a quote is not closed", taken[0])


def _csv_row(where: str, number: int, header: list[str], fields: list[str], line: str) -> bytes:
    if line.startswith(NOT_UTF8):
        return _error(where, number, "the line is not UTF-8", line[1:])
    if len(fields) != len(header):
        return _error(where, number, f"expected {len(header)} fields, got {len(fields)}", line)
    values = {h: (v if v != "" else None) for h, v in zip(header, fields, strict=True)}
    return _row(where, number, values)


def _ndjson_rows(stream: IO[bytes], where: str, start: int) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(stream, 1):
        if number < start or not line.strip():
            continue
        try:
            values = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            text = line.decode("utf-8", "replace")
            yield number, _error(where, number, f"not valid JSON: {exc}", text)
            continue
        if type(values) is not dict:
            yield number, _error(where, number, "a line is not a JSON object", line.decode())
            continue
        yield number, _row(where, number, values)


def _json_rows(stream: IO[bytes], where: str, start: int) -> Iterator[tuple[int, bytes]]:
    try:
        items = orjson.loads(stream.read())
    except orjson.JSONDecodeError as exc:
        raise StorageError(f"not valid JSON: {exc}") from None
    if type(items) is not list:
        raise StorageError("a .json file holds an array of objects (use NDJSON for a stream)")
    for number, values in enumerate(items, 1):
        if number < start:
            continue
        if type(values) is not dict:
            yield number, _error(where, number, "an item is not a JSON object", str(values))
            continue
        yield number, _row(where, number, values)


def _parquet_rows(raw: IO[bytes], where: str, start: int) -> Iterator[tuple[int, bytes]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(raw)
    except (pa.ArrowException, OSError) as exc:
        raise StorageError(f"not a readable Parquet file: {exc}") from None
    metadata = parquet.metadata
    number = 1
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if number + rows <= start:
            number += rows  # the whole row group was read before: skip it unread
            continue
        try:
            table = parquet.read_row_group(group)
        except (pa.ArrowException, OSError) as exc:
            raise StorageError(f"row group {group} cannot be read: {exc}") from None
        for values in table.to_pylist():
            if number >= start:
                yield number, _row(where, number, values)
            number += 1
