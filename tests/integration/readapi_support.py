"""A stored world for the read surfaces (REST, Grafana, GraphQL): windows, anomalies, alerts.

Three hours of minute windows of two metrics for tenant ``t1`` (and much
larger numbers for ``t2``, which must never show), split between the
warehouse (older) and Redis (the last hour, with an overlap), an anomaly
score in Redis and alert transitions in the warehouse history and in
Redis. ``expected_sum`` computes answers from the raw values, without
Riffle code.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import redis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.operators.alerts.transitions import AlertTransition
from riffle.operators.models.base import AnomalyScore
from riffle.operators.models.series import AnomalyRecord
from riffle.operators.records import WindowResult
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.redis.windows import RedisWindowStore
from riffle.sinks.warehouse.alert_history import WarehouseAlerts
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from tests.conftest import RedisTarget

MIN, HOUR = 60_000, 3_600_000
COUNTRIES = ("de", "fr", "us")
DEVICES = ("mobile", "desktop")
SPEC = """
version: 1
event_types: {purchase: {}, session_start: {}}
dimensions:
  country: {path: context.country}
  device: {path: context.device}
metrics:
  - name: revenue
    description: Order amounts.
    unit: EUR
    events: [purchase]
    aggregation: sum
    value: props.amount
    dimensions: [country, device]
    window: 1m
    anomaly: {}
  - name: purchases
    events: [purchase]
    aggregation: count
    dimensions: [country]
    window: 1m
  - name: sessions
    events: [session_start]
    aggregation: count
    dimensions: [country]
    window: 1m
ratios:
  - name: conversion
    numerator: purchases
    denominator: sessions
    dimensions: [country]
"""


def amount(minute: int, country: str, device: str) -> float:
    """The revenue of one minute of one series: varied, and known without Riffle."""
    return float((minute * 7 + COUNTRIES.index(country) * 13 + DEVICES.index(device) * 5) % 50 + 1)


def _window(tenant: str, metric: str, dims: tuple[tuple[str, str], ...], start: int,
            value: float, count: int) -> WindowResult:  # fmt: skip
    return WindowResult(
        tenant, metric, dims, start, start + MIN, count, value, value, value, value, True, 1
    )


class World:
    """The stored data, the app over it, and the moments it spans."""

    def __init__(self, redis_url: RedisTarget, tmp_path: Path) -> None:
        now = self.now = int(time.time() * 1000)
        self.end = now - now % MIN - MIN
        self.start = self.end - 3 * HOUR
        self.prefix = f"{redis_url.prefix}-{uuid.uuid4().hex[:8]}"
        db = tmp_path / "read.duckdb"
        spec = tmp_path / "spec.yaml"
        spec.write_text(SPEC)
        self.settings = Settings(
            spec=spec,
            warehouse=f"duckdb:///{db}",
            redis_url=redis_url.url,
            redis_prefix=self.prefix,
            hot_horizon_seconds=3600,
            kafka_bootstrap="127.0.0.1:1",
        )
        self.client = redis.Redis.from_url(redis_url.url)
        self.hot = RedisWindowStore(self.client, self.prefix, 2 * 86_400)
        self.cold = DuckDBWarehouse(db)
        self.cold.init()
        windows: list[WindowResult] = []
        for tenant, scale in (("t1", 1.0), ("t2", 1e6)):
            for minute in range((self.end - self.start) // MIN):
                at = self.start + minute * MIN
                for country in COUNTRIES:
                    for device in DEVICES:
                        dims = (("country", country), ("device", device))
                        value = amount(minute, country, device) * scale
                        windows.append(_window(tenant, "revenue", dims, at, value, 1))
                    dims1 = (("country", country),)
                    buys = 1 + (minute + COUNTRIES.index(country)) % 3
                    windows.append(_window(tenant, "purchases", dims1, at, buys, int(buys)))
                    windows.append(_window(tenant, "sessions", dims1, at, 10.0, 10))
        boundary = now - HOUR
        self.cold.upsert_windows([w for w in windows if w.window_start < boundary + 10 * MIN])
        self.hot.write([w for w in windows if w.window_start >= boundary - 10 * MIN])
        self.spike_at = self.end - 10 * MIN
        score = AnomalyScore(self.spike_at, 90.0, 0.98, "anomaly", 30.0, 20.0, 40.0, 9.0, "far")
        RedisModelStore(self.client, self.prefix, 2 * 86_400).write(
            [
                AnomalyRecord("t1", "revenue", (("country", "de"), ("device", "mobile")),
                              self.spike_at, "riffle", score),
                AnomalyRecord("t2", "revenue", (("country", "us"), ("device", "mobile")),
                              self.spike_at, "riffle", score),
            ]
        )  # fmt: skip
        self.fired_at = self.end - 20 * MIN
        transitions = [
            self.transition("t1", "normal", "firing", self.fired_at),
            self.transition("t1", "firing", "normal", self.fired_at + 5 * MIN),
            self.transition("t2", "normal", "firing", self.fired_at),
        ]
        WarehouseAlerts(self.cold).write(transitions)
        RedisAlerts(self.client, self.prefix).write(
            [self.transition("t1", "pending", "firing", self.end - 2 * MIN)]
        )
        self.app: FastAPI = create_app(self.settings, CollectorRegistry())

    @staticmethod
    def transition(tenant: str, before: str, after: str, at: int) -> AlertTransition:
        """A transition of the ``high_revenue`` rule's ``country=de`` instance."""
        return AlertTransition(
            tenant=tenant,
            rule="high_revenue",
            metric="revenue",
            instance="high_revenue{country=de}",
            labels=(("country", "de"),),
            severity="page",
            from_state=before,
            to_state=after,
            at=at,
            value=123.0,
            active_at=at,
            annotations=(("summary", "revenue above 100"),),
        )

    def key(self, tenant: str = "t1", scopes: Sequence[str] = ("read",)) -> str:
        """A fresh API key of ``tenant``."""
        key, _ = self.app.state.collect.keys.create(tenant, list(scopes))
        return str(key)

    def expected_sum(
        self, start: int, end: int, step: int, countries: Sequence[str] = COUNTRIES
    ) -> dict[int, float]:
        """Tenant t1's revenue per ``step`` bucket (epoch-aligned) over ``[start, end)``."""
        out: dict[int, float] = {}
        for minute in range((self.end - self.start) // MIN):
            at = self.start + minute * MIN
            if start <= at < end:
                total = sum(amount(minute, c, d) for c in countries for d in DEVICES)
                bucket = at - at % step
                out[bucket] = out.get(bucket, 0.0) + total
        return out
