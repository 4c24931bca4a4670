"""Each alert instance's newest transition: the Redis hash ``{prefix}:alerts:{tenant}``.

Per instance, its newest transition as JSON — what ``GET /v1/alerts`` reads. A
Lua script keeps the newer event time, so a replayed older transition never
overwrites a newer one (no read-modify-write race between workers either).
The same script appends every transition it accepts, and only those, to the
tenant's live stream (:mod:`sinks.redis.live`): a replay that rewrites the
stored transition adds nothing, so a live subscriber sees each change once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import redis

from riffle.operators.alerts.machine import ACTIVE
from riffle.operators.alerts.transitions import AlertTransition
from riffle.sinks.redis.live import ALERT_FIELD, ALERT_ONLY_TTL_MS, LIVE_MAXLEN, live_key

# KEYS[1] = hash, KEYS[2] = live stream; ARGV = field, at, json, the stream's maxlen, its
# TTL in ms (set only when it has none), its entry field. Keep the transition with the newer
# event time; stream a transition the hash did not hold already.
_NEWER = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  if old == ARGV[3] then return 0 end
  local seen = tonumber(cjson.decode(old)['at'])
  if seen > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', ARGV[6], ARGV[3])
if redis.call('PTTL', KEYS[2]) == -1 then redis.call('PEXPIRE', KEYS[2], ARGV[5]) end
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
        """Store each instance's newest transition (by event time; of equal ones the later
        in ``items``) and stream each transition that is new, in order; replays are harmless.
        One pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for t in items:
            self._newer(
                keys=[self.key(t.tenant), live_key(self.prefix, t.tenant)],
                args=[t.instance, t.at, t.to_json(), LIVE_MAXLEN, ALERT_ONLY_TTL_MS, ALERT_FIELD],
                client=pipe,
            )
        pipe.execute()

    def instances(self, tenant: str) -> list[dict[str, Any]]:
        """Every instance's newest transition (any state)."""
        raw = self.client.hgetall(self.key(tenant))
        return [orjson.loads(v) for v in raw.values()]

    def active(self, tenant: str) -> list[dict[str, Any]]:
        """Instances whose newest state is Pending, Firing, Recovering or NoData."""
        return [a for a in self.instances(tenant) if a["to_state"] in ACTIVE]
