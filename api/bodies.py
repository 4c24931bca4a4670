"""Response bodies of the API (pydantic classes, so the OpenAPI docs describe them)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from riffle.config.base import Operator
from riffle.config.spec import Aggregation, MetricSpec, RatioSpec


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine code and a message for people."""

    code: str = Field(examples=["unknown_dimension"])
    message: str


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx response."""

    error: ErrorDetail


UNKNOWN_METRIC: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "A metric filter names no metric of the spec."}
}


class ConditionOut(BaseModel):
    """One clause of a metric's event filter."""

    path: str
    op: Operator
    value: Any = None


class MetricOut(BaseModel):
    """A metric's definition, as the pipeline spec states it."""

    name: str
    description: str
    unit: str
    events: list[str]
    aggregation: Aggregation
    value: str | None = Field(description="Event field aggregated; null for count metrics.")
    dimensions: list[str]
    window_seconds: int
    filter: list[ConditionOut]

    @classmethod
    def of(cls, metric: MetricSpec) -> MetricOut:
        """The definition of ``metric``."""
        return cls(
            name=metric.name,
            description=metric.description,
            unit=metric.unit,
            events=list(metric.events),
            aggregation=metric.aggregation,
            value=metric.value,
            dimensions=list(metric.dimensions),
            window_seconds=metric.window_ms // 1000,
            filter=[ConditionOut(path=c.path, op=c.op, value=c.value) for c in metric.filter],
        )


class RatioOut(BaseModel):
    """A ratio metric's definition: summed numerator over summed denominator."""

    name: str
    description: str
    unit: str
    numerator: str
    denominator: str
    dimensions: list[str]

    @classmethod
    def of(cls, ratio: RatioSpec) -> RatioOut:
        """The definition of ``ratio``."""
        return cls(**ratio.model_dump())


class MetricList(BaseModel):
    """Every metric of the pipeline spec."""

    metrics: list[MetricOut]
    ratios: list[RatioOut] = Field(
        default_factory=list, description="Ratio metrics, served like metrics by name."
    )


class PointOut(BaseModel):
    """One window of a series."""

    window_start: str = Field(description="RFC 3339, UTC; inclusive.")
    window_end: str = Field(description="RFC 3339, UTC; exclusive.")
    value: float | None = Field(description="The metric's aggregation; null if undefined.")
    count: int = Field(description="Events in the window.")
    is_final: bool = Field(description="False while the window is open and still filling.")
    revision: int = Field(description="Grows with every update of the window.")
    detail: dict[str, Any] | None = Field(
        None,
        description="Sketched metrics: quantiles ({'p50': ...}), top items "
        "({'top': [[item, count], ...]}) or distinct-count bounds ({'lower', 'upper'}).",
    )


class SeriesOut(BaseModel):
    """A series (or a group of series) and its windows in the range."""

    dims: dict[str, str]
    points: list[PointOut]


class SeriesResponse(BaseModel):
    """Windows of a metric that start in ``[start, end)``."""

    metric: str
    aggregation: Aggregation | Literal["ratio"]
    window_seconds: int
    start: str = Field(description="Range start, aligned down to a window start.")
    end: str
    group_by: list[str] | None
    series: list[SeriesOut]


class HealthResponse(BaseModel):
    """The process is alive."""

    status: Literal["ok"] = "ok"


class CheckOut(BaseModel):
    """The outcome of one readiness check."""

    status: Literal["ok", "failed"]
    detail: str = ""


class ReadyResponse(BaseModel):
    """Readiness: every dependency answered."""

    status: Literal["ready"] = "ready"
    checks: dict[str, CheckOut]


class NotReadyResponse(ErrorResponse):
    """Readiness failed; ``checks`` says which dependency and why."""

    checks: dict[str, CheckOut]
