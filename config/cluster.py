"""This dataflow process's place in its cluster: its id and every peer's address.

A Kubernetes StatefulSet names its pods ``<name>-<ordinal>`` and gives each
the same environment, so a process learns its id from its own host name (or
``RIFFLE_POD_NAME``, which the manifests set from the pod's name) and the
peers from ``RIFFLE_CLUSTER_SIZE`` and ``RIFFLE_CLUSTER_ADDRESSES``: a
pattern with ``{i}`` (``riffle-flow-{i}.riffle-flow:2101``, one name per pod
of a headless Service) or an explicit ``;``-separated list. ``riffle run -i/-a``
says the same thing by hand and wins over these settings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from riffle.config.errors import RiffleError


class ClusterError(RiffleError):
    """The cluster settings do not describe a cluster this process belongs to."""


@dataclass(frozen=True, slots=True)
class ClusterIdentity:
    """Bytewax's ``-i`` and ``-a`` for this process."""

    process_id: int
    addresses: list[str]


def ordinal(pod_name: str) -> int:
    """The ordinal at the end of a StatefulSet pod's name (``riffle-flow-2`` -> 2)."""
    found = re.fullmatch(r".+-(\d+)", pod_name)
    if found is None:
        raise ClusterError(
            f"host name {pod_name!r} does not end in -<ordinal>: set RIFFLE_POD_NAME to "
            "<statefulset>-<n> or start `riffle run` with -i/-a"
        )
    return int(found.group(1))


def peer_addresses(addresses: str, size: int) -> list[str]:
    """``size`` addresses from a ``{i}`` pattern or an explicit ``;``-separated list."""
    if "{i}" in addresses:
        return [addresses.replace("{i}", str(i)) for i in range(size)]
    listed = [a.strip() for a in addresses.split(";") if a.strip()]
    if len(listed) != size:
        raise ClusterError(
            f"RIFFLE_CLUSTER_ADDRESSES lists {len(listed)} addresses for RIFFLE_CLUSTER_SIZE={size}"
        )
    return listed


def cluster_identity(size: int, addresses: str, pod_name: str) -> ClusterIdentity | None:
    """This process's id and its peers; ``None`` for a single process (``size`` 0).

    A cluster of one (``size`` 1) is a single process too, but keeps the id and
    address check, so a StatefulSet scaled to one pod runs like any other size.
    """
    if size == 0:
        return None
    if not addresses:
        raise ClusterError("RIFFLE_CLUSTER_SIZE needs RIFFLE_CLUSTER_ADDRESSES")
    process_id = ordinal(pod_name)
    peers = peer_addresses(addresses, size)
    if process_id >= size:
        raise ClusterError(
            f"pod {pod_name!r} has ordinal {process_id}, outside a cluster of {size} processes: "
            "RIFFLE_CLUSTER_SIZE must equal the StatefulSet's replicas"
        )
    return ClusterIdentity(process_id, peers)
