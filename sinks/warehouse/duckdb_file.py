"""Working on a DuckDB file that other processes also open, one short visit at a time.

DuckDB lets one process hold a file read-write, or any number of processes
hold it read-only, never both at once. The dataflow writes and the API reads
from separate processes, so no connection is kept: :func:`visit` opens the
file, does the work and closes it, and retries a lock conflict with jittered
exponential backoff (capped at 0.25 s so a reader finds the gaps between a
busy writer's batches) for up to ``lock_timeout`` seconds. A file another
process is creating at that moment (it exists, its header is not written yet)
is retried the same way: several dataflow processes open a new warehouse at
once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from riffle.sinks.errors import SinkError, TransientSinkError

T = TypeVar("T")


def visit(
    path: Path,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    *,
    read_only: bool,
    lock_timeout: float,
    what: str,
) -> T:
    """Open ``path``, run ``work``, close; ``what`` names the store in errors.

    A lock still held after ``lock_timeout`` is a :class:`TransientSinkError`
    (try again later); any other DuckDB failure a :class:`SinkError`.
    """
    retrying = Retrying(
        retry=retry_if_exception(lambda e: is_lock_conflict(e) or _being_created(e)),
        wait=wait_random_exponential(multiplier=0.01, max=0.25),
        stop=stop_after_delay(lock_timeout),
        reraise=True,
    )
    try:
        result: T = retrying(_once, path, work, read_only)
    except duckdb.Error as exc:
        if is_lock_conflict(exc):
            raise TransientSinkError(
                f"{what} stayed locked by another process for {lock_timeout:g} s "
                f"(DuckDB allows one writer or many readers): {exc}"
            ) from exc
        raise SinkError(f"{what}: {exc}") from exc
    return result


def _once(path: Path, work: Callable[[duckdb.DuckDBPyConnection], T], read_only: bool) -> T:
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        return work(con)
    finally:
        con.close()


def _being_created(exc: BaseException) -> bool:
    """The file exists but holds no database yet (or is not one: then retries run out)."""
    return isinstance(exc, duckdb.IOException) and "not a valid DuckDB database" in str(exc)


def is_lock_conflict(exc: BaseException) -> bool:
    """Another process holds the file, or this one holds it in the other mode."""
    message = str(exc)
    if isinstance(exc, duckdb.IOException):
        return "lock" in message.lower()
    if isinstance(exc, duckdb.ConnectionException):
        return "different configuration" in message
    return False
