"""The notifier's durable state in Redis: groups, transitions seen, input offsets, the outbox
and the delivery log — written together so a restart resumes exactly where it stopped.

* ``{prefix}:notify:groups`` (hash): group key → :class:`~operators.notify.groups.Group` JSON
* ``{prefix}:notify:seen`` (hash): instance → ``[at, [transition ids at at]]``
* ``{prefix}:notify:offsets:{topic}`` (hash): partition → next offset to read
* ``{prefix}:notify:outbox`` (hash): ``{dedup_key}:{channel}`` → notification JSON, queued
* ``{prefix}:notify:delivered`` (sorted set): ``{dedup_key}:{channel}``, score: ms delivered
* ``{prefix}:notify:lease`` (string): the running notifier's id (:mod:`sinks.redis.lease`)

:meth:`NotifyState.commit` writes changed groups, offsets and new outbox entries
in one ``MULTI``/``EXEC``: either the input was consumed *and* its notifications
queued, or neither. :meth:`NotifyState.done` removes an outbox entry and logs
its delivery in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

import orjson
import redis

from riffle.operators.notify.dispatcher import Seen
from riffle.operators.notify.groups import Group, Notification
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.lease import Lease

DELIVERED_KEEP_MS = 7 * 86_400_000
"""How long the delivery log remembers a delivery."""


class LeaseLostError(SinkError):
    """Another notifier holds the lease: this one must stop."""


class NotifyState:
    """Load and save a notifier's state under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str, topic: str) -> None:
        self.client = client
        base = f"{prefix}:notify"
        self.groups_key = f"{base}:groups"
        self.seen_key = f"{base}:seen"
        self.offsets_key = f"{base}:offsets:{topic}"
        self.outbox_key = f"{base}:outbox"
        self.delivered_key = f"{base}:delivered"
        self.lease = Lease(client, f"{base}:lease")
        self.lease_key = self.lease.key

    def load(self) -> tuple[dict[str, Group], dict[str, Seen], dict[int, int]]:
        """Groups, seen transitions and offsets as last committed."""
        groups = {
            g.key: g for g in (Group.from_json(v) for v in self.client.hvals(self.groups_key))
        }
        seen = {}
        for k, v in self.client.hgetall(self.seen_key).items():
            at, ids = orjson.loads(v)
            seen[k.decode() if isinstance(k, bytes) else k] = (int(at), [str(i) for i in ids])
        offsets = {int(k): int(v) for k, v in self.client.hgetall(self.offsets_key).items()}
        return groups, seen, offsets

    def outbox(self) -> dict[str, Notification]:
        """Queued deliveries by ``{dedup_key}:{channel}``."""
        return {
            (k.decode() if isinstance(k, bytes) else k): Notification.from_dict(orjson.loads(v))
            for k, v in self.client.hgetall(self.outbox_key).items()
        }

    def commit(
        self,
        owner: str,
        groups: Iterable[Group],
        removed: Iterable[str],
        seen: Mapping[str, Seen],
        offsets: Mapping[int, int],
        queued: Mapping[str, Notification],
    ) -> None:
        """Write the changes of one step atomically, only while ``owner`` holds the lease
        (:class:`LeaseLostError` otherwise: a notifier that lost it never overwrites the state
        of the one that took over)."""
        with self.client.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(self.lease_key)  # type: ignore[no-untyped-call]
                if not self.holds(owner, pipe):
                    raise LeaseLostError("the notifier's lease is held by another")
                pipe.multi()
                self._writes(pipe, groups, removed, seen, offsets, queued)
                pipe.execute()
            except redis.WatchError as exc:
                raise LeaseLostError("the notifier's lease changed during a commit") from exc

    def holds(self, owner: str, client: redis.Redis | None = None) -> bool:
        """Whether ``owner`` holds the lease now."""
        return self.lease.holds(owner, client)

    def _writes(
        self,
        pipe: redis.client.Pipeline,
        groups: Iterable[Group],
        removed: Iterable[str],
        seen: Mapping[str, Seen],
        offsets: Mapping[int, int],
        queued: Mapping[str, Notification],
    ) -> None:
        changed = {g.key: g.to_json() for g in groups}
        if changed:
            pipe.hset(self.groups_key, mapping=changed)  # type: ignore[arg-type]
        gone = list(removed)
        if gone:
            pipe.hdel(self.groups_key, *gone)
        if seen:
            pipe.hset(
                self.seen_key,
                mapping={k: orjson.dumps([v[0], v[1]]) for k, v in seen.items()},
            )
        if offsets:
            pipe.hset(self.offsets_key, mapping=dict(offsets))  # type: ignore[arg-type]
        if queued:
            pipe.hset(
                self.outbox_key,
                mapping={k: orjson.dumps(n.to_dict()) for k, n in queued.items()},
            )

    def done(self, item: str, now_ms: int | None = None) -> None:
        """``item`` was delivered or dead-lettered: out of the outbox, into the log."""
        now = now_ms if now_ms is not None else int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=True)
        pipe.hdel(self.outbox_key, item)
        pipe.zadd(self.delivered_key, {item: now})
        pipe.zremrangebyscore(self.delivered_key, 0, now - DELIVERED_KEEP_MS)
        pipe.execute()

    def delivered(self, item: str) -> bool:
        return self.client.zscore(self.delivered_key, item) is not None

    def acquire(self, owner: str, ttl_ms: int) -> bool:
        """Take the lease (one notifier runs at a time); False while another holds it."""
        return self.lease.acquire(owner, ttl_ms)

    def renew(self, owner: str, ttl_ms: int) -> bool:
        """Extend our lease; False when it was lost (expired and taken)."""
        return self.lease.renew(owner, ttl_ms)

    def release(self, owner: str) -> None:
        self.lease.release(owner)
