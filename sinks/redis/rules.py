"""Alert rules created through the API, in Redis: a versioned log and each tenant's current set.

``{prefix}:alert_rules:log``        list of :class:`~operators.alert_rules.RuleChange` JSON,
                                    append-only, in ``seq`` order
``{prefix}:alert_rules:{tenant}``   hash: rule name → the entry now in force
``{prefix}:alert_rules:clock``      the newest time stamped or read (ms)

Writes are one Lua script each: it checks the rule's existence, stamps the
entry with Redis' own clock (never below ``clock``, so ``effective_from``
never goes back and no entry lands before a time a reader has already been
told is complete), appends it and updates the tenant's hash atomically. A
read (:meth:`AlertRuleStore.read`) is a script too, returning the entries
after a position with the time the log is complete up to — pushed ahead of
Redis' clock when the reader is judging a window that ends later (event time
ahead of the wall clock; at most five minutes ahead).

Why Redis and not PostgreSQL: the dataflow and the API already depend on it
(silences live beside), the append and the clock stamp must be one atomic
step, and the data is a few hundred small entries. Durability is Redis'
persistence (run it with AOF, as for silences); the log can be exported
with ``GET /v1/alerts/rules``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
import redis
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from riffle.operators.alert_rules import RuleChange
from riffle.sinks.errors import SinkError


class RuleStoreError(SinkError):
    """The rule store refused a change."""


class RuleExistsError(RuleStoreError):
    """A create found a rule of that name."""


class RuleMissingError(RuleStoreError):
    """An update or delete found no rule of that name."""


_WRITE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local clock = tonumber(redis.call('GET', KEYS[3]) or '0')
local eff = math.max(now, clock)
local exists = redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1
if ARGV[4] == 'create' and exists then return {-1} end
if ARGV[4] ~= 'create' and not exists then return {-2} end
local seq = redis.call('LLEN', KEYS[1]) + 1
local entry = '{"seq":' .. string.format('%d', seq) .. ',"effective_from":'
  .. string.format('%d', eff) .. ',"tenant":' .. ARGV[2] .. ',"name":' .. ARGV[3]
  .. ',"rule":' .. ARGV[5] .. '}'
redis.call('RPUSH', KEYS[1], entry)
redis.call('SET', KEYS[3], string.format('%d', eff))
if ARGV[4] == 'delete' then
  redis.call('HDEL', KEYS[2], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], entry)
end
return {seq, eff}
"""

_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local clock = tonumber(redis.call('GET', KEYS[2]) or '0')
local wanted = math.min(tonumber(ARGV[2]), now + tonumber(ARGV[3]))
local through = math.max(now, clock, wanted)
redis.call('SET', KEYS[2], string.format('%d', through))
local entries = redis.call('LRANGE', KEYS[1], tonumber(ARGV[1]), -1)
return {string.format('%d', through), entries}
"""

MAX_AHEAD_MS = 300_000
"""How far past its own clock a reader may push the log's "complete up to" time."""

Mode = Literal["create", "update", "delete"]


class AlertRuleStore:
    """The rule log and the tenants' current rules (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str, *, read_give_up_s: float = 60.0) -> None:
        self.client = client
        self.prefix = prefix
        self.read_give_up_s = read_give_up_s
        self._write = client.register_script(_WRITE)
        self._read = client.register_script(_READ)

    @classmethod
    def from_url(cls, url: str, prefix: str) -> AlertRuleStore:
        return cls(redis.Redis.from_url(url), prefix)

    @property
    def log_key(self) -> str:
        return f"{self.prefix}:alert_rules:log"

    @property
    def clock_key(self) -> str:
        return f"{self.prefix}:alert_rules:clock"

    def tenant_key(self, tenant: str) -> str:
        return f"{self.prefix}:alert_rules:{tenant}"

    def write(
        self, tenant: str, name: str, rule: Mapping[str, Any] | None, mode: Mode
    ) -> RuleChange:
        """Append a create, update or delete; :class:`RuleExistsError` when ``create`` finds
        the rule, :class:`RuleMissingError` when ``update`` or ``delete`` does not."""
        body = orjson.dumps(rule).decode() if rule is not None else "null"
        keys = [self.log_key, self.tenant_key(tenant), self.clock_key]
        args = [name, orjson.dumps(tenant).decode(), orjson.dumps(name).decode(), mode, body]
        result = self._write(keys=keys, args=args)
        if result[0] == -1:
            raise RuleExistsError(f"alert rule {name!r} exists")
        if result[0] == -2:
            raise RuleMissingError(f"no alert rule {name!r}")
        return RuleChange(
            int(result[0]), int(result[1]), tenant, name, None if rule is None else dict(rule)
        )

    def current(self, tenant: str) -> list[RuleChange]:
        """The tenant's rules in force (newest version of each), by name."""
        raw: Mapping[Any, Any] = self.client.hgetall(self.tenant_key(tenant))
        return sorted((RuleChange.from_json(v) for v in raw.values()), key=lambda e: e.name)

    def get(self, tenant: str, name: str) -> RuleChange | None:
        raw = self.client.hget(self.tenant_key(tenant), name)
        return None if raw is None else RuleChange.from_json(raw)

    def read(self, start: int = 0, through: int = 0) -> tuple[int, list[RuleChange]]:
        """Entries after the first ``start``, and the time the log is complete before:
        Redis' clock, or ``through`` when that is later (a window that ends ahead of the
        clock, by at most :data:`MAX_AHEAD_MS`), so that a change written afterwards is
        stamped no earlier than a window already judged. The dataflow reads through
        this: a Redis that does not answer is retried for ``read_give_up_s`` before the
        error is raised (and the flow stops, to resume from recovery)."""
        keys = [self.log_key, self.clock_key]
        retrying = Retrying(
            retry=retry_if_exception_type((redis.ConnectionError, redis.TimeoutError)),
            stop=stop_after_delay(self.read_give_up_s),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0),
            reraise=True,
        )
        through, raw = retrying(self._read, keys=keys, args=[start, through, MAX_AHEAD_MS])
        return int(through), [RuleChange.from_json(r) for r in raw]
