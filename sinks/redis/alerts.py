"""Each alert instance's newest transition: the Redis hash ``{prefix}:alerts:{tenant}``.

Per instance, its newest transition as JSON — what ``GET /v1/alerts`` reads. A
Lua script keeps the newer event time, so a replayed older transition never
overwrites a newer one (no read-modify-write race between workers either).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis

from riffle.operators.alerts.machine import ACTIVE
from riffle.operators.alerts.transitions import AlertTransition

# KEYS[1] = hash; ARGV = field, at, json. Keep the transition with the newer event time.
_NEWER = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local seen = tonumber(cjson.decode(old)['at'])
  if seen > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""


class RedisAlerts:
    """Each instance's newest transition, per tenant, in one Redis hash."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._newer = client.register_script(_NEWER)

    def key(self, tenant: str) -> str:
        return f"{self.prefix}:alerts:{tenant}"

    def write(self, items: Sequence[AlertTransition]) -> None:
        """Store each instance's newest transition (by event time); replays are harmless."""
        newest: dict[tuple[str, str], AlertTransition] = {}
        for t in items:
            seen = newest.get((t.tenant, t.instance))
            if seen is None or t.at >= seen.at:
                newest[(t.tenant, t.instance)] = t
        pipe = self.client.pipeline(transaction=False)
        for (tenant, instance), t in newest.items():
            self._newer(keys=[self.key(tenant)], args=[instance, t.at, t.to_json()], client=pipe)
        pipe.execute()

    def instances(self, tenant: str) -> list[dict[str, Any]]:
        """Every instance's newest transition (any state)."""
        raw = self.client.hgetall(self.key(tenant))
        return [orjson.loads(v) for v in raw.values()]

    def active(self, tenant: str) -> list[dict[str, Any]]:
        """Instances whose newest state is Pending, Firing, Recovering or NoData."""
        return [a for a in self.instances(tenant) if a["to_state"] in ACTIVE]
