"""The flow's dead letters to both places they belong: the dead-letter topic and the warehouse.

The topic first (Kafka, or Pub/Sub when the flow reads Pub/Sub: the record other
systems consume), then the ``dead_letters``
table (what ``GET /v1/dead-letters`` reads). Both writes are idempotent —
the table is keyed by :attr:`DeadLetter.letter_id`, which for the flow's
letters includes the source offset — so a retried batch or a replay after
recovery leaves one row per letter.
"""

from __future__ import annotations

from pathlib import Path

from riffle.config.settings import Settings
from riffle.dataflows.outputs import STORE_FLUSH_S, FlowSink, Writer, warehouse_settings
from riffle.operators.records import DeadLetter
from riffle.sinks.topics.deadletters import dead_letter_sender
from riffle.sinks.topics.target import TopicTarget
from riffle.sinks.warehouse.dead_letters import WarehouseDeadLetters
from riffle.sinks.warehouse.engines import open_warehouse


class DeadLetterFanoutSink(FlowSink[DeadLetter]):
    """Dead letters to ``target`` (confirmed by the broker) and to the warehouse table
    (of ``warehouse``: settings naming either engine, or a DuckDB file), every
    :data:`~dataflows.outputs.STORE_FLUSH_S` (and at each epoch's end)."""

    name = "dead_letters"

    def __init__(
        self,
        target: TopicTarget,
        warehouse: Settings | Path | None,
        give_up_s: float = 300.0,
    ) -> None:
        super().__init__(give_up_s=give_up_s, flush_s=STORE_FLUSH_S)
        self.target = target
        self.warehouse = None if warehouse is None else warehouse_settings(warehouse)

    def writers(self, part: str) -> list[Writer[DeadLetter]]:
        send = dead_letter_sender(self.target)
        if self.warehouse is None:
            return [send]
        return [send, WarehouseDeadLetters(open_warehouse(self.warehouse)).write]
