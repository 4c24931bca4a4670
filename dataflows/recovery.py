"""The dataflow's Bytewax recovery store: making it, opening it, and what a killed run left in it.

A store is a directory of SQLite partitions (``part-<i>.sqlite3``) made once by
:func:`init_recovery`. Bytewax 0.21.1 writes, at the end of every epoch, a
snapshot of each state key that changed in it, and records each worker's
frontier; a new run *resumes from* the previous run's cluster frontier ``R``
and loads, per key, the newest snapshot of an epoch before ``R``.

**Abandoned snapshots.** A run killed mid-epoch leaves snapshots of epochs
``>= R`` behind: a step writes its snapshot as soon as it is done with an
epoch, while the frontier waits for the slowest step — a sink still writing
holds it back. The next run numbers its epochs from ``R`` again and
overwrites those rows only for the keys *it* changes in the same epochs; the
others outlive it, and once a later run's frontier passes their epoch,
Bytewax loads one of them as the key's state. That state is from a run whose
outputs were never all written: windows it had closed are closed again
without their finals in any store, and the events the source replays count
as already folded in (``dropped_after_close``). Bytewax does not drop these
rows; :func:`drop_abandoned_snapshots` does, before every run, with ``R``
computed as Bytewax computes it. That takes every partition's progress
rows: a process that does not hold them all (a cluster with one partition
per volume) asks the other processes of its cluster for theirs, over HTTP
(:mod:`dataflows.serving`), before any of them starts.
"""

from __future__ import annotations

import sqlite3
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import structlog
from bytewax.recovery import RecoveryConfig, init_db_dir
from pydantic import TypeAdapter, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_fixed
from typing_extensions import TypedDict  # pydantic validates only this one before 3.12

from riffle.config.errors import RiffleError
from riffle.config.settings import Settings

log = structlog.get_logger(__name__)

FIRST_EPOCH = 1
"""Where Bytewax starts a store that has seen no run."""

PEER_WAIT_S = 300.0
"""How long a process of a cluster waits for a peer's progress rows before it starts
without dropping anything (the peers serve them as soon as they start)."""


class RecoveryError(RiffleError):
    """The recovery store is missing or cannot be used."""


def recovery_config(
    settings: Settings, *, clustered: bool = False, peers: Sequence[str] = ()
) -> RecoveryConfig | None:
    """Bytewax recovery for ``settings.recovery_dir`` (see :func:`open_recovery`;
    ``peers`` are the other processes' progress URLs); ``None`` when recovery is off.

    Raises :class:`RecoveryError` when the directory was not prepared with
    ``riffle recovery init``. In a cluster a process may hold no partition (one
    added after the store was made): the directory must exist, and Bytewax
    itself refuses a cluster that holds none or an incomplete set.
    """
    if settings.recovery_dir is None:
        return None
    held = any(settings.recovery_dir.glob("part-*.sqlite3"))
    if not held and not (clustered and settings.recovery_dir.is_dir()):
        raise RecoveryError(
            f"{settings.recovery_dir} holds no recovery partitions; "
            f"run `riffle recovery init {settings.recovery_dir}` first"
        )
    backup = timedelta(seconds=settings.recovery_backup_seconds)
    return open_recovery(settings.recovery_dir, backup, peers)


def open_recovery(directory: Path, backup: timedelta, peers: Sequence[str] = ()) -> RecoveryConfig:
    """Bytewax's configuration for the store in ``directory``, keeping superseded
    snapshots for ``backup``; drops the store's abandoned snapshots first (see
    :func:`drop_abandoned_snapshots`), so call it once per run, just before it starts."""
    if any(directory.glob("part-*.sqlite3")):
        drop_abandoned_snapshots(directory, peers)
    return RecoveryConfig(directory, backup)  # type: ignore[no-untyped-call]


def init_recovery(directory: Path, partitions: int, only: int | None = None) -> list[Path]:
    """Create empty recovery partitions in ``directory``; return the files created.

    The store has ``partitions`` partitions for its whole life; the number of
    processes may change between runs. Each process finds the partitions in
    its own directory and Bytewax joins them across the cluster, so one store
    may be spread over one volume per process: ``only`` creates just
    partition ``only`` here (nothing when ``only >= partitions``: a process
    added later holds none). Refuses a directory that already holds partitions.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.glob("part-*.sqlite3")):
        raise RecoveryError(f"{directory} already holds recovery partitions")
    if only is None:
        init_db_dir(directory, partitions)  # type: ignore[no-untyped-call]
        return sorted(directory.glob("part-*.sqlite3"))
    if only >= partitions:
        return []
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        init_db_dir(Path(scratch), partitions)  # type: ignore[no-untyped-call]
        target = directory / f"part-{only}.sqlite3"
        (Path(scratch) / target.name).rename(target)
    return [target]


class ProgressRows(TypedDict):
    """The progress rows of some partitions, as Bytewax keeps them (and as JSON)."""

    parts: list[tuple[int, int]]
    """(index, count) of each partition."""
    exs: list[tuple[int, int, int]]
    """(run number, workers, the epoch it resumed from) of each run."""
    fronts: list[tuple[int, int, int]]
    """(run number, worker index, frontier) of each worker of each run."""


_PEER_ROWS = TypeAdapter(ProgressRows)


@dataclass(frozen=True)
class StoreProgress:
    """What a store's partitions say about its runs (every partition's rows together)."""

    part_count: int
    part_indexes: frozenset[int]
    executions: dict[int, tuple[int, int]]
    """Run number → (worker count, the epoch it resumed from)."""
    frontiers: dict[tuple[int, int], int]
    """(run number, worker index) → the worker's frontier as last recorded."""

    @classmethod
    def of(cls, rows: list[ProgressRows]) -> StoreProgress:
        """The progress of the partitions whose rows are ``rows`` (a partition kept in
        several places counts once)."""
        counts = {count for part in rows for _, count in part["parts"]}
        if len(counts) != 1:
            found = f"disagree on their count: {sorted(counts)}" if counts else "are missing"
            raise RecoveryError(f"the recovery partitions {found}")
        frontiers: dict[tuple[int, int], int] = {}
        for part in rows:
            for ex, worker, front in part["fronts"]:
                frontiers[(ex, worker)] = max(front, frontiers.get((ex, worker), front))
        return cls(
            counts.pop(),
            frozenset(index for part in rows for index, _ in part["parts"]),
            {ex: (workers, resumed) for part in rows for ex, workers, resumed in part["exs"]},
            frontiers,
        )

    @property
    def complete(self) -> bool:
        """Whether every partition of the store is here."""
        return self.part_indexes == frozenset(range(self.part_count))

    def resume_epoch(self) -> int:
        """The epoch the next run resumes from, as Bytewax 0.21.1 computes it: the
        lowest frontier among the last run's workers, a worker without one counting
        as at the epoch that run resumed from."""
        if not self.executions:
            return FIRST_EPOCH
        last = max(self.executions)
        workers, resumed = self.executions[last]
        return min(max(self.frontiers.get((last, w), resumed), resumed) for w in range(workers))


def progress_rows(directory: Path | None) -> ProgressRows:
    """The progress rows of the partitions in ``directory`` (none without one)."""
    rows = ProgressRows(parts=[], exs=[], fronts=[])
    for path in [] if directory is None else sorted(directory.glob("part-*.sqlite3")):
        with _partition(path) as db:
            rows["parts"] += db.execute("SELECT part_index, part_count FROM parts")
            rows["exs"] += db.execute("SELECT ex_num, worker_count, resume_epoch FROM exs")
            rows["fronts"] += db.execute("SELECT ex_num, worker_index, worker_frontier FROM fronts")
    return rows


@contextmanager
def _partition(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to one partition file, committed on success; a file that is not a
    partition of this Bytewax version is a :class:`RecoveryError` that names it."""
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=rw", uri=True)) as db, db:
            yield db
    except sqlite3.Error as exc:
        raise RecoveryError(
            f"{path} is not a readable Bytewax 0.21 recovery partition ({exc}); "
            "a store from another Bytewax version must be made anew"
        ) from exc


def peer_progress(url: str, wait_s: float = PEER_WAIT_S) -> ProgressRows | None:
    """A peer process's progress rows, from its ``/recovery/progress``; asked again
    while it is not up yet (for up to ``wait_s``). ``None`` when it never answers, or
    answers with anything else (a version without the endpoint serves metrics there)."""
    retrying = Retrying(
        retry=retry_if_exception(
            lambda exc: isinstance(exc, OSError) and not isinstance(exc, urllib.error.HTTPError)
        ),
        wait=wait_fixed(0.5),
        stop=stop_after_delay(wait_s),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt, urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310
                return _PEER_ROWS.validate_json(answer.read())
    except (OSError, ValidationError) as exc:
        log.warning("recovery_peer_progress_missing", url=url, error=str(exc)[:200])
    return None


def drop_abandoned_snapshots(directory: Path, peers: Sequence[str] = ()) -> int | None:
    """Delete this directory's snapshots of the epoch the next run resumes from and
    later (module docstring); return how many rows went.

    When the directory lacks some partitions, their progress rows are asked of
    ``peers`` (the ``/recovery/progress`` URLs of the cluster's other processes,
    which serve them before they start). ``None``, with nothing deleted, when the
    rows of every partition cannot be had. Must run before the run starts: the
    run itself writes snapshots of those epochs.
    """
    rows = [progress_rows(directory)]
    if not StoreProgress.of(rows).complete:
        rows += [found for found in map(peer_progress, peers) if found is not None]
    progress = StoreProgress.of(rows)
    if not progress.complete:
        log.warning(
            "recovery_abandoned_snapshots_kept",
            reason="the progress of some partitions of the store is out of reach",
            directory=str(directory),
            partitions_seen=sorted(progress.part_indexes),
            partitions=progress.part_count,
        )
        return None
    resume = progress.resume_epoch()
    dropped = 0
    for path in sorted(directory.glob("part-*.sqlite3")):
        with _partition(path) as db:
            dropped += db.execute("DELETE FROM snaps WHERE snap_epoch >= ?", (resume,)).rowcount
    if dropped:
        log.info("recovery_abandoned_snapshots_dropped", rows=dropped, resume_epoch=resume)
    return dropped
