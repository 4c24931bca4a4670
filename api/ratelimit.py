"""Rate limits per API key and per tenant, as token buckets checked atomically in Redis.

A bucket refills at ``rate`` tokens per second up to ``rate`` tokens (a burst
of one second). One Lua script checks every bucket of a request at once and
takes from all of them or from none, using the Redis server's clock, so API
processes on several machines share one budget. A cost above the capacity
(a batch larger than a second's worth of events) passes when the bucket is
full and leaves it in debt, so large batches are slowed, not refused forever.

Buckets are keyed ``<prefix>:rl:<kind>:<scope>:<id>``; kinds are ``req``
(requests) and ``ev`` (events), scopes ``key`` and ``tenant``. A noisy
tenant drains only its own buckets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riffle.sinks.errors import SinkError

_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local tokens = {}
local deny = 0
local retry = 0
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i * 2 - 1])
  local cost = tonumber(ARGV[i * 2])
  local v = redis.call('HMGET', KEYS[i], 't', 'ts')
  local tk = tonumber(v[1]) or rate
  local ts = tonumber(v[2]) or now
  tk = math.min(rate, tk + math.max(0, now - ts) * rate)
  tokens[i] = tk
  local need = math.min(cost, rate)
  if tk < need then
    deny = 1
    retry = math.max(retry, (need - tk) / rate)
  end
end
local out = {deny, tostring(retry)}
for i = 1, #KEYS do
  local rate = tonumber(ARGV[i * 2 - 1])
  local cost = tonumber(ARGV[i * 2])
  local tk = tokens[i]
  if deny == 0 then tk = tk - cost end
  redis.call('HSET', KEYS[i], 't', tostring(tk), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil((rate - tk) / rate * 1000) + 1000)
  out[#out + 1] = tostring(tk)
end
return out
"""


@dataclass(frozen=True, slots=True)
class Bucket:
    """One budget: ``rate`` per second, and what this request costs it."""

    key: str
    rate: float
    cost: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of a check and the headers that describe the tightest bucket."""

    allowed: bool
    retry_after: float
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers (and ``Retry-After`` when refused)."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return out


class RateLimiter:
    """Token buckets under ``<prefix>:rl:`` in Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self._prefix = prefix
        self._script = client.register_script(_SCRIPT)

    def bucket(self, kind: str, scope: str, ident: str, rate: float, cost: float) -> Bucket:
        """A bucket named by what it limits."""
        return Bucket(f"{self._prefix}:rl:{kind}:{scope}:{ident}", rate, cost)

    def take(self, buckets: list[Bucket]) -> Decision:
        """Take every bucket's cost atomically, or none if any is short."""
        args: list[float] = []
        for bucket in buckets:
            args += [bucket.rate, bucket.cost]
        try:
            raw = self._script(keys=[b.key for b in buckets], args=args)
        except redis.RedisError as exc:
            raise SinkError(f"Redis: rate limits unavailable: {exc}") from exc
        allowed = int(raw[0]) == 0
        retry_after = float(raw[1])
        left = [float(x) for x in raw[2:]]
        # Report the bucket closest to empty, relative to its size.
        index = min(range(len(buckets)), key=lambda i: left[i] / buckets[i].rate)
        tight, tokens = buckets[index], left[index]
        return Decision(
            allowed=allowed,
            retry_after=retry_after,
            limit=math.floor(tight.rate),
            remaining=max(0, math.floor(tokens)),
            reset=max(0, math.ceil((tight.rate - tokens) / tight.rate)),
        )


def tighter(a: Decision | None, b: Decision) -> Decision:
    """Of two decisions of one request, the one to report."""
    if a is None or not b.allowed:
        return b
    if not a.allowed:
        return a
    return b if b.remaining / max(b.limit, 1) < a.remaining / max(a.limit, 1) else a


STATE_KEY = "rate_limit"


class RateLimitHeaders:
    """ASGI middleware adding the request's rate-limit headers to its response.

    The auth dependency stores the :class:`Decision` in the request state;
    this adds its headers to whatever response the route (or an error
    handler) produced, which a dependency cannot do for a returned Response.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                decision = scope.get("state", {}).get(STATE_KEY)
                if isinstance(decision, Decision):
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    extra = [
                        (k.lower().encode(), v.encode())
                        for k, v in decision.headers().items()
                        if k.lower().encode() not in present
                    ]
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self._app(scope, receive, add_headers)
