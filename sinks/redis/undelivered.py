"""Notifications no channel could deliver, after every retry: the notifier's dead letters."""

from __future__ import annotations

import orjson
import redis

from riffle.operators.notify.groups import Notification


class RedisUndelivered:
    """Dead letters in the Redis hash ``{prefix}:alerts:undelivered``: field
    ``{dedup_key}:{channel}`` → ``{"reason", "channel", "receiver", "notification"}``
    (a second failure of the same delivery replaces the first)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.key = f"{prefix}:alerts:undelivered"

    def __call__(self, note: Notification, channel: str, reason: str) -> None:
        record = {
            "reason": reason,
            "channel": channel,
            "receiver": note.receiver,
            "notification": note.to_dict(),
        }
        self.client.hset(self.key, f"{note.dedup_key}:{channel}", orjson.dumps(record))

    def all(self) -> dict[str, dict[str, object]]:
        """Every dead letter by ``{dedup_key}:{channel}``."""
        raw = self.client.hgetall(self.key)
        return {
            (k.decode() if isinstance(k, bytes) else k): orjson.loads(v) for k, v in raw.items()
        }
