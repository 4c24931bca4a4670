"""Sinks of batch runs: the live flow's sinks behind a ledger that records, filters and
checks each batch (:class:`LedgerSink`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from riffle.config.errors import RiffleError
from riffle.dataflows.outputs import FlowSink, Writer
from riffle.operators.records import DeadLetter, WindowResult
from riffle.sinks.ledger import Ledger

X = TypeVar("X")


class ImportAbortedError(RiffleError):
    """An import stopped early: more rows were rejected than its ``max_errors`` allows."""


class LedgerSink(FlowSink[X]):
    """Runs ``before`` on each flushed batch (record, filter), hands what it returns to
    ``inner``'s writers (``None``: nowhere), then runs ``after`` (a check that may stop
    the run: the batch is written first, so nothing read is lost; once it has failed,
    nothing more is written). Buffers as ``inner`` does unless ``flush_s`` says otherwise
    (0: every batch, so ``after`` sees each one); a retried flush runs ``before`` once."""

    name = "ledger"

    def __init__(
        self,
        inner: FlowSink[X] | None,
        before: Callable[[list[X]], list[X]],
        after: Callable[[], None] = lambda: None,
        *,
        flush_s: float | None = None,
    ) -> None:
        if inner is None:
            super().__init__(flush_s=flush_s or 0.0)
        else:
            super().__init__(
                give_up_s=inner.give_up_s,
                flush_s=inner.flush_s if flush_s is None else flush_s,
                max_rows=inner.max_rows,
            )
        self.inner = inner
        self.before = before
        self.after = after

    def place(self, process_id: int) -> None:
        super().place(process_id)
        if self.inner is not None:
            self.inner.place(process_id)

    def writers(self, part: str) -> list[Writer[X]]:
        inner = [] if self.inner is None else self.inner.writers(part)
        seen: list[Sequence[X]] = []
        kept: list[X] = []
        stopped = False

        def write(items: Sequence[X]) -> None:
            nonlocal kept, stopped
            if stopped:  # the run is ending: the close after a failed check writes nothing
                return
            if not seen or seen[0] is not items:  # a retry hands the same batch again
                seen[:] = [items]
                kept = self.before(list(items))
            if kept:
                for inner_write in inner:
                    inner_write(kept)
            try:
                self.after()
            except Exception:
                stopped = True
                raise

        return [write]

    def closers(self) -> list[Callable[[], None]]:
        return [] if self.inner is None else self.inner.closers()


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
