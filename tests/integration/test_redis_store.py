"""RedisWindowStore against the real Redis: idempotence, final-wins, retention, reads."""

from __future__ import annotations

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from riffle.sinks.errors import SinkError
from riffle.sinks.redis.windows import RedisWindowStore
from tests.integration.stores_support import BASE_MS, window
from tests.integration.stores_support import HOT_TTL_S as TTL_S

pytestmark = pytest.mark.integration

MIN = 60_000
DE = (("country", "de"), ("device", "desktop"))
DE_M = (("country", "de"), ("device", "mobile"))
FR_M = (("country", "fr"), ("device", "mobile"))


def snapshot(client: redis.Redis, store: RedisWindowStore) -> dict[bytes, object]:
    state: dict[bytes, object] = {}
    prefix = store.index_key("x", "y").split(":x:")[0]
    for key in client.scan_iter(match=f"{prefix}:*"):
        if b":written:" in key or key.endswith(b":live"):
            continue  # when the last write happened, what changed: a log, not the state
        kind = client.type(key)
        if kind == b"zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"hash":
            state[key] = client.hgetall(key)
        else:
            state[key] = client.get(key)
    return state


def test_writing_twice_equals_writing_once(client: redis.Redis, store: RedisWindowStore) -> None:
    batch = [
        window(BASE_MS + i * MIN, dims, values=(i, 2.0)) for i in range(5) for dims in (DE, FR_M)
    ]
    batch.append(window(BASE_MS + 5 * MIN, DE, final=False, revision=3))
    store.write(batch)
    once = snapshot(client, store)
    stamp = client.get(store.written_key("t1", "page_views"))
    store.write(batch)
    assert snapshot(client, store) == once
    assert len(once) == 4  # two series, the index, the updated key
    assert client.xlen(store.live_key("t1")) == 2 * len(batch)  # one entry per window written
    assert client.get(store.written_key("t1", "page_views")) not in (None, stamp)
    [(dims, points)] = store.read_series(
        "t1", "page_views", BASE_MS, BASE_MS + 10 * MIN, {"device": ["desktop"]}
    )
    assert dims == DE
    assert [p.window_start for p in points] == [BASE_MS + i * MIN for i in range(6)]
    assert points == [w for w in batch if w.dims == DE]


def test_partial_never_replaces_final(store: RedisWindowStore) -> None:
    def current() -> object:
        [(_, [point])] = store.read_series("t1", "page_views", BASE_MS, BASE_MS + MIN)
        return point

    first = window(values=(1.0,), final=False, revision=1)
    store.write([first])
    assert current() == first
    later = window(values=(1.0, 1.0), final=False, revision=2)
    store.write([later])
    assert current() == later  # partials replace partials
    final = window(values=(1.0, 1.0, 1.0), final=True, revision=3)
    store.write([final])
    assert current() == final
    store.write([window(values=(1.0,) * 9, final=False, revision=99)])
    assert current() == final  # a replay's partial, whatever its revision
    corrected = window(values=(1.0,) * 4, final=True, revision=1)
    store.write([corrected])
    assert current() == corrected  # a final replaces a final: last write wins
    # Within one batch too, a partial after the final is refused.
    store.write([window(values=(5.0,), final=False, revision=7), corrected])
    assert current() == corrected


def test_ttl_trim_and_updated_marker(client: redis.Redis, store: RedisWindowStore) -> None:
    old, new = window(BASE_MS), window(BASE_MS + 2 * TTL_S * 1000)
    store.write([old])
    series = old.series
    keys = [
        store.points_key("t1", "page_views", series),
        store.index_key("t1", "page_views"),
        store.updated_key("t1", "page_views"),
    ]
    for key in keys:
        assert 0 < client.pttl(key) <= TTL_S * 1000
    assert int(client.get(keys[2]) or 0) == old.window_end
    store.write([new])
    assert int(client.get(keys[2]) or 0) == new.window_end
    store.write([window(BASE_MS + MIN)])  # an older window does not move the marker back
    assert int(client.get(keys[2]) or 0) == new.window_end
    [(_, kept)] = store.read_series("t1", "page_views", 0, 2**50)
    starts = [w.window_start for w in kept]
    assert starts == [BASE_MS + MIN, new.window_start]  # the window older than the TTL went


def test_filters_and_range_boundaries(store: RedisWindowStore) -> None:
    store.write([window(BASE_MS + i * MIN, dims) for i in range(4) for dims in (DE, DE_M, FR_M)])

    def read(
        start: int, end: int, filters: dict[str, list[str]] | None = None
    ) -> dict[object, list[int]]:
        return {
            dims: [(p.window_start - BASE_MS) // MIN for p in points]
            for dims, points in store.read_series("t1", "page_views", start, end, filters)
        }

    assert read(BASE_MS + MIN, BASE_MS + 3 * MIN) == {d: [1, 2] for d in (DE, DE_M, FR_M)}
    assert read(BASE_MS + MIN + 1, BASE_MS + 3 * MIN + 1) == {d: [2, 3] for d in (DE, DE_M, FR_M)}
    assert list(read(BASE_MS, BASE_MS + 4 * MIN, {"country": ["de"]})) == [DE, DE_M]
    assert list(
        read(BASE_MS, BASE_MS + 4 * MIN, {"country": ["de", "fr"], "device": ["mobile"]})
    ) == [DE_M, FR_M]
    assert read(BASE_MS, BASE_MS + 4 * MIN, {"country": ["xx"]}) == {}
    assert read(BASE_MS, BASE_MS + 4 * MIN, {"nope": ["de"]}) == {}
    assert read(BASE_MS + 4 * MIN, BASE_MS + 9 * MIN) == {}
    assert store.read_series("t2", "page_views", BASE_MS, BASE_MS + 4 * MIN) == []
    assert sorted(store.list_series("t1", "page_views").values()) == [DE, DE_M, FR_M]


def test_recovers_from_a_flushed_script_cache(client: redis.Redis, store: RedisWindowStore) -> None:
    store.write([window(BASE_MS)])
    client.script_flush()
    store.write([window(BASE_MS + MIN)])
    [(_, points)] = store.read_series("t1", "page_views", BASE_MS, BASE_MS + 2 * MIN)
    assert len(points) == 2


def test_unreachable_redis_raises_sink_error() -> None:
    client = redis.Redis(port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    down = RedisWindowStore(client, "x", 60)
    with pytest.raises(SinkError, match="redis unreachable"):
        down.ping()
    with pytest.raises(SinkError, match="redis write"):
        down.write([window()])
