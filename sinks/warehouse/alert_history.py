"""Alert history: the warehouse's ``alerts`` table, one row per transition.

Table :data:`sinks.warehouse.tables.ALERTS` (either engine), keyed by
``transition_id`` (stable, see :class:`~operators.alerts.transitions.AlertTransition`; event
time in ``ts``, ``at`` is a reserved word in DuckDB), written by upserts — the
history ``GET /v1/alerts/history`` reads. Each instance's current state is in
:mod:`sinks.redis.alerts`; the transitions' topic in :mod:`sinks.topics.alerts`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson

from riffle.operators.alerts.transitions import AlertTransition
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import Cmp, Pred, Select
from riffle.sinks.warehouse.tables import ALERTS


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
