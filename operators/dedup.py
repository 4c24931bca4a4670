"""De-duplication by event id over an event-time horizon, for one source partition.

Sources deliver at least once and producers resend: a copy of a message keeps
its key, so every copy of an event lands in the same source partition (Kafka
partitions by key and Riffle's HTTP ingest keys by event id; a Pub/Sub
subscription is one partition). One :class:`Deduplicator` per partition
therefore sees every copy, in offset order, which makes its verdicts a
function of the partition's messages alone: a replay from the same snapshot
(Bytewax restores this state with the source offsets) gives the same verdicts,
so a first copy never turns into a duplicate or back.

State is bounded by the horizon in event time. Ids are kept as 16-byte BLAKE2b
digests of ``tenant \\x1f event_id`` (a false duplicate needs a 128-bit
collision: about 1e-21 for a billion ids) in generations of ``horizon / 24``
of event time. A generation more than two generations behind the newest event
is sealed into one sorted byte string (16 bytes an id, searched by bisection);
a generation wholly older than the newest event time less the horizon is
dropped. An event older than that is beyond the horizon: it passes as a first
copy (it is late for every metric with a shorter lateness).
"""

from __future__ import annotations

from hashlib import blake2b

GENERATIONS = 24
"""Generations per horizon: the granularity of expiry (state holds up to 1/24 more)."""
DIGEST = 16
MIN_GENERATION_MS = 1000

Claim = tuple[int, bytes]
"""``(generation start, digest)`` of an id judged first but not kept yet; empty
digest: beyond the horizon, nothing to keep."""
DedupSnapshot = tuple[int, tuple[tuple[int, bytes, bytes], ...]]
"""``(newest event time, ((generation start, sealed ids, fresh ids), ...))``; ids packed."""


def digest(tenant: str, event_id: str) -> bytes:
    """The 16-byte identity of an event id within a tenant."""
    return blake2b(f"{tenant}\x1f{event_id}".encode(), digest_size=DIGEST).digest()


def _unpack(packed: bytes) -> list[bytes]:
    return [packed[i : i + DIGEST] for i in range(0, len(packed), DIGEST)]


def _sealed_has(sealed: bytes, key: bytes) -> bool:
    """Whether ``key`` is among the sorted 16-byte records of ``sealed``."""
    lo, hi = 0, len(sealed) // DIGEST
    while lo < hi:
        mid = (lo + hi) // 2
        probe = sealed[mid * DIGEST : mid * DIGEST + DIGEST]
        if probe < key:
            lo = mid + 1
        elif probe > key:
            hi = mid
        else:
            return True
    return False


class _Generation:
    """The ids of one span of event time: sorted and packed (``sealed``) plus a set."""

    __slots__ = ("_packed", "fresh", "sealed")

    def __init__(self, sealed: bytes = b"", fresh: set[bytes] | None = None) -> None:
        self.sealed = sealed
        self.fresh: set[bytes] = set() if fresh is None else fresh
        self._packed: bytes | None = None

    def add(self, key: bytes) -> None:
        self.fresh.add(key)
        self._packed = None

    def packed_fresh(self) -> bytes:
        """The set packed, kept until it changes: a generation no event reached since the
        last snapshot costs nothing to snapshot again."""
        if self._packed is None:
            self._packed = b"".join(self.fresh)
        return self._packed

    def __len__(self) -> int:
        return len(self.sealed) // DIGEST + len(self.fresh)

    def seal(self) -> None:
        """Fold the set into the packed records once it is an eighth of their number."""
        if self.fresh and len(self.fresh) * 8 >= len(self.sealed) // DIGEST:
            self.sealed = b"".join(sorted([*_unpack(self.sealed), *self.fresh]))
            self.fresh = set()
            self._packed = None


class Deduplicator:
    """First copies of ``(tenant, event_id)`` within ``horizon_ms`` of event time.

    Verdicts depend only on the sequence of ``first`` calls (event times
    included), never on the wall clock; :meth:`snapshot` and :meth:`restore`
    carry the whole state as plain tuples of ints and bytes (cheap for Bytewax
    to copy at every epoch: bytes are not copied).
    """

    __slots__ = ("_boundary", "generations", "horizon_ms", "newest", "span_ms")

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self.span_ms = max(MIN_GENERATION_MS, horizon_ms // GENERATIONS)
        self.newest = -(2**62)
        self.generations: dict[int, _Generation] = {}
        self._boundary = self.newest

    def __len__(self) -> int:
        """The ids held."""
        return sum(len(g) for g in self.generations.values())

    def first(self, tenant: str, event_id: str, ts: int) -> bool:
        """Whether this is the first copy (remembering it); ``False`` for a later copy."""
        claim = self.claim(tenant, event_id, ts)
        if claim is None:
            return False
        self.keep(claim)
        return True

    def claim(self, tenant: str, event_id: str, ts: int) -> Claim | None:
        """``None`` for a later copy; else a claim that :meth:`keep` turns into memory.

        An event that fails after its claim (a dead letter) is never kept, so a
        corrected resend of it still counts."""
        if ts > self.newest:
            self.newest = ts
            if ts >= self._boundary:
                self._tidy()
        elif ts < self.newest - self.horizon_ms:
            return (0, b"")
        start = ts - ts % self.span_ms
        key = digest(tenant, event_id)
        generation = self.generations.get(start)
        if generation is not None and (
            key in generation.fresh or (generation.sealed and _sealed_has(generation.sealed, key))
        ):
            return None
        return (start, key)

    def keep(self, claim: Claim) -> None:
        """Remember a claimed id (nothing for an event beyond the horizon)."""
        start, key = claim
        if not key:
            return
        generation = self.generations.get(start)
        if generation is None:
            generation = self.generations[start] = _Generation()
        generation.add(key)

    def snapshot(self) -> DedupSnapshot:
        """The state as plain data (see :meth:`restore`)."""
        return (
            self.newest,
            tuple((start, g.sealed, g.packed_fresh()) for start, g in self.generations.items()),
        )

    def restore(self, snapshot: DedupSnapshot | None) -> Deduplicator:
        """Take the state of a :meth:`snapshot` (``None``: start empty); returns ``self``."""
        if snapshot is not None:
            self.newest, generations = snapshot
            self.generations = {
                start: _Generation(sealed, set(_unpack(fresh)))
                for start, sealed, fresh in generations
            }
            self._tidy()
        return self

    def _tidy(self) -> None:
        """Drop generations beyond the horizon, seal old ones; runs once a generation."""
        span = self.span_ms
        current = self.newest - self.newest % span
        self._boundary = current + span
        floor = self.newest - self.horizon_ms
        for start in list(self.generations):
            if start + span <= floor:
                del self.generations[start]
            elif start + 2 * span <= current:
                self.generations[start].seal()
