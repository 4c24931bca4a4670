"""Redis windows stored by the older layout (each member a whole ``WindowResult.to_json``
object) are still read, folded and protected after an in-place upgrade; new writes use
the compact member."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
import redis

from riffle.api.rollup import Grid, add_stored, finish
from riffle.sinks.redis.windows import RedisWindowStore, stored_json
from tests.integration.stores_support import (
    BASE_MS,
    window,
)

pytestmark = pytest.mark.integration

MIN = 60_000
DE = (("country", "de"), ("device", "desktop"))


def test_old_and_new_members_are_read_alike(client: redis.Redis, store: RedisWindowStore) -> None:
    old = [window(BASE_MS + i * MIN, DE, values=(float(i), 2.0)) for i in range(3)]
    old[1] = dataclasses.replace(old[1], sketch=b"\x00\x01sk", detail={"top": [["a", 2]]})
    new = [window(BASE_MS + i * MIN, DE, values=(float(i), 5.0)) for i in range(3, 6)]
    new.append(window(BASE_MS + 6 * MIN, DE, final=False, revision=4))
    new.append(dataclasses.replace(window(BASE_MS + 7 * MIN, DE), sketch=b"\xff", detail={"x": 1}))
    store.write(new)
    # The windows written before the upgrade: whole objects in the same ZSET.
    key = store.points_key("t1", "page_views", old[0].series)
    client.zadd(key, {w.to_json(): w.window_start for w in old})
    members = client.zrange(key, 0, -1)
    assert [m[:1] for m in members] == [b"{"] * 3 + [b"["] * 5
    assert len(members[3]) * 3 < len(old[0].to_json())  # the compact member is small
    [(dims, points)] = store.read_series("t1", "page_views", BASE_MS, BASE_MS + 10 * MIN)
    assert dims == DE
    assert points == old + new
    # A rollup folds both alike.
    grid: Grid = {}
    add_stored(grid, store.read_stored("t1", "page_views", BASE_MS, BASE_MS + 10 * MIN), [],
               BASE_MS, 10 * MIN)  # fmt: skip
    buckets = list(grid[()].values())
    assert sum(b.count for b in buckets) == sum(w.count for w in old + new)
    assert sum(b.sum for b in buckets) == sum(w.sum for w in old + new)
    assert sum(b.windows for b in buckets) == 8
    assert sum(b.partial for b in buckets) == 1
    assert sum(finish(b, "count") or 0 for b in buckets) == sum(w.count for w in old + new)


def test_an_old_final_is_not_replaced_by_a_partial(
    client: redis.Redis, store: RedisWindowStore
) -> None:
    final = window(BASE_MS, DE, values=(1.0, 2.0, 3.0))
    key = store.points_key("t1", "page_views", final.series)
    client.zadd(key, {final.to_json(): final.window_start})
    store.write([window(BASE_MS, DE, values=(9.0,), final=False, revision=9)])
    assert client.zrange(key, 0, -1) == [final.to_json()]
    corrected = window(BASE_MS, DE, values=(4.0,))
    store.write([corrected])  # a final replaces it, in the new layout
    assert client.zrange(key, 0, -1) == [stored_json(corrected)]
    assert orjson.loads(stored_json(corrected))[:3] == [BASE_MS, BASE_MS + MIN, 1]
    [(_, [point])] = store.read_series("t1", "page_views", BASE_MS, BASE_MS + MIN)
    assert point == corrected
