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

A visit does not open a DuckDB instance of its own (creating one costs about
20 ms of CPU, even in memory): the process keeps one in-memory instance, the
host, and a visit attaches the file to it (``ATTACH … (READ_ONLY)`` for
readers; about 1.5 ms) on a cursor of its own whose default database it is,
and detaches it afterwards. Attaching takes the same file lock a connection
does, and detaching releases it, so other processes see the same one-writer
or many-readers rule.

A writing visit leaves the file attached for ``LINGER_S`` after it ends, so
the writes that come together (each sink of the flow flushes at the end of
every epoch and about once a second) share one opening of the file; the file
is free for readers between those bursts, most of every second.
"""

from __future__ import annotations

import atexit
import itertools
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


class _Attached:
    """A file attached to the host under its own alias, on a cursor whose default it is."""

    def __init__(self, path: Path, *, read_only: bool) -> None:
        self.alias = f"riffle_file_{next(_aliases)}"
        self.con = _host().cursor()
        mode = " (READ_ONLY)" if read_only else ""
        try:
            self.con.execute(f"ATTACH '{_quoted(path)}' AS {self.alias}{mode}")
            self.con.execute(f"USE {self.alias}")
        except BaseException:
            self.con.close()
            raise

    def detach(self) -> None:
        """End the cursor (rolling back a transaction it left open), then release the file."""
        self.con.close()
        with _host().cursor() as con:
            con.execute(f"DETACH {self.alias}")


class _Held:
    """A process's writable attachment of one file, detached ``LINGER_S`` after its last use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.attached: _Attached | None = None
        self.last_used = 0.0

    def run(self, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        with self.lock:
            if self.attached is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.attached = _Attached(self.path, read_only=False)
                self._arm(LINGER_S)
            try:
                return work(self.attached.con)
            except BaseException:
                self._close()  # a failed visit may leave a transaction open: start afresh
                raise
            finally:
                self.last_used = time.monotonic()

    def _close_when_idle(self) -> None:
        with self.lock:
            if self.attached is None:
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
        if self.attached is not None:
            attached, self.attached = self.attached, None
            attached.detach()


_host_con: duckdb.DuckDBPyConnection | None = None
_host_lock = threading.Lock()
_aliases = itertools.count()


def _host() -> duckdb.DuckDBPyConnection:
    """The process's in-memory DuckDB instance that files are attached to."""
    global _host_con
    with _host_lock:
        if _host_con is None:
            _host_con = duckdb.connect(":memory:")
        return _host_con


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")


_held: dict[Path, _Held] = {}
_held_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    with _held_lock:
        held = list(_held.values())
    for one in held:
        with one.lock:
            one._close()
    with _host_lock:
        if _host_con is not None:
            _host_con.close()


def _writer(path: Path) -> _Held:
    with _held_lock:
        held = _held.get(path)
        if held is None:
            held = _held[path] = _Held(path)
        return held


def release(path: Path) -> None:
    """Detach this process's lingering attachment of ``path`` now (before another opens it)."""
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
    """Attach ``path``, run ``work`` on a cursor whose default database it is, detach;
    ``what`` names the store in errors.

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
    if held is not None and held.attached is not None:
        return held.run(work)  # this process writes the file: read on its attachment
    attached = _Attached(path, read_only=True)
    try:
        return work(attached.con)
    finally:
        attached.detach()


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
    # This process has the file attached in the other mode (a read racing a write).
    return "Unique file handle conflict" in message
