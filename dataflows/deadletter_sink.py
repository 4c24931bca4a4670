"""The flow's dead letters to both places they belong: the dead-letter topic and the warehouse.

Kafka first (the record other systems consume), then the ``dead_letters``
table (what ``GET /v1/dead-letters`` reads). Both writes are idempotent —
the table is keyed by :attr:`DeadLetter.letter_id`, which for the flow's
letters includes the source offset — so a retried batch or a replay after
recovery leaves one row per letter.
"""

from __future__ import annotations

from pathlib import Path

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from riffle.config.settings import Settings
from riffle.dataflows.outputs import _Partition, warehouse_settings
from riffle.operators.records import DeadLetter
from riffle.sinks.topics.deadletters import DeadLetterProducer
from riffle.sinks.warehouse.dead_letters import WarehouseDeadLetters
from riffle.sinks.warehouse.engines import open_warehouse


class DeadLetterFanoutSink(DynamicSink[DeadLetter]):
    """Dead letters to the topic (confirmed by the broker) and to the warehouse table
    (of ``warehouse``: settings naming either engine, or a DuckDB file)."""

    def __init__(
        self, servers: str, topic: str, warehouse: Settings | Path | None, give_up_s: float = 300.0
    ) -> None:
        self.servers = servers
        self.topic = topic
        self.warehouse = None if warehouse is None else warehouse_settings(warehouse)
        self.give_up_s = give_up_s

    def build(
        self, step_id: str, worker_index: int, worker_count: int
    ) -> StatelessSinkPartition[DeadLetter]:
        producer = DeadLetterProducer(self.servers, self.topic)
        table = (
            None if self.warehouse is None else WarehouseDeadLetters(open_warehouse(self.warehouse))
        )

        def write(letters: list[DeadLetter]) -> None:
            producer.send(letters)
            if table is not None:
                table.write(letters)

        return _Partition("dead_letters", write, self.give_up_s)
