"""Sinks of batch runs: the live flow's sinks behind a ledger that records, filters and
checks each batch (:class:`LedgerSink`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from riffle.config.errors import RiffleError
from riffle.operators.records import DeadLetter, WindowResult
from riffle.sinks.ledger import Ledger

X = TypeVar("X")


class ImportAbortedError(RiffleError):
    """An import stopped early: more rows were rejected than its ``max_errors`` allows."""


class _Wrapped(StatelessSinkPartition[X], Generic[X]):
    def __init__(
        self,
        inner: StatelessSinkPartition[X] | None,
        before: Callable[[list[X]], list[X]],
        after: Callable[[], None],
    ) -> None:
        self._inner = inner
        self._before = before
        self._after = after

    def write_batch(self, items: list[X]) -> None:
        kept = self._before(items)
        if self._inner is not None and kept:
            self._inner.write_batch(kept)
        self._after()

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()


class LedgerSink(DynamicSink[X]):
    """Runs ``before`` on each batch (record, filter), writes what it returns to
    ``inner`` (``None``: nowhere), then runs ``after`` (a check that may stop the run:
    the batch is written first, so nothing read is lost)."""

    def __init__(
        self,
        inner: DynamicSink[X] | None,
        before: Callable[[list[X]], list[X]],
        after: Callable[[], None] = lambda: None,
    ) -> None:
        self.inner = inner
        self.before = before
        self.after = after

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Wrapped[X]:
        inner = (
            None if self.inner is None else self.inner.build(step_id, worker_index, worker_count)
        )
        return _Wrapped(inner, self.before, self.after)


def letters_recorder(ledger: Ledger) -> Callable[[list[DeadLetter]], list[DeadLetter]]:
    """Records every dead letter of a batch in the ledger."""

    def record(letters: list[DeadLetter]) -> list[DeadLetter]:
        ledger.letters(letters)
        return letters

    return record


def error_budget(ledger: Ledger, max_errors: int | None) -> Callable[[], None]:
    """Stops the run (:class:`ImportAbortedError`) once the ledger holds more rejected
    rows than ``max_errors`` (``None``: never)."""

    def check() -> None:
        rejected = ledger.rejected()
        if max_errors is not None and rejected > max_errors:
            raise ImportAbortedError(
                f"{rejected} rows rejected, more than --max-errors {max_errors}; stopped early"
            )

    return check


def windows_recorder(
    ledger: Ledger, keep: Callable[[WindowResult], bool]
) -> Callable[[list[WindowResult]], list[WindowResult]]:
    """Keeps the windows ``keep`` accepts and records them in the ledger."""

    def record(results: list[WindowResult]) -> list[WindowResult]:
        kept = [r for r in results if keep(r)]
        ledger.windows(kept)
        return kept

    return record


def whole_in(start: int, end: int) -> Callable[[WindowResult], bool]:
    """Whether a window lies whole inside ``[start, end)``: the windows a replay of that
    range computes from all their events (given its warm-up,
    :func:`dataflows.imports.warmup_ms`)."""

    def keep(result: WindowResult) -> bool:
        return result.window_start >= start and result.window_end <= end

    return keep
