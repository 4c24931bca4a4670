"""Alert transitions in their three homes: the warehouse, Redis and the ``riffle.alerts`` topic.

* Warehouse table ``alerts``: one row per transition, keyed by ``transition_id``
  (event time in ``ts``; ``at`` is a reserved word in DuckDB)
  (stable, see :class:`~operators.alerts.AlertTransition`), written by upserts —
  the history ``GET /v1/alerts/history`` reads.
* Redis hash ``{prefix}:alerts:{tenant}``: per instance, its newest transition
  as JSON — what ``GET /v1/alerts`` reads. A Lua script keeps the newer event
  time, so a replayed older transition never overwrites a newer one (no
  read-modify-write race between workers either).
* Kafka topic: value :meth:`AlertTransition.to_json`, key the instance id (one
  instance's transitions stay in order in one partition).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson
import redis
from confluent_kafka import KafkaError, Message, Producer

from operators.alerts import ACTIVE, AlertTransition
from sinks.errors import SinkError
from sinks.warehouse import DuckDBWarehouse

_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    transition_id VARCHAR PRIMARY KEY, tenant VARCHAR NOT NULL, rule VARCHAR NOT NULL,
    metric VARCHAR NOT NULL, instance VARCHAR NOT NULL, labels VARCHAR NOT NULL,
    severity VARCHAR NOT NULL, from_state VARCHAR NOT NULL, to_state VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL, value DOUBLE, active_at TIMESTAMP, annotations VARCHAR NOT NULL,
    written_at TIMESTAMP NOT NULL
);
"""

_UPSERT = """
INSERT OR REPLACE INTO alerts
SELECT i, t, r, m, n, l, s, f, o, epoch_ms(a), v,
       CASE WHEN aa IS NULL THEN NULL ELSE epoch_ms(aa) END, an, epoch_ms(w) FROM (
    SELECT unnest(?::VARCHAR[]) AS i, unnest(?::VARCHAR[]) AS t, unnest(?::VARCHAR[]) AS r,
           unnest(?::VARCHAR[]) AS m, unnest(?::VARCHAR[]) AS n, unnest(?::VARCHAR[]) AS l,
           unnest(?::VARCHAR[]) AS s, unnest(?::VARCHAR[]) AS f, unnest(?::VARCHAR[]) AS o,
           unnest(?::BIGINT[]) AS a, unnest(?::DOUBLE[]) AS v, unnest(?::BIGINT[]) AS aa,
           unnest(?::VARCHAR[]) AS an, unnest(?::BIGINT[]) AS w
)
"""


class AlertSinkError(SinkError):
    """Alert transitions could not be written (the broker did not confirm them)."""


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


class DuckDBAlerts:
    """The warehouse's ``alerts`` table (history of every transition)."""

    def __init__(self, path: Path) -> None:
        self.warehouse = DuckDBWarehouse(path)

    def write(self, items: Sequence[AlertTransition]) -> None:
        """Upsert transitions by ``transition_id``."""
        rows = list({t.transition_id: t for t in items}.items())
        if not rows:
            return
        now = int(time.time() * 1000)
        cols: list[list[Any]] = [
            [k for k, _ in rows],
            [t.tenant for _, t in rows],
            [t.rule for _, t in rows],
            [t.metric for _, t in rows],
            [t.instance for _, t in rows],
            [orjson.dumps(dict(t.labels)).decode() for _, t in rows],
            [t.severity for _, t in rows],
            [t.from_state for _, t in rows],
            [t.to_state for _, t in rows],
            [t.at for _, t in rows],
            [_finite(t.value) for _, t in rows],
            [t.active_at for _, t in rows],
            [orjson.dumps(dict(t.annotations)).decode() for _, t in rows],
            [now] * len(rows),
        ]

        def write(con: duckdb.DuckDBPyConnection) -> None:
            con.execute("BEGIN TRANSACTION")
            con.execute(_DDL)
            con.execute(_UPSERT, cols)
            con.execute("COMMIT")

        self.warehouse._run(write, read_only=False)

    def history(
        self,
        tenant: str,
        start_ms: int,
        end_ms: int,
        *,
        rule: str | None = None,
        instance: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Transitions of ``tenant`` with event time in ``[start_ms, end_ms)``, newest first."""
        if not self.warehouse.path.exists():
            return []
        sql = (
            "SELECT transition_id, rule, metric, instance, labels, severity, from_state,"
            " to_state, epoch_ms(ts) AS at, value, epoch_ms(active_at) AS active_at, annotations"
            " FROM alerts WHERE tenant = ? AND ts >= epoch_ms(?::BIGINT)"
            " AND ts < epoch_ms(?::BIGINT)"
        )
        params: list[Any] = [tenant, start_ms, end_ms]
        if rule is not None:
            sql += " AND rule = ?"
            params.append(rule)
        if instance is not None:
            sql += " AND instance = ?"
            params.append(instance)
        sql += " ORDER BY ts DESC, transition_id LIMIT ?"
        params.append(limit)

        def read(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'"
            ).fetchone()
            if not found or not found[0]:
                return []
            cursor = con.execute(sql, params)
            names = [d[0] for d in cursor.description or []]
            out = []
            for row in cursor.fetchall():
                item = dict(zip(names, row, strict=True))
                item["labels"] = orjson.loads(item["labels"])
                item["annotations"] = orjson.loads(item["annotations"])
                out.append(item)
            return out

        return self.warehouse._run(read, read_only=True)


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


class AlertProducer:
    """Writes transitions to the alerts topic; :meth:`send` returns once the broker has them."""

    def __init__(self, servers: str, topic: str, *, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._producer = Producer(
            {"bootstrap.servers": servers, "enable.idempotence": True, "acks": "all"}
        )

    def send(self, items: Sequence[AlertTransition]) -> None:
        failures: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                failures.append(err.str())

        for t in items:
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=t.to_json(),
                        key=t.instance.encode(),
                        on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
            self._producer.poll(0)
        remaining = self._producer.flush(self.timeout_s)
        if failures or remaining:
            detail = failures[0] if failures else f"{remaining} not confirmed in {self.timeout_s}s"
            raise AlertSinkError(f"alerts to {self.topic!r} failed: {detail}")
