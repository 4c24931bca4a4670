"""Alert transitions in their three homes: the warehouse, Redis and the ``riffle.alerts`` topic.

* Warehouse table ``alerts`` (:data:`sinks.warehouse.tables.ALERTS`, either engine): one
  row per transition, keyed by ``transition_id`` (stable, see
  :class:`~operators.alerts.AlertTransition`; event time in ``ts``, ``at`` is a
  reserved word in DuckDB), written by upserts — the history
  ``GET /v1/alerts/history`` reads.
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
from typing import Any

import orjson
import redis
from confluent_kafka import KafkaError, Message, Producer

from riffle.operators.alerts import ACTIVE, AlertTransition
from riffle.sinks.errors import SinkError
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import Cmp, Pred, Select
from riffle.sinks.warehouse.tables import ALERTS


class AlertSinkError(SinkError):
    """Alert transitions could not be written (the broker did not confirm them)."""


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


class WarehouseAlerts:
    """The warehouse's ``alerts`` table (history of every transition), on either engine."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse

    def write(self, items: Sequence[AlertTransition]) -> None:
        """Upsert transitions by ``transition_id``."""
        if not items:
            return
        now = int(time.time() * 1000)
        rows = [
            {
                "transition_id": t.transition_id,
                "tenant": t.tenant,
                "rule": t.rule,
                "metric": t.metric,
                "instance": t.instance,
                "labels": orjson.dumps(dict(t.labels)).decode(),
                "severity": t.severity,
                "from_state": t.from_state,
                "to_state": t.to_state,
                "ts": t.at,
                "value": _finite(t.value),
                "active_at": t.active_at,
                "annotations": orjson.dumps(dict(t.annotations)).decode(),
                "written_at": now,
            }
            for t in items
        ]
        self.warehouse.upsert(ALERTS, rows)

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
        where: list[Pred] = [
            Cmp("tenant", "=", tenant),
            Cmp("ts", ">=", start_ms),
            Cmp("ts", "<", end_ms),
        ]
        if rule is not None:
            where.append(Cmp("rule", "=", rule))
        if instance is not None:
            where.append(Cmp("instance", "=", instance))
        columns = ("transition_id", "rule", "metric", "instance", "labels", "severity",
                   "from_state", "to_state", "ts", "value", "active_at", "annotations")  # fmt: skip
        rows = self.warehouse.select(
            Select(
                ALERTS,
                columns=columns,
                where=tuple(where),
                order_by=("ts DESC", "transition_id ASC"),
                limit=limit,
            )
        )
        out = []
        for row in rows:
            item = {("at" if k == "ts" else k): v for k, v in row.items()}
            item["labels"] = orjson.loads(item["labels"])
            item["annotations"] = orjson.loads(item["annotations"])
            out.append(item)
        return out


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
