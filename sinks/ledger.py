"""An import run's ledger: what it read, rejected and wrote, exact across resumption.

A SQLite file in the run's folder. Every record is keyed (a file by its URI,
a dead letter by its letter id, a window by series and start), so a batch
written again after a resume is not counted twice, and the report read at
the end equals that of an uninterrupted run.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from riffle.operators.records import DeadLetter, WindowResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (uri TEXT PRIMARY KEY, rows INTEGER, bytes INTEGER, error TEXT);
CREATE TABLE IF NOT EXISTS letters (
    letter_id TEXT PRIMARY KEY, failure_type TEXT, path TEXT, reason TEXT, source TEXT
);
CREATE TABLE IF NOT EXISTS windows (
    tenant TEXT, metric TEXT, series TEXT, window_start INTEGER, window_end INTEGER,
    PRIMARY KEY (tenant, metric, series, window_start)
);
"""


@dataclass(frozen=True)
class LedgerReport:
    """What a run did, from its ledger."""

    files: int
    rows_read: int
    rejected: int
    rejected_by_reason: dict[str, int]
    """Rejected rows per failure type and column (or field path)."""
    windows: int
    first_window: int | None
    last_window_end: int | None
    problems: list[dict[str, str]] = field(default_factory=list)
    """The first rejected rows: ``source`` (file@row), ``path`` (column), ``reason``."""
    file_errors: dict[str, str] = field(default_factory=dict)


class Ledger:
    """One run's ledger; safe to share between the threads of one process."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def file_done(self, uri: str, rows: int, consumed: int, error: str | None) -> None:
        """One file was read to its end (or failed): its rows and bytes."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (uri, rows, consumed, error)
            )

    def letters(self, letters: Sequence[DeadLetter]) -> None:
        """Record rejected rows."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO letters VALUES (?, ?, ?, ?, ?)",
                [(d.letter_id, d.failure_type, d.path, d.reason, d.source) for d in letters],
            )

    def rejected(self) -> int:
        """How many rows the run has rejected in all."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM letters").fetchone()
        return int(count)

    def windows(self, results: Sequence[WindowResult]) -> None:
        """Record the windows written."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO windows VALUES (?, ?, ?, ?, ?)",
                [
                    (r.tenant, r.metric, r.series, r.window_start, r.window_end)
                    for r in results
                    if not r.retracted
                ],
            )

    def report(self, problems: int = 20) -> LedgerReport:
        """The run's counts so far and its first ``problems`` rejected rows."""
        with self._lock:
            db = self._db
            files, rows = db.execute(
                "SELECT count(*), coalesce(sum(rows), 0) FROM files"
            ).fetchone()
            errors = dict(db.execute("SELECT uri, error FROM files WHERE error IS NOT NULL"))
            by_reason = dict(
                db.execute(
                    "SELECT failure_type || ' ' || path, count(*) FROM letters"
                    " GROUP BY 1 ORDER BY 2 DESC LIMIT 50"
                )
            )
            (rejected,) = db.execute("SELECT count(*) FROM letters").fetchone()
            windows, first, last = db.execute(
                "SELECT count(*), min(window_start), max(window_end) FROM windows"
            ).fetchone()
            sample = [
                {"source": s, "path": p, "reason": r}
                for s, p, r in db.execute(
                    "SELECT source, path, reason FROM letters ORDER BY source LIMIT ?", (problems,)
                )
            ]
        return LedgerReport(
            files=int(files),
            rows_read=int(rows),
            rejected=int(rejected),
            rejected_by_reason={str(k): int(v) for k, v in by_reason.items()},
            windows=int(windows),
            first_window=first,
            last_window_end=last,
            problems=sample,
            file_errors={str(k): str(v) for k, v in errors.items()},
        )

    def close(self) -> None:
        """Release the file."""
        with self._lock:
            self._db.close()
