"""Model results in Redis: the hot copy of the anomaly and forecast rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from riffle.operators.models.series import AnomalyRecord, ForecastRecord, ModelRecord
from riffle.operators.records import series_id
from riffle.sinks.warehouse.model_results import anomaly_row, forecast_row


class RedisModelStore:
    """Model results in Redis (hot), with the same series identity as the warehouse rows.

    Key layout (``P`` prefix, ``T`` tenant, ``M`` metric, ``S`` series id of
    :func:`operators.records.series_id`, as in :mod:`sinks.redis.windows`):

    ``P:T:anomaly:M:S``
        ZSET of the series' scored windows; score ``window_start``, member the
        JSON of the row :meth:`ModelStore.anomalies` returns (one per score).
    ``P:T:anomaly-series:M``
        HASH series id → dims JSON, so readers enumerate series without ``SCAN``.
    ``P:T:forecast:M``
        HASH series id → JSON of the series' newest forecast, shaped like a
        :meth:`ModelStore.latest_forecasts` row.

    Writes are full-value upserts (idempotent); every write refreshes the TTL
    of the keys it touches and trims windows older than the hot retention.
    """

    def __init__(self, client: Any, prefix: str, hot_ttl_seconds: int) -> None:
        if hot_ttl_seconds <= 0:
            raise ValueError(f"hot_ttl_seconds must be positive (got {hot_ttl_seconds})")
        self.client = client
        self.prefix = prefix
        self.ttl_ms = hot_ttl_seconds * 1000

    def anomaly_key(self, tenant: str, metric: str, series: str) -> str:
        return f"{self.prefix}:{tenant}:anomaly:{metric}:{series}"

    def anomaly_index_key(self, tenant: str, metric: str) -> str:
        return f"{self.prefix}:{tenant}:anomaly-series:{metric}"

    def forecast_key(self, tenant: str, metric: str) -> str:
        return f"{self.prefix}:{tenant}:forecast:{metric}"

    def write(self, records: Sequence[ModelRecord]) -> None:
        """Upsert a batch in one pipelined round trip; the last record per key wins."""
        anomalies: dict[tuple[str, str, str], dict[int, AnomalyRecord]] = {}
        forecasts: dict[tuple[str, str], dict[str, ForecastRecord]] = {}
        for r in records:
            sid = series_id(r.metric, r.dims)
            if isinstance(r, AnomalyRecord):
                anomalies.setdefault((r.tenant, r.metric, sid), {})[r.window_start] = r
            else:
                forecasts.setdefault((r.tenant, r.metric), {})[sid] = r
        if not anomalies and not forecasts:
            return
        pipe = self.client.pipeline(transaction=False)
        for (tenant, metric, sid), by_start in anomalies.items():
            key = self.anomaly_key(tenant, metric, sid)
            for start, r in by_start.items():
                pipe.zremrangebyscore(key, start, start)
                pipe.zadd(key, {orjson.dumps(anomaly_row(r, sid)): start})
            pipe.zremrangebyscore(key, "-inf", f"({max(by_start) - self.ttl_ms}")
            pipe.pexpire(key, self.ttl_ms)
            index = self.anomaly_index_key(tenant, metric)
            dims = next(iter(by_start.values())).dims
            pipe.hset(index, sid, orjson.dumps(dict(dims)))
            pipe.pexpire(index, self.ttl_ms)
        for (tenant, metric), by_series in forecasts.items():
            key = self.forecast_key(tenant, metric)
            pipe.hset(
                key,
                mapping={sid: orjson.dumps(forecast_row(r, sid)) for sid, r in by_series.items()},
            )
            pipe.pexpire(key, self.ttl_ms)
        pipe.execute()

    def anomalies(
        self,
        tenant: str,
        metrics: Sequence[str],
        start_ms: int,
        end_ms: int,
        *,
        min_score: float = 0.0,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Like :meth:`ModelStore.anomalies`, from the hot copy of ``metrics``."""
        pipe = self.client.pipeline(transaction=False)
        for metric in metrics:
            pipe.hkeys(self.anomaly_index_key(tenant, metric))
        chosen = [
            (metric, sid.decode() if isinstance(sid, bytes) else sid)
            for metric, sids in zip(metrics, pipe.execute(), strict=True)
            for sid in sids
        ]
        pipe = self.client.pipeline(transaction=False)
        for metric, sid in chosen:
            pipe.zrangebyscore(self.anomaly_key(tenant, metric, sid), start_ms, f"({end_ms}")
        rows = [orjson.loads(m) for members in pipe.execute() for m in members]
        rows = [r for r in rows if r["score"] >= min_score]
        rows.sort(key=lambda r: (-r["window_start"], -r["score"]))
        return rows[:limit]

    def latest_forecasts(self, tenant: str, metric: str) -> list[dict[str, Any]]:
        """Like :meth:`ModelStore.latest_forecasts`, from the hot copy."""
        raw = self.client.hgetall(self.forecast_key(tenant, metric))
        return sorted((orjson.loads(v) for v in raw.values()), key=lambda r: r["series_id"])

    def latest_forecasts_many(
        self, tenant: str, metrics: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """:meth:`latest_forecasts` of several metrics in one pipelined round trip."""
        pipe = self.client.pipeline(transaction=False)
        for metric in metrics:
            pipe.hgetall(self.forecast_key(tenant, metric))
        return {
            metric: sorted((orjson.loads(v) for v in raw.values()), key=lambda r: r["series_id"])
            for metric, raw in zip(metrics, pipe.execute(), strict=True)
        }
