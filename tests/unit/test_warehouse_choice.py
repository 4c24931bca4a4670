"""Which engine a URL opens, which failures are retried, and what a rollup merges."""

from __future__ import annotations

import pytest
import requests
from google.api_core import exceptions as gexc
from pydantic import ValidationError

from riffle.api.rollup import Bucket, add_windows, finish, merge_into
from riffle.config.settings import Settings
from riffle.operators.records import WindowResult
from riffle.sinks.errors import TransientSinkError
from riffle.sinks.warehouse.base import window_rows
from riffle.sinks.warehouse.bigquery import BigQueryWarehouse
from riffle.sinks.warehouse.bigquery_errors import is_transient
from riffle.sinks.warehouse.bigquery_rows import row_id
from riffle.sinks.warehouse.duckdb import DuckDBWarehouse
from riffle.sinks.warehouse.engines import open_warehouse
from riffle.sinks.warehouse.tables import METRIC_WINDOWS


def test_the_url_picks_the_engine() -> None:
    duck = open_warehouse(Settings(warehouse="duckdb:///x/w.duckdb"))
    assert isinstance(duck, DuckDBWarehouse)
    big = open_warehouse(
        Settings(warehouse="bigquery://my-project/riffle", bigquery_endpoint="http://h:1")
    )
    assert isinstance(big, BigQueryWarehouse)
    assert (big.project, big.dataset, big.endpoint) == ("my-project", "riffle", "http://h:1")
    with pytest.raises(ValidationError, match="bigquery://project/dataset"):
        Settings(warehouse="bigquery://only-project")


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (gexc.TooManyRequests("slow down"), True),
        (gexc.ServiceUnavailable("down"), True),
        (gexc.InternalServerError("oops"), True),
        (requests.ConnectionError("refused"), True),
        (TransientSinkError("locked"), True),
        (gexc.BadRequest("bad row"), False),
        (gexc.Forbidden("no"), False),
        (ValueError("bug"), False),
    ],
)
def test_only_transient_failures_are_retried(exc: BaseException, retried: bool) -> None:
    assert is_transient(exc) is retried


def w(start: int, value: float, final: bool = True) -> WindowResult:
    return WindowResult("t", "m", (("c", "de"),), start, start + 60_000, 1, value, value,
                        value, value, final, 1)  # fmt: skip


def test_row_ids_follow_key_and_content_not_the_write_time() -> None:
    def rid(window: WindowResult, now: int = 5) -> str:
        return row_id(METRIC_WINDOWS, window_rows([window], now)[0])

    assert rid(w(0, 1.0)) == rid(w(0, 1.0), now=6)
    assert rid(w(0, 1.0)) != rid(w(0, 2.0))
    assert rid(w(0, 1.0)) != rid(w(60_000, 1.0))


def test_rollup_merges_exactly_and_recomputes_the_value() -> None:
    grid: dict[tuple[tuple[str, str], ...], dict[int, Bucket]] = {}
    add_windows(grid, [((("c", "de"),), [w(0, 1.0), w(60_000, 3.0, final=False)])],
                ["c"], 0, 3_600_000)  # fmt: skip
    (bucket,) = grid[(("c", "de"),)].values()
    merge_into(bucket, 2, 8.0, 0.5, 7.0, 2)
    assert (bucket.count, bucket.sum, bucket.min, bucket.max) == (4, 12.0, 0.5, 7.0)
    assert bucket.partial
    assert finish(bucket, "avg") == 3.0
