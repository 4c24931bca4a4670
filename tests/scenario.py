"""A known event set for flow tests, and its expected windows computed independently.

The expectation is plain SQL in DuckDB over the same events: lateness comes
from a running maximum of event time per partition (a window function), so
it shares no code with the flow's own watermark bookkeeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson

from riffle.config.spec import SKETCHED, MetricSpec, PipelineSpec
from riffle.operators.sketches import Sketch, sketch_for

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z, on every window boundary


@dataclass(frozen=True)
class Sent:
    """One produced message and what the test knows about it."""

    partition: int
    raw: bytes
    valid: bool
    """The envelope and every field a metric reads are fine."""


COUNTRIES = ["US", "DE", "FR", "BR", "IN"]
DEVICES = ["desktop", "mobile", "tablet"]
PAGES = ["home", "search", "product", "cart"]
CURRENCIES = ["USD", "EUR"]
ENDPOINTS = ["/api/cart", "/api/search"]


def _event(rng: random.Random, n: int, ts: int | str, users: bool, seed: int) -> dict[str, object]:
    kind = rng.choices(
        ["page_view", "add_to_cart", "purchase", "signup", "api_request"],
        weights=[50, 15, 10, 5, 20],
    )[0]
    props: dict[str, object]
    if kind == "page_view":
        props = {"page": rng.choice(PAGES)}
    elif kind == "purchase":
        props = {"amount": round(rng.uniform(5, 300), 2), "currency": rng.choice(CURRENCIES)}
    elif kind == "signup":
        props = {"channel": rng.choice(["ads", "organic"])}
    elif kind == "api_request":
        status = rng.choice([200, 200, 200, 404, 500, 503])
        props = {
            "endpoint": rng.choice(ENDPOINTS),
            "status": status,
            "status_class": f"{status // 100}xx",
            "latency_ms": rng.randint(3, 900),
        }
    else:
        sku = f"sku-{rng.randint(1, 50)}"
        props = {"sku": sku, "product_id": sku}
    context = {"country": rng.choice(COUNTRIES), "device": rng.choice(DEVICES)}
    if users:
        context["user_id"] = f"u{n * 7919 % 5000}"  # not drawn: the rng sequence stays as it was
    # Ids differ between seeds: scenarios of two seeds are different events.
    return {"event_id": f"s{seed}e{n}", "type": kind, "ts": ts, "props": props, "context": context}


def scenario(
    seed: int = 7,
    n: int = 3000,
    partitions: int = 2,
    base: int = BASE,
    spacing_ms: int = 100,
    users: bool = False,
) -> list[Sent]:
    """Events ``spacing_ms`` apart in event time (3,000 are ~5 minutes) from ``base`` (a minute
    boundary), in arrival order.

    Includes events exactly on window boundaries, duplicates of boundary
    stamps, RFC 3339 stamps, late events (minutes behind), and malformed
    messages of every kind the envelope rejects. With ``users`` every event has a
    ``context.user_id`` (distinct counts read it; the demo's enrichment then also
    starts sessions, which the SQL reference does not model).
    """
    rng = random.Random(seed)
    out: list[Sent] = []
    for i in range(n):
        part = rng.randrange(partitions)
        ts: int | str = base + i * spacing_ms + rng.randint(-2000, 2000)
        roll = rng.random()
        if i % 97 == 0:
            ts = base + (i * spacing_ms // 60_000) * 60_000  # exactly on a minute boundary
        if roll < 0.02 and i > 500:
            ts = base + i * spacing_ms - rng.randint(60_000, 120_000)  # late by minutes
        event = _event(rng, i, ts, users, seed)
        if i % 50 == 0:
            event["ts"] = _rfc3339(int(event["ts"]))  # type: ignore[arg-type]
        valid = True
        if roll > 0.97:
            valid = False
            broken = rng.choice(["json", "no_id", "bad_ts", "props", "type", "amount"])
            if broken == "json":
                out.append(Sent(part, b'{"event_id": "x", "type": ', False))
                continue
            if broken == "no_id":
                del event["event_id"]
            elif broken == "bad_ts":
                event["ts"] = "yesterday"
            elif broken == "props":
                event["props"] = [1, 2]
            elif broken == "type":
                event["type"] = "teleport"
            else:
                event["type"] = "purchase"
                event["props"] = {"amount": "12.5", "currency": "USD"}
        out.append(Sent(part, orjson.dumps(event), valid))
    return out


def _rfc3339(millis: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(millis / 1000, UTC).isoformat().replace("+00:00", "Z")


def _in_time_events(sent: list[Sent], lateness_ms: int) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with table ``events``: the valid events that are not late.

    Late means behind the running maximum event time of the event's partition
    (earlier valid events only) minus ``lateness_ms``.
    """
    con = duckdb.connect()
    rows = [(seq, item.partition, item.raw.decode()) for seq, item in enumerate(sent) if item.valid]
    con.execute("CREATE TABLE raw (seq BIGINT, part INT, body JSON)")
    con.executemany("INSERT INTO raw VALUES (?, ?, ?)", rows)
    con.execute(
        """
        CREATE TABLE events AS
        WITH typed AS (
            SELECT seq, part, body,
                   CASE WHEN json_type(body, '$.ts') = 'VARCHAR'
                        THEN epoch_ms(CAST(body->>'ts' AS TIMESTAMPTZ))
                        ELSE CAST(body->>'ts' AS BIGINT) END AS ts
            FROM raw
        ), marked AS (
            SELECT *, max(ts) OVER (PARTITION BY part ORDER BY seq
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_max
            FROM typed
        )
        SELECT * FROM marked WHERE prev_max IS NULL OR ts >= prev_max - ?
    """,
        [lateness_ms],
    )
    return con


def comparable(spec: PipelineSpec) -> list[MetricSpec]:
    """The metrics this SQL reference covers: tumbling windows of the numeric aggregations.

    Hopping and session windows have their own brute-force reference
    (tests/unit/test_window_kinds.py), sketches their own accuracy tests.
    """
    return [
        m for m in spec.metrics if m.window.kind == "tumbling" and m.aggregation not in SKETCHED
    ]


def late_valid_count(sent: list[Sent], lateness_ms: int) -> int:
    """How many valid events are late (the flow must dead-letter exactly these as ``late``)."""
    con = _in_time_events(sent, lateness_ms)
    row = con.execute("SELECT count(*) FROM events").fetchone()
    assert row is not None
    return sum(1 for s in sent if s.valid) - int(row[0])


def expected_windows(
    sent: list[Sent], spec: PipelineSpec, lateness_ms: int
) -> dict[tuple[str, tuple[tuple[str, str], ...], int], tuple[int, float, float, float]]:
    """``(metric, dims, window_start) -> (count, sum, min, max)`` by SQL over the events.

    Late events are excluded, as the flow must exclude them.
    """
    con = _in_time_events(sent, lateness_ms)
    expected = {}
    for metric in comparable(spec):
        dims = sorted(metric.dimensions)
        dim_sql = (
            ", ".join(
                f"coalesce(json_extract_string(body, '$.{spec.dimensions[d].path}'), 'unknown')"
                for d in dims
            )
            or "NULL"
        )
        value_sql = (
            f"CAST(json_extract(body, '$.{metric.value}') AS DOUBLE)" if metric.value else "1.0"
        )
        where = ["(" + " OR ".join(f"body->>'type' = '{t}'" for t in metric.events) + ")"]
        for cond in metric.filter:
            assert cond.op in ("gte", "eq")
            sql_op = ">=" if cond.op == "gte" else "="
            where.append(
                f"CAST(json_extract(body, '$.{cond.path}') AS DOUBLE) {sql_op} {cond.value}"
            )
        window = metric.window_ms
        query = f"""
            SELECT [{dim_sql}] AS dims, ts - (ts % {window}) AS start,
                   count(*), sum({value_sql}), min({value_sql}), max({value_sql})
            FROM events WHERE {" AND ".join(where)}
            GROUP BY ALL
        """
        for dim_values, start, count, total, low, high in con.execute(query).fetchall():
            key_dims = tuple(zip(dims, dim_values, strict=True)) if dims else ()
            expected[(metric.name, key_dims, start)] = (count, total, low, high)
    return expected


def expected_sketches(
    sent: list[Sent], spec: PipelineSpec, lateness_ms: int
) -> dict[tuple[str, tuple[tuple[str, str], ...], int], tuple[float | None, dict[str, Any]]]:
    """``(metric, dims, window_start) -> (value, detail)`` of the tumbling sketched metrics.

    SQL gathers each window's values; one sketch per window takes them in a
    single pass. Sketch numbers depend only on the values (operators/sketches.py),
    so a flow that split, merged, restarted or spread them over processes must
    report exactly these.
    """
    con = _in_time_events(sent, lateness_ms)
    expected = {}
    for metric in spec.metrics:
        sketch = sketch_for(metric)
        if sketch is None or metric.window.kind != "tumbling" or metric.filter:
            continue
        assert metric.value is not None
        dims = sorted(metric.dimensions)
        dim_sql = (
            ", ".join(
                f"coalesce(json_extract_string(body, '$.{spec.dimensions[d].path}'), 'unknown')"
                for d in dims
            )
            or "NULL"
        )
        path = f"'$.{metric.value}'"
        value_sql = (
            f"CAST(json_extract(body, {path}) AS DOUBLE)"
            if sketch.kind == "quantiles"
            else f"json_extract_string(body, {path})"
        )
        types = " OR ".join(f"body->>'type' = '{t}'" for t in metric.events)
        window = metric.window_ms
        query = f"""
            SELECT [{dim_sql}] AS dims, ts - (ts % {window}) AS start, list({value_sql})
            FROM events WHERE ({types}) AND json_extract(body, {path}) IS NOT NULL
            GROUP BY ALL
        """
        for dim_values, start, values in con.execute(query).fetchall():
            one = Sketch(sketch)
            for value in values:
                one.update(value)
            key_dims = tuple(zip(dims, dim_values, strict=True)) if dims else ()
            expected[(metric.name, key_dims, start)] = (one.value(), one.detail())
    return expected


def with_copies(sent: list[Sent], fraction: float = 0.1, seed: int = 0) -> list[Sent]:
    """``sent`` with ``fraction`` of its messages delivered twice, as an at-least-once
    producer or source does: each copy follows its original in the same partition,
    up to 50 messages later. The originals keep their order."""
    rng = random.Random(seed)
    out = list(sent)
    for index in sorted(rng.sample(range(len(sent)), int(len(sent) * fraction)), reverse=True):
        out.insert(min(len(out), index + 1 + rng.randrange(50)), sent[index])
    return out


def closers(ts: int, partitions: int) -> list[Sent]:
    """One valid event per partition at ``ts``: moves every watermark past earlier windows."""
    return [
        Sent(
            part,
            orjson.dumps(
                {
                    "event_id": f"closer-{part}",
                    "type": "signup",
                    "ts": ts,
                    "props": {"channel": "ads"},
                    "context": {"country": "US"},
                }
            ),
            True,
        )
        for part in range(partitions)
    ]
