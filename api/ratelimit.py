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
from riffle.sinks.redis.api_keys import KEY_FIELDS

# ARGV[1] is 1 when KEYS[1] is an API key record to check first: unless its fields
# (joined by a newline, missing ones empty) equal ARGV[2], nothing is taken and the
# answer is {2} (the caller's copy of the record is stale). ARGV[3] is the number of
# groups, then each group's bucket count, then (rate, cost) per bucket. Groups are taken
# in order, each all or none; the first group short of tokens stops there (later groups
# are not touched). Answer: {deny, then per group evaluated: retry, tokens left...}.
_SCRIPT = """
local guarded = tonumber(ARGV[1])
if guarded == 1 then
  local v = redis.call('HMGET', KEYS[1], @FIELDS@)
  local parts = {}
  for i = 1, #v do parts[i] = v[i] or '' end
  if table.concat(parts, '\\n') ~= ARGV[2] then return {2} end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local groups = tonumber(ARGV[3])
local key = guarded + 1
local arg = 4 + groups
local out = {0}
for g = 1, groups do
  local n = tonumber(ARGV[3 + g])
  local tokens = {}
  local deny = 0
  local retry = 0
  for i = 0, n - 1 do
    local rate = tonumber(ARGV[arg + i * 2])
    local cost = tonumber(ARGV[arg + i * 2 + 1])
    local v = redis.call('HMGET', KEYS[key + i], 't', 'ts')
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
  out[#out + 1] = tostring(retry)
  for i = 0, n - 1 do
    local rate = tonumber(ARGV[arg + i * 2])
    local cost = tonumber(ARGV[arg + i * 2 + 1])
    local tk = tokens[i]
    if deny == 0 then tk = tk - cost end
    redis.call('HSET', KEYS[key + i], 't', tostring(tk), 'ts', tostring(now))
    redis.call('PEXPIRE', KEYS[key + i], math.ceil((rate - tk) / rate * 1000) + 1000)
    out[#out + 1] = tostring(tk)
  end
  if deny == 1 then
    out[1] = 1
    return out
  end
  key = key + n
  arg = arg + n * 2
end
return out
""".replace("@FIELDS@", ", ".join(f"'{name}'" for name in KEY_FIELDS))


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
        decisions = self._run(None, [buckets])
        assert decisions is not None  # only a guarded call is refused as stale
        return decisions[0]

    def take_guarded(
        self, record_key: str, fingerprint: str, groups: list[list[Bucket]]
    ) -> list[Decision] | None:
        """Check that the API key record ``record_key`` still reads ``fingerprint``
        (:func:`~sinks.redis.api_keys.fingerprint`), then take ``groups`` in order, each
        atomically or not at all, in one round trip: the decision of each group up to the
        first refused one. ``None``, taking nothing, when the record changed (revoked,
        deleted, rewritten) and the caller must read it again."""
        return self._run((record_key, fingerprint), groups)

    def _run(
        self, guard: tuple[str, str] | None, groups: list[list[Bucket]]
    ) -> list[Decision] | None:
        keys = [] if guard is None else [guard[0]]
        args: list[float | str] = [0 if guard is None else 1, "" if guard is None else guard[1]]
        args.append(len(groups))
        args += [len(group) for group in groups]
        for group in groups:
            for bucket in group:
                keys.append(bucket.key)
                args += [bucket.rate, bucket.cost]
        try:
            raw = self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise SinkError(f"Redis: rate limits unavailable: {exc}") from exc
        if int(raw[0]) == 2:
            return None
        decisions: list[Decision] = []
        at = 1
        for group in groups:
            if at >= len(raw):
                break
            retry_after = float(raw[at])
            left = [float(x) for x in raw[at + 1 : at + 1 + len(group)]]
            at += 1 + len(group)
            allowed = at < len(raw) or int(raw[0]) == 0
            decisions.append(_decision(group, allowed, retry_after, left))
        return decisions


def _decision(
    buckets: list[Bucket], allowed: bool, retry_after: float, left: list[float]
) -> Decision:
    """A group's outcome, reported by its bucket closest to empty, relative to its size."""
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
