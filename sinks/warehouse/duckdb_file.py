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

A writing visit leaves its connection open for ``LINGER_S`` after it ends, so
the writes that come together (each sink of the flow flushes at the end of
every epoch and about once a second) share one opening of the file; the file
is free for readers between those bursts, most of every second.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_random_exponential

from riffle.sinks.errors import SinkError, TransientSinkError

T = TypeVar("T")

LINGER_S = 0.01
"""How long a writing visit's connection stays open for the next write of the process."""


class _Held:
    """A process's writable connection to one file, closed ``LINGER_S`` after its last use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.last_used = 0.0

    def run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        with self.lock:
            if self.con is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.con = duckdb.connect(str(self.path))
                self._arm(LINGER_S)
            try:
                return work(self.con)
            except BaseException:
                self._close()  # a failed visit may leave a transaction open: start afresh
                raise
            finally:
                self.last_used = time.monotonic()

    def _close_when_idle(self) -> None:
        with self.lock:
            if self.con is None:
                return
            idle = time.monotonic() - self.last_used
            if idle < LINGER_S:
                self._arm(LINGER_S - idle)
                return
            self._close()

    def _arm(self, delay: float) -> None:
        # Not a daemon: an exiting process waits the few milliseconds and closes the
        # file itself (a daemon thread closing DuckDB during interpreter shutdown aborts).
        threading.Timer(delay, self._close_when_idle).start()

    def _close(self) -> None:
        if self.con is not None:
            con, self.con = self.con, None
            con.close()


_held: dict[Path, _Held] = {}
_held_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    with _held_lock:
        held = list(_held.values())
    for one in held:
        with one.lock:
            one._close()


def _writer(path: Path) -> _Held:
    with _held_lock:
        held = _held.get(path)
        if held is None:
            held = _held[path] = _Held(path)
        return held


def release(path: Path) -> None:
    """Close this process's lingering connection to ``path`` now (before another opens it)."""
    with _held_lock:
        held = _held.get(path.resolve())
    if held is not None:
        with held.lock:
            held._close()


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
        return _writer(path.resolve()).run(work)
    with _held_lock:
        held = _held.get(path.resolve())
    if held is not None and held.con is not None:
        return held.run(work)  # this process writes the file: read on its connection
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
