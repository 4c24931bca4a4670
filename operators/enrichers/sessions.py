"""Sessions by inactivity gap per user, on event time, for one source partition.

Rule: an event continues its user's session unless the partition's event-time
high-water mark (the newest event time seen, this event included) is more
than ``gap`` past the session's last event; then it opens a new session.
For events in time order that is the usual "more than ``gap`` of silence"
rule; an event that arrives after its session was closed by the high-water
mark opens a new one. Everything depends on event times and arrival order
only — not on poll boundaries or the wall clock — so a replay of the same
partition gives the same session ids and indexes.

State is one small entry per user with a session still open. Entries the
high-water mark has closed are swept out as it advances, so the state is
bounded by the users active within one gap. Exact sessions need every event
of a user on one source partition: producers must key messages by user.
"""

from __future__ import annotations

import hashlib

import orjson

SNAPSHOT_VERSION = 1


class _Open:
    """An open session; mutable, so continuing a session allocates nothing."""

    __slots__ = ("events", "id", "last", "start")

    def __init__(self, start: int, last: int, events: int, sid: str) -> None:
        self.start = start
        self.last = last
        self.events = events
        self.id = sid


def session_id(tenant: str, user: str, start_ts: int) -> str:
    """The id of the session of ``user`` that started at ``start_ts``: 16 hex digits.

    A BLAKE2b hash, the same in every process and run (never ``hash()``).
    """
    key = f"{tenant}\x1f{user}\x1f{start_ts}".encode()
    return hashlib.blake2b(key, digest_size=8).hexdigest()


class Sessionizer:
    """Session id and index (1-based position of the event in its session) per event."""

    __slots__ = ("_swept_at", "_users", "gap_ms", "high_water")

    def __init__(self, gap_ms: int) -> None:
        if gap_ms <= 0:
            raise ValueError("the session gap must be positive")
        self.gap_ms = gap_ms
        self.high_water = 0
        self._users: dict[str, _Open] = {}
        self._swept_at = 0

    def __len__(self) -> int:
        return len(self._users)

    def assign(self, tenant: str, user: str, ts: int) -> tuple[str, int]:
        """``(session_id, session_index)`` of an event of ``user`` at event time ``ts``."""
        gap = self.gap_ms
        if ts > self.high_water:
            self.high_water = ts
            if ts - self._swept_at >= gap:
                self.sweep()
        key = f"{tenant}\x1f{user}"
        entry = self._users.get(key)
        if entry is None or entry.last + gap < self.high_water:
            sid = session_id(tenant, user, ts)
            self._users[key] = _Open(ts, ts, 1, sid)
            return sid, 1
        entry.events += 1
        if ts > entry.last:
            entry.last = ts
        return entry.id, entry.events

    def sweep(self) -> int:
        """Forget sessions the high-water mark has closed; return how many. Never changes output."""
        horizon = self.high_water - self.gap_ms
        closed = [key for key, entry in self._users.items() if entry.last < horizon]
        for key in closed:
            del self._users[key]
        self._swept_at = self.high_water
        return len(closed)

    def snapshot(self) -> bytes:
        """The state as compact JSON bytes (cheap for Bytewax to copy and pickle).

        ``[1, high_water, [[tenant_and_user, start_ts, last_ts, events], ...]]``,
        open sessions only; ``tenant_and_user`` is ``tenant + "\\x1f" + user``.
        """
        horizon = self.high_water - self.gap_ms
        users = [
            [key, entry.start, entry.last, entry.events]
            for key, entry in self._users.items()
            if entry.last >= horizon
        ]
        return orjson.dumps([SNAPSHOT_VERSION, self.high_water, users])

    def restore(self, snapshot: bytes | None) -> Sessionizer:
        """Replace the state by a :meth:`snapshot`'s (``None``: empty); returns ``self``."""
        self._users = {}
        self.high_water = self._swept_at = 0
        if snapshot is None:
            return self
        version, high_water, users = orjson.loads(snapshot)
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"unknown session snapshot version {version!r}")
        self.high_water = self._swept_at = int(high_water)
        for key, start, last, events in users:
            tenant, _, user = str(key).partition("\x1f")
            self._users[key] = _Open(start, last, events, session_id(tenant, user, start))
        return self
