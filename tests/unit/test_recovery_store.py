"""Abandoned snapshots in a Bytewax recovery store: what Bytewax does with them, what we do.

Real Bytewax runs (``run_main`` with a recovery store) of a keyed counter. The
abandoned snapshot is the row a killed run leaves: a key's state of an epoch
at or past the epoch the next run resumes from.
"""

from __future__ import annotations

import pickle
import sqlite3
import urllib.request
from collections.abc import Callable
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, run_main

from riffle.config.settings import Settings
from riffle.dataflows.recovery import (
    RecoveryError,
    StoreProgress,
    drop_abandoned_snapshots,
    init_recovery,
    peer_progress,
    progress_rows,
    recovery_config,
)
from riffle.dataflows.serving import PROGRESS_PATH, serve
from riffle.stack import free_port

STEP = "t.count.stateful_flat_map.stateful.stateful_batch"


def counts(items: list[Any], recovery: RecoveryConfig) -> list[tuple[str, int]]:
    """Run a keyed running count over ``items``; what it emitted (``ABORT``: a run that
    stops there as if killed, without a last epoch)."""
    flow, out = Dataflow("t"), []  # type: ignore[var-annotated]
    events = op.input("inp", flow, TestingSource(items))
    running = op.stateful_map("count", events, lambda n, v: ((n or 0) + v, (n or 0) + v))
    op.output("out", running, TestingSink(out))
    run_main(flow, epoch_interval=timedelta(0), recovery_config=recovery)  # type: ignore[no-untyped-call]
    return out


def resume_epoch(*directories: Path) -> int:
    return StoreProgress.of([progress_rows(d) for d in directories]).resume_epoch()


def abandon(directory: Path, key: str, epoch: int, value: int, part: int = 0) -> None:
    """Leave the row a run killed in ``epoch`` leaves: ``key``'s state of that epoch."""
    with closing(sqlite3.connect(directory / f"part-{part}.sqlite3")) as db, db:
        db.execute(
            "INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
            (STEP, key, epoch, pickle.dumps(value)),
        )


def three_runs(directory: Path, opened: Callable[[], RecoveryConfig]) -> list[tuple[str, int]]:
    """Run 1 counts a and b; a killed run then leaves an abandoned ``a = 100``. Run 2
    counts only b, for several epochs, and dies. Run 3 counts a once more."""
    items: list[Any] = [("a", 1), ("b", 1)]
    assert counts(items, opened()) == [("a", 1), ("b", 1)]
    abandon(directory, "a", resume_epoch(directory), 100)
    items += [("b", 1)] * 4 + [TestingSource.ABORT()]
    assert counts(items, opened()) == [("b", 2), ("b", 3), ("b", 4), ("b", 5)]
    return counts([*items, ("a", 1)], opened())


def test_bytewax_loads_an_abandoned_snapshot_once_a_later_run_passed_its_epoch(
    tmp_path: Path,
) -> None:
    # Bytewax 0.21.1 as it is: run 3 loads the killed run's a = 100. If a Bytewax
    # upgrade makes this fail, the store no longer needs drop_abandoned_snapshots.
    init_recovery(tmp_path, 1)
    plain = RecoveryConfig(str(tmp_path))  # type: ignore[no-untyped-call]
    assert three_runs(tmp_path, lambda: plain) == [("a", 101)]


def test_each_run_started_through_recovery_config_drops_them_first(tmp_path: Path) -> None:
    init_recovery(tmp_path, 1)
    settings = Settings(recovery_dir=tmp_path, recovery_backup_seconds=0)

    def opened() -> RecoveryConfig:
        config = recovery_config(settings)
        assert config is not None
        return config

    assert three_runs(tmp_path, opened) == [("a", 2)]


def snapshot_epochs(directory: Path, part: int) -> list[int]:
    with closing(sqlite3.connect(directory / f"part-{part}.sqlite3")) as db:
        return sorted(row[0] for row in db.execute("SELECT snap_epoch FROM snaps"))


def write_progress(
    directory: Path,
    executions: list[tuple[int, int, int]],
    fronts: list[tuple[int, int, int]],
    part: int = 0,
) -> None:
    """Progress rows as Bytewax writes them: runs (number, workers, resumed from) and
    frontiers (run, worker, frontier)."""
    with closing(sqlite3.connect(directory / f"part-{part}.sqlite3")) as db, db:
        db.executemany(
            "INSERT INTO exs (ex_num, worker_count, resume_epoch) VALUES (?, ?, ?)", executions
        )
        db.executemany(
            "INSERT INTO fronts (ex_num, worker_index, worker_frontier) VALUES (?, ?, ?)", fronts
        )


@pytest.mark.parametrize(
    ("executions", "fronts", "resume"),
    [
        ([], [], 1),  # no run yet
        ([(0, 1, 1)], [(0, 0, 7)], 7),
        ([(0, 1, 1), (1, 3, 7)], [(0, 0, 7), (1, 0, 12), (1, 1, 11), (1, 2, 13)], 11),
        # A worker of the last run that recorded nothing is where that run resumed.
        ([(0, 1, 1), (1, 2, 7)], [(0, 0, 7), (1, 0, 12)], 7),
    ],
)
def test_the_resume_epoch_is_bytewaxs_lowest_frontier_of_the_last_run(
    tmp_path: Path,
    executions: list[tuple[int, int, int]],
    fronts: list[tuple[int, int, int]],
    resume: int,
) -> None:
    init_recovery(tmp_path, 1)
    write_progress(tmp_path, executions, fronts)
    assert resume_epoch(tmp_path) == resume
    for epoch in (resume - 1, resume, resume + 3):
        abandon(tmp_path, "a", epoch, epoch)
    assert drop_abandoned_snapshots(tmp_path) == 2
    assert snapshot_epochs(tmp_path, 0) == [resume - 1]


def test_a_cluster_process_asks_its_peers_for_the_partitions_it_does_not_hold(
    tmp_path: Path,
) -> None:
    # Two pods, one partition each; the rows of the last run's two workers are split
    # between them, and only both together give the resume epoch (11).
    mine, theirs = tmp_path / "pod-0", tmp_path / "pod-1"
    init_recovery(mine, 2, only=0)
    init_recovery(theirs, 2, only=1)
    write_progress(mine, [(0, 2, 1), (1, 2, 7)], [(1, 0, 12)])
    write_progress(theirs, [], [(0, 0, 7), (0, 1, 7), (1, 1, 11)], part=1)
    for epoch in (10, 11, 12):
        abandon(mine, "a", epoch, epoch)
        abandon(theirs, "b", epoch, epoch, part=1)
    assert resume_epoch(mine, theirs) == 11
    port = free_port()
    serve("127.0.0.1", port, theirs)
    peer = f"http://127.0.0.1:{port}{PROGRESS_PATH}"
    assert drop_abandoned_snapshots(mine, [peer]) == 2
    assert snapshot_epochs(mine, 0) == [10]
    assert snapshot_epochs(theirs, 1) == [10, 11, 12], "each process drops its own"
    # Its metrics are served beside it.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        assert b"python_info" in answer.read()


def test_without_every_partitions_progress_nothing_is_dropped(tmp_path: Path) -> None:
    init_recovery(tmp_path, 2, only=1)
    abandon(tmp_path, "a", 5, 5, part=1)
    port = free_port()
    serve("127.0.0.1", port, None)  # a peer without partitions
    refused = f"http://127.0.0.1:{port}/elsewhere/recovery/progress"  # a version without it
    assert drop_abandoned_snapshots(tmp_path) is None
    assert drop_abandoned_snapshots(tmp_path, [f"http://127.0.0.1:{port}{PROGRESS_PATH}"]) is None
    assert peer_progress(refused, wait_s=1) is None
    assert snapshot_epochs(tmp_path, 1) == [5]


def test_a_file_that_is_no_partition_is_named_in_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "part-0.sqlite3").write_bytes(b"not a database, or another version's")
    with pytest.raises(RecoveryError, match=r"part-0.sqlite3 is not a readable Bytewax 0.21"):
        drop_abandoned_snapshots(tmp_path)
