"""A bounded, batching, retrying writer in front of a warehouse.

Writers hand rows to :meth:`BatchWriter.submit`; one background thread
writes them in batches of at most ``max_rows``, as soon as a batch is full,
the oldest row has waited ``max_delay_s``, or a caller waits for its rows
(:meth:`BatchWriter.wait`). Transient failures (429, 5xx, I/O; see
:func:`sinks.warehouse.bigquery_errors.is_transient`) are retried with jittered
exponential backoff for up to ``give_up_s``; meanwhile the buffer fills, and once it
holds ``max_buffer`` rows :meth:`submit` blocks — backpressure reaches the
dataflow instead of memory growing without limit.

Rows stay in the buffer until their write succeeded, so nothing is dropped
while the warehouse is down. A process killed with rows in the buffer loses
them; the dataflow therefore waits for its rows before it returns from a
sink batch (see :class:`dataflows.outputs.WarehouseSink`), so an input it
acknowledged (a recovery snapshot, a committed offset) never covers an
unwritten row, and a replay rewrites what was lost. Engines make the rewrite
idempotent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import structlog
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from riffle.sinks.errors import SinkError
from riffle.sinks.warehouse.bigquery_errors import is_transient

T = TypeVar("T")
log = structlog.get_logger(__name__)


class BackpressureError(SinkError):
    """The buffer stayed full past the caller's timeout; try again after ``retry_after``."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchWriter(Generic[T]):
    """Buffers rows for ``write`` and writes them from one thread; see the module doc.

    ``write`` must be idempotent: a batch whose answer was lost is written again.
    ``on_error`` is called for every failed write attempt (a metric's counter).
    """

    def __init__(
        self,
        write: Callable[[list[T]], None],
        *,
        max_rows: int = 500,
        max_delay_s: float = 1.0,
        max_buffer: int = 20_000,
        give_up_s: float = 300.0,
        name: str = "warehouse",
        on_error: Callable[[], None] | None = None,
    ) -> None:
        if max_buffer < max_rows:
            raise ValueError(f"max_buffer ({max_buffer}) must hold a batch ({max_rows})")
        self._write = write
        self._max_rows = max_rows
        self._max_delay = max_delay_s
        self._max_buffer = max_buffer
        self._give_up = give_up_s
        self._name = name
        self._on_error = on_error
        self._cond = threading.Condition()
        self._buffer: list[T] = []
        self._oldest = 0.0
        self._submitted = 0
        self._written = 0
        self._waiters = 0
        self._closing = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"{name}-writer", daemon=True)
        self._thread.start()

    @property
    def buffered(self) -> int:
        """Rows submitted and not yet written."""
        with self._cond:
            return len(self._buffer)

    @property
    def written(self) -> int:
        """Rows written so far."""
        with self._cond:
            return self._written

    def submit(self, items: Sequence[T], timeout: float | None = None) -> int:
        """Queue ``items``; returns the ticket :meth:`wait` takes.

        Blocks while the buffer is full; past ``timeout`` (``None``: no limit)
        raises :class:`BackpressureError`. Raises :class:`SinkError` once the
        writer has given up.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            for item in items:
                while len(self._buffer) >= self._max_buffer and self._failure is None:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise BackpressureError(
                            f"{self._name} buffer full ({self._max_buffer} rows)",
                            retry_after=max(self._max_delay, 0.5),
                        )
                    self._cond.wait(left)
                self._raise_failure()
                if not self._buffer:
                    self._oldest = time.monotonic()
                self._buffer.append(item)
                self._submitted += 1
                if len(self._buffer) >= self._max_rows:
                    self._cond.notify_all()
            return self._submitted

    def wait(self, ticket: int, timeout: float | None = None) -> None:
        """Block until every row up to ``ticket`` is written (and flush now to get there)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            self._cond.notify_all()
            try:
                while self._written < ticket:
                    self._raise_failure()
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise BackpressureError(
                            f"{self._name}: rows not written within {timeout} s",
                            retry_after=1.0,
                        )
                    self._cond.wait(left)
            finally:
                self._waiters -= 1

    def write(self, items: Sequence[T], timeout: float | None = None) -> None:
        """Submit ``items`` and return once they are written."""
        self.wait(self.submit(items, timeout), timeout)

    def close(self, timeout: float | None = 30.0) -> None:
        """Write what is buffered, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise SinkError(f"{self._name} writer stopped: {self._failure}") from self._failure

    def _due(self) -> float | None:
        """Seconds until a batch is due (0: now), or ``None`` when there is nothing."""
        if not self._buffer:
            return None
        if len(self._buffer) >= self._max_rows or self._waiters or self._closing:
            return 0.0
        return max(0.0, self._oldest + self._max_delay - time.monotonic())

    def _run(self) -> None:
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(multiplier=0.2, max=5.0),
            stop=stop_after_delay(self._give_up),
            reraise=True,
        )
        while True:
            with self._cond:
                while True:
                    due = self._due()
                    if due == 0.0:
                        break
                    if due is None and self._closing:
                        return
                    self._cond.wait(due)
                batch = self._buffer[: self._max_rows]
            try:
                for attempt in retrying:
                    with attempt:
                        number = attempt.retry_state.attempt_number
                        if number > 1:
                            log.warning("warehouse_retry", writer=self._name, attempt=number)
                        try:
                            self._write(batch)
                        except Exception:
                            if self._on_error is not None:
                                self._on_error()
                            raise
            except Exception as exc:  # handed to every caller, not swallowed
                log.exception("warehouse_writer_failed", writer=self._name)
                with self._cond:
                    self._failure = exc
                    self._cond.notify_all()
                return
            with self._cond:
                del self._buffer[: len(batch)]
                self._written += len(batch)
                if self._buffer:
                    self._oldest = time.monotonic()
                self._cond.notify_all()
