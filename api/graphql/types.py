"""The GraphQL object types: the REST answers' shapes, typed.

Instants are RFC 3339 strings in UTC (as in the REST API) unless a field
says ``Ms`` (epoch milliseconds). Dimensions are ``[Dimension!]!`` pairs,
sorted by name. Pages follow one shape: ``nodes``, ``pageInfo`` and
``totalCount`` where it is known.
"""

from __future__ import annotations

import base64
from typing import Any, NewType

import orjson
import strawberry
from strawberry.scalars import JSON
from strawberry.types.scalar import ScalarDefinition

from riffle.api.graphql.context import RiffleGraphQLError

Millis = NewType("Millis", int)
"""Epoch milliseconds: a scalar of its own (:data:`SCALARS`), as GraphQL's Int is 32 bits."""
SCALARS: dict[object, ScalarDefinition] = {
    Millis: strawberry.scalar(
        name="Millis",
        serialize=int,
        parse_value=int,
        description="Epoch milliseconds (UTC), a 64-bit integer: GraphQL's Int is 32 bits.",
    )
}
"""The scalar definitions the schema maps our types to."""


@strawberry.type(description="One dimension value of a series.")
class Dimension:
    name: str
    value: str


def dimensions(raw: dict[str, Any]) -> list[Dimension]:
    """``{name: value}`` as sorted pairs."""
    return [Dimension(name=k, value=str(v)) for k, v in sorted(raw.items())]


@strawberry.type(description="Where a page ends and whether another follows.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page; null on the last page."
    )


def offset_cursor(offset: int) -> str:
    """An opaque cursor for a position in an offset-paged list."""
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def offset_of(cursor: str | None) -> int:
    """The position a cursor of :func:`offset_cursor` stands for (0 without one)."""
    if cursor is None:
        return 0
    try:
        kind, _, raw = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        offset = int(raw)
    except ValueError:
        offset, kind = -1, ""
    if kind != "offset" or offset < 0:
        raise RiffleGraphQLError(
            f"cursor {cursor!r} is not one this API gave", "invalid_cursor", 400
        )
    return offset


def page_info(offset: int, shown: int, total: int) -> PageInfo:
    """The page info of ``shown`` items from ``offset`` in a list of ``total``."""
    more = offset + shown < total
    return PageInfo(has_next_page=more, end_cursor=offset_cursor(offset + shown) if more else None)


@strawberry.type(description="One bucket of a series: the merged state of its windows.")
class Point:
    start: str
    value: float | None
    count: int | None = None
    sum: float | None = None
    min: float | None = None
    max: float | None = None
    numerator: float | None = strawberry.field(default=None, description="Ratios only.")
    denominator: float | None = strawberry.field(default=None, description="Ratios only.")
    windows: int = 0
    partial: bool = strawberry.field(default=False, description="Holds an open window.")
    previous: float | None = strawberry.field(
        default=None, description="With compare: the value one period before."
    )
    delta: float | None = None
    detail: JSON | None = strawberry.field(
        default=None, description="Sketched metrics: quantiles, top items or distinct bounds."
    )


def point(raw: dict[str, Any]) -> Point:
    """A point of the engine's ``/query`` answer."""
    return Point(
        start=raw["start"],
        value=raw.get("value"),
        count=raw.get("count"),
        sum=raw.get("sum"),
        min=raw.get("min"),
        max=raw.get("max"),
        numerator=raw.get("numerator"),
        denominator=raw.get("denominator"),
        windows=raw.get("windows", 0),
        partial=raw.get("partial", False),
        previous=raw.get("previous"),
        delta=raw.get("delta"),
        detail=raw.get("detail"),
    )


@strawberry.type(description="One series of a breakdown: its group's dimensions and buckets.")
class Series:
    dims: list[Dimension]
    points: list[Point]


@strawberry.type(description="A page of the series of one query.")
class SeriesPage:
    metric: str
    aggregation: str
    step_seconds: int
    time_zone: str
    start: str
    end: str
    by: list[str]
    nodes: list[Series]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="One value of the ranked dimension.")
class TopItem:
    key: str = strawberry.field(description="The dimension's value.")
    value: float | None
    count: int | None = None
    sum: float | None = None
    numerator: float | None = None
    denominator: float | None = None
    previous: float | None = None
    delta: float | None = None


@strawberry.type(description="The values of one dimension with the highest metric value.")
class TopResult:
    metric: str
    aggregation: str
    by: str
    start: str
    end: str
    items: list[TopItem]


@strawberry.type(description="A detector's verdict on one window.")
class Anomaly:
    metric: str
    dims: list[Dimension]
    window_start_ms: Millis
    detector: str
    value: float
    score: float
    label: str
    expected: float | None
    expected_low: float | None
    expected_high: float | None
    explanation: str | None


@strawberry.type(description="A page of anomalies, newest first.")
class AnomalyPage:
    nodes: list[Anomaly]
    page_info: PageInfo
    source: str = strawberry.field(description="hot (Redis) or warehouse.")


@strawberry.type(description="One step ahead of a forecast, with its interval.")
class ForecastPoint:
    ts_ms: Millis
    mean: float
    low: float
    high: float


@strawberry.type(description="The newest forecast of one series, and the model's running skill.")
class Forecast:
    series_id: str
    dims: list[Dimension]
    issued_after_ms: Millis
    level: float | None
    points: list[ForecastPoint]
    n: int | None
    mae: float | None
    smape: float | None
    naive_mae: float | None
    naive_smape: float | None
    coverage: float | None


def forecast(raw: dict[str, Any]) -> Forecast:
    """A forecast row of either store (points already decoded or as JSON text)."""
    dims = raw["dims"] if isinstance(raw["dims"], dict) else orjson.loads(raw["dims"])
    points = raw["points"]
    if isinstance(points, str | bytes):
        points = [
            {"ts": p[0], "mean": p[1], "low": p[2], "high": p[3]} for p in orjson.loads(points)
        ]
    return Forecast(
        series_id=raw["series_id"],
        dims=dimensions(dims),
        issued_after_ms=raw["issued_after"],
        level=raw.get("level"),
        points=[
            ForecastPoint(ts_ms=p["ts"], mean=p["mean"], low=p["low"], high=p["high"])
            for p in points
        ],
        n=raw.get("n"),
        mae=raw.get("mae"),
        smape=raw.get("smape"),
        naive_mae=raw.get("naive_mae"),
        naive_smape=raw.get("naive_smape"),
        coverage=raw.get("coverage"),
    )


@strawberry.type(description="An entity's predicted probability from one prediction model.")
class EntityPrediction:
    prediction: str
    row: JSON = strawberry.field(description="The stored row: probability, features seen, …")
    model: JSON | None = strawberry.field(description="The model's online accuracy.")


@strawberry.type(description="Every prediction about one entity.")
class Predictions:
    entity_type: str
    entity_id: str
    source: str
    predictions: list[EntityPrediction]


@strawberry.type(description="A plain-language statement about recent windows.")
class Insight:
    kind: str
    metric: str
    statement: str
    strength: float
    dims: list[Dimension]
    ts_ms: Millis | None
    numbers: JSON


@strawberry.type(description="An acknowledgement of an alert's current episode.")
class Ack:
    by: str
    comment: str
    acked_at_ms: Millis
    until_ms: Millis | None


@strawberry.type(description="An alert instance's newest transition.")
class Alert:
    instance: str
    rule: str
    metric: str
    severity: str
    state: str
    from_state: str
    at_ms: Millis
    value: float | None
    labels: list[Dimension]
    annotations: list[Dimension]
    ack: Ack | None


@strawberry.type(description="One change of state of one alert instance.")
class AlertTransition:
    id: str
    rule: str
    metric: str
    instance: str
    severity: str
    from_state: str
    to_state: str
    at_ms: Millis
    value: float | None
    labels: list[Dimension]
    annotations: list[Dimension]


def pairs(raw: Any) -> list[Dimension]:
    """Labels or annotations (an object, or its JSON text) as sorted pairs."""
    if isinstance(raw, str | bytes):
        raw = orjson.loads(raw) if raw else {}
    return dimensions(raw or {})


def alert_transition(row: dict[str, Any]) -> AlertTransition:
    """A transition of the history table or the live stream."""
    return AlertTransition(
        id=row["transition_id"],
        rule=row["rule"],
        metric=row["metric"],
        instance=row["instance"],
        severity=row["severity"],
        from_state=row["from_state"],
        to_state=row["to_state"],
        at_ms=row["at"],
        value=row.get("value"),
        labels=pairs(row.get("labels")),
        annotations=pairs(row.get("annotations")),
    )


@strawberry.type(description="A page of alert transitions, newest first.")
class AlertTransitionPage:
    nodes: list[AlertTransition]
    page_info: PageInfo


@strawberry.type(description="An issue found in a rejected event.")
class Issue:
    path: str
    rule: str
    message: str


@strawberry.type(description="A rejected event with the reason, and its original bytes.")
class DeadLetter:
    id: str
    failure_type: str
    reason: str
    path: str
    errors: list[Issue]
    source: str
    event_type: str | None
    event_id: str | None
    event_ts: str | None
    received_at: str
    replayed_at: str | None
    raw_text: str | None
    raw_base64: str


@strawberry.type(description="A page of dead letters, newest first.")
class DeadLetterPage:
    nodes: list[DeadLetter]
    page_info: PageInfo


@strawberry.input(description="Keep series whose dimension takes one of these values.")
class DimensionFilter:
    dimension: str
    values: list[str]
