"""A dataflow process's cluster identity as a StatefulSet gives it, and its recovery partition."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from riffle.config.cluster import ClusterError, ClusterIdentity, cluster_identity, ordinal
from riffle.dataflows.recovery import RecoveryError, init_recovery

PATTERN = "riffle-flow-{i}.riffle-flow.riffle.svc.cluster.local:2101"


def test_the_pod_ordinal_is_the_process_id_and_the_pattern_names_every_peer() -> None:
    identity = cluster_identity(3, PATTERN, "riffle-flow-2")
    assert identity == ClusterIdentity(2, [PATTERN.replace("{i}", str(i)) for i in range(3)])
    assert cluster_identity(2, "10.0.0.1:2101; 10.0.0.2:2101", "flow-0") == ClusterIdentity(
        0, ["10.0.0.1:2101", "10.0.0.2:2101"]
    )
    assert cluster_identity(0, "", "anything") is None
    assert ordinal("riffle-flow-12") == 12


@pytest.mark.parametrize(
    ("size", "addresses", "pod", "problem"),
    [
        (3, PATTERN, "riffle-flow-3", "outside a cluster of 3"),
        (3, PATTERN, "laptop", "does not end in -<ordinal>"),
        (3, "a:1;b:1", "riffle-flow-0", "lists 2 addresses for RIFFLE_CLUSTER_SIZE=3"),
        (2, "", "riffle-flow-0", "needs RIFFLE_CLUSTER_ADDRESSES"),
    ],
)
def test_settings_that_describe_no_cluster_are_refused(
    size: int, addresses: str, pod: str, problem: str
) -> None:
    with pytest.raises(ClusterError, match=problem):
        cluster_identity(size, addresses, pod)


def test_a_pod_creates_only_its_own_partition(tmp_path: Path) -> None:
    created = init_recovery(tmp_path / "pod-1", 3, only=1)
    assert [p.name for p in created] == ["part-1.sqlite3"]
    assert sorted(p.name for p in (tmp_path / "pod-1").iterdir()) == ["part-1.sqlite3"]
    with sqlite3.connect(created[0]) as db:  # partition 1 of 3, as Bytewax made it
        assert db.execute("SELECT part_index, part_count FROM parts").fetchone() == (1, 3)
    assert init_recovery(tmp_path / "pod-3", 3, only=3) == []  # added by a later rescale
    assert (tmp_path / "pod-3").is_dir()
    with pytest.raises(RecoveryError, match="already holds"):
        init_recovery(tmp_path / "pod-1", 3, only=1)
