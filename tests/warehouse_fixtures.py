"""Warehouse fixtures: one emulator per session, and every warehouse test on both engines.

Loaded by ``tests/conftest.py`` as a plugin. ``warehouse_target`` is
parametrised over ``duckdb`` and ``bigquery``: a test that takes it runs
twice, on a fresh DuckDB file and on a fresh BigQuery dataset of the
session's emulator, through the official client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from riffle.config.settings import Settings
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.engines import open_warehouse
from tests.bq_support import Emulator, start_emulator


@pytest.fixture(scope="session")
def bq_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """The BigQuery emulator on free loopback ports for the whole session."""
    emulator = start_emulator(tmp_path_factory.mktemp("bqemulator") / "bqemulator.log")
    try:
        yield emulator
    finally:
        emulator.stop()


@dataclass(frozen=True)
class WarehouseTarget:
    """One engine for one test: the settings that name it, and a way to open it."""

    engine: str
    url: str
    endpoint: str | None

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {"warehouse": self.url, "bigquery_endpoint": self.endpoint}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    def open(self) -> Warehouse:
        return open_warehouse(self.settings())


@pytest.fixture(params=["duckdb", "bigquery"])
def warehouse_target(request: pytest.FixtureRequest, tmp_path: Path) -> WarehouseTarget:
    """A fresh, empty warehouse on each engine (a new file, or a new emulator dataset)."""
    if request.param == "duckdb":
        return WarehouseTarget("duckdb", f"duckdb:///{tmp_path / 'w.duckdb'}", None)
    emulator: Emulator = request.getfixturevalue("bq_emulator")
    dataset = f"t_{uuid.uuid4().hex[:12]}"
    return WarehouseTarget(
        "bigquery", f"bigquery://{emulator.project}/{dataset}", emulator.endpoint
    )
