"""The GraphQL schema: one ``Query`` over the same engine and stores as the REST routes.

Every resolver calls what the matching REST route calls (often the route
function itself), with the request's tenant: series and top-k through
:func:`api.routes.query.query_answer` / :func:`~api.routes.query.top_answer`
(same checks, cache, hot/cold rollup), anomalies, forecasts, predictions,
insights, alerts and dead letters through their routes. A refusal carries
the REST error's ``code`` and ``status`` in its extensions.
"""

from __future__ import annotations

from typing import Any, cast

import orjson
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from riffle.api.graphql import types as t
from riffle.api.graphql.context import GraphContext, RiffleGraphQLError, awaited, blocking
from riffle.api.query import STEPS
from riffle.api.ratios import as_metric
from riffle.api.routes.alerts import alert_history, list_alerts
from riffle.api.routes.deadletters import MAX_PAGE, list_dead_letters
from riffle.api.routes.insights import list_insights
from riffle.api.routes.metrics import _metric
from riffle.api.routes.models import get_forecasts, list_anomalies
from riffle.api.routes.predictions import get_prediction
from riffle.api.routes.query import _step, query_answer, top_answer
from riffle.config.spec import MetricSpec, PipelineSpec
from riffle.operators.records import FAILURE_TYPES

Ctx = Info[GraphContext, None]

MAX_PAGE_SIZE = 500
"""Largest ``first`` of a page (dead letters: the REST route's own limit)."""


def _first(first: int, ceiling: int = MAX_PAGE_SIZE) -> int:
    if not 1 <= first <= ceiling:
        raise RiffleGraphQLError(
            f"first must be 1 to {ceiling} (got {first})", "invalid_first", 400
        )
    return first


def _filters(filters: list[t.DimensionFilter] | None) -> dict[str, list[str]]:
    found: dict[str, set[str]] = {}
    for f in filters or []:
        found.setdefault(f.dimension, set()).update(f.values)
    return {k: sorted(v) for k, v in sorted(found.items())}


@strawberry.type(description="A metric of the pipeline spec, or a ratio of two.")
class Metric:
    name: str
    kind: str = strawberry.field(
        description="metric (stored) or ratio (computed from two at query time)."
    )
    description: str
    unit: str
    aggregation: str
    window_seconds: int
    dimensions: list[str]
    numerator: str | None = strawberry.field(description="Ratios: the metric divided.")
    denominator: str | None = strawberry.field(description="Ratios: the metric dividing.")
    stored: strawberry.Private[list[str]]

    @strawberry.field(
        description="Values the dimension takes in the series Redis holds (the hot retention). "
        "Batched: one Redis pipeline for every metric of the request."
    )
    async def dimension_values(self, info: Ctx, dimension: str) -> list[str]:
        if dimension not in self.dimensions:
            raise RiffleGraphQLError(
                f"metric {self.name!r} has no dimension {dimension!r}", "unknown_dimension", 400
            )
        indexes = await info.context.loaders.series_index.load_many(self.stored)
        found = {dict(dims).get(dimension) for index in indexes for dims in index.values()}
        return sorted(v for v in found if v is not None)

    @strawberry.field(
        description="The newest forecast of each series, from Redis (recent results); "
        "Query.forecasts also reads the warehouse. Batched: one Redis pipeline."
    )
    async def forecasts(self, info: Ctx) -> list[t.Forecast]:
        if self.kind == "ratio":
            return []
        rows = await info.context.loaders.forecasts.load(self.name)
        return [t.forecast(r) for r in rows]


def _metric_of(spec_metric: MetricSpec, ratio: Any = None) -> Metric:
    return Metric(
        name=spec_metric.name,
        kind="ratio" if ratio is not None else "metric",
        description=(ratio.description if ratio is not None else spec_metric.description),
        unit=(ratio.unit if ratio is not None else spec_metric.unit),
        aggregation="ratio" if ratio is not None else spec_metric.aggregation,
        window_seconds=spec_metric.window_ms // 1000,
        dimensions=list(spec_metric.dimensions),
        numerator=None if ratio is None else ratio.numerator,
        denominator=None if ratio is None else ratio.denominator,
        stored=[spec_metric.name] if ratio is None else [ratio.numerator, ratio.denominator],
    )


def _all_metrics(spec: PipelineSpec) -> list[Metric]:
    return [_metric_of(m) for m in spec.metrics] + [
        _metric_of(as_metric(spec, r), r) for r in spec.ratios
    ]


@strawberry.type
class Query:
    @strawberry.field(description="Every metric and ratio of the spec, in spec order.")
    def metrics(self, info: Ctx) -> list[Metric]:
        return _all_metrics(info.context.app.spec)

    @strawberry.field(description="One metric or ratio by name; null when there is none.")
    def metric(self, info: Ctx, name: str) -> Metric | None:
        return next((m for m in _all_metrics(info.context.app.spec) if m.name == name), None)

    @strawberry.field(
        description="A metric rolled up to `step` (1m, 1h, 1d; default the finest that fits "
        "10,000 buckets), broken down by up to three dimensions, paged by series. "
        "Same engine, checks and cache as GET /v1/metrics/{name}/query."
    )
    async def series(
        self,
        info: Ctx,
        metric: str,
        start: str | None = None,
        end: str | None = None,
        step: str | None = None,
        group_by: list[str] | None = None,
        filters: list[t.DimensionFilter] | None = None,
        compare: str | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> t.SeriesPage:
        ctx = info.context
        first, offset = _first(first), t.offset_of(after)
        by = list(dict.fromkeys(group_by or []))
        if len(by) > 3:
            raise RiffleGraphQLError(
                "groupBy takes at most 3 dimensions", "too_many_dimensions", 400
            )

        def run() -> bytes:
            spec = ctx.app.spec
            ratio = spec.ratio(metric)
            found = _metric(spec, metric) if ratio is None else as_metric(spec, ratio)
            step_ms = _step(found, step, start, end) if step is None or step in STEPS else -1
            if step_ms < 0:
                raise RiffleGraphQLError(
                    f"step must be one of {', '.join(STEPS)} (got {step!r})", "invalid_step", 400
                )
            body, _ = query_answer(
                ctx.app,
                ctx.tenant,
                metric,
                start=start,
                end=end,
                step_ms=step_ms,
                by=by,
                filters=_filters(filters),
                compare=compare,
                zone=spec.zone_of(ctx.tenant),
            )
            return body

        answer = orjson.loads(await blocking(run))
        groups = answer["groups"]
        shown = groups[offset : offset + first]
        return t.SeriesPage(
            metric=answer["metric"],
            aggregation=answer["aggregation"],
            step_seconds=answer["step_seconds"],
            time_zone=answer["time_zone"],
            start=answer["start"],
            end=answer["end"],
            by=answer["by"],
            nodes=[
                t.Series(dims=t.dimensions(g["dims"]), points=[t.point(p) for p in g["points"]])
                for g in shown
            ],
            page_info=t.page_info(offset, len(shown), len(groups)),
            total_count=len(groups),
        )

    @strawberry.field(
        description="The `limit` values of dimension `by` with the highest metric value "
        "(as GET /v1/metrics/{name}/top)."
    )
    async def top(
        self,
        info: Ctx,
        metric: str,
        by: str,
        start: str | None = None,
        end: str | None = None,
        limit: int = 10,
        filters: list[t.DimensionFilter] | None = None,
        compare: str | None = None,
    ) -> t.TopResult:
        ctx = info.context
        body, _ = await blocking(
            top_answer,
            ctx.app,
            ctx.tenant,
            metric,
            by=[by],
            start=start,
            end=end,
            limit=limit,
            filters=_filters(filters),
            compare=compare,
        )
        answer = orjson.loads(body)
        return t.TopResult(
            metric=answer["metric"],
            aggregation=answer["aggregation"],
            by=answer["by"],
            start=answer["start"],
            end=answer["end"],
            items=[
                t.TopItem(
                    key=item[by],
                    value=item.get("value"),
                    count=item.get("count"),
                    sum=item.get("sum"),
                    numerator=item.get("numerator"),
                    denominator=item.get("denominator"),
                    previous=item.get("previous"),
                    delta=item.get("delta"),
                )
                for item in answer["items"]
            ],
        )

    @strawberry.field(description="Scored windows, newest first (as GET /v1/anomalies).")
    async def anomalies(
        self,
        info: Ctx,
        start: str | None = None,
        end: str | None = None,
        min_score: float = 0.0,
        label: str | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> t.AnomalyPage:
        ctx = info.context
        first, offset = _first(first), t.offset_of(after)
        if not 0.0 <= min_score <= 1.0:
            raise RiffleGraphQLError("minScore lies between 0 and 1", "invalid_min_score", 400)
        found = await blocking(
            list_anomalies,
            spec=ctx.app.spec,
            warm=ctx.model_results,
            hot=ctx.hot_model_results,
            tenant=ctx.tenant,
            start=start,
            end=end,
            min_score=min_score,
            label=label,
            limit=offset + first + 1,
            source="auto",
        )
        rows = found["anomalies"][offset:]
        shown = rows[:first]
        return t.AnomalyPage(
            nodes=[
                t.Anomaly(
                    metric=r["metric"],
                    dims=t.dimensions(r["dims"]),
                    window_start_ms=r["window_start"],
                    detector=r["detector"],
                    value=r["value"],
                    score=r["score"],
                    label=r["label"],
                    expected=r.get("expected"),
                    expected_low=r.get("expected_low"),
                    expected_high=r.get("expected_high"),
                    explanation=r.get("explanation"),
                )
                for r in shown
            ],
            page_info=t.page_info(offset, len(shown), offset + len(rows)),
            source=found["source"],
        )

    @strawberry.field(
        description="The newest forecast of every series of a metric (Redis, else the "
        "warehouse; as GET /v1/forecasts/{metric})."
    )
    async def forecasts(self, info: Ctx, metric: str) -> list[t.Forecast]:
        ctx = info.context
        found = await blocking(
            get_forecasts,
            metric=metric,
            spec=ctx.app.spec,
            warm=ctx.model_results,
            hot=ctx.hot_model_results,
            tenant=ctx.tenant,
            source="auto",
        )
        return [t.forecast(r) for r in found["forecasts"]]

    @strawberry.field(
        description="Every prediction about one entity (as GET /v1/predictions/{type}/{id})."
    )
    async def predictions(self, info: Ctx, entity_type: str, entity_id: str) -> t.Predictions:
        ctx = info.context
        found = await blocking(
            get_prediction,
            entity_type=entity_type,
            entity_id=entity_id,
            spec=ctx.app.spec,
            warm=ctx.predictions,
            hot=ctx.hot_predictions,
            tenant=ctx.tenant,
            source="auto",
        )
        return t.Predictions(
            entity_type=found["entity_type"],
            entity_id=found["entity_id"],
            source=found["source"],
            predictions=[
                t.EntityPrediction(
                    prediction=p["prediction"],
                    row=cast(JSON, {k: v for k, v in p.items() if k != "model"}),
                    model=p.get("model"),
                )
                for p in found["predictions"]
            ],
        )

    @strawberry.field(description="Insights about recent windows (as GET /v1/insights).")
    async def insights(
        self,
        info: Ctx,
        period: str = "1h",
        end: str | None = None,
        metrics: list[str] | None = None,
        kinds: list[str] | None = None,
        limit: int = 50,
    ) -> list[t.Insight]:
        ctx = info.context
        if not 1 <= limit <= 1000:
            raise RiffleGraphQLError("limit must be 1 to 1000", "invalid_limit", 400)
        found = await blocking(
            list_insights,
            app=ctx.app,
            spec=ctx.app.spec,
            warm=ctx.model_results,
            hot=ctx.hot_model_results,
            tenant=ctx.tenant,
            period=period,
            end=end,
            metric=metrics,
            kind=kinds,
            limit=limit,
        )
        return [
            t.Insight(
                kind=i["kind"],
                metric=i["metric"],
                statement=i["statement"],
                strength=i["strength"],
                dims=t.dimensions(i["dims"]),
                ts_ms=i["ts"],
                numbers=i["numbers"],
            )
            for i in found["insights"]
        ]

    @strawberry.field(
        description="Active alert instances with their acks (as GET /v1/alerts); `states` "
        "also admits normal."
    )
    async def alerts(
        self,
        info: Ctx,
        states: list[str] | None = None,
        severities: list[str] | None = None,
        labels: list[str] | None = None,
    ) -> list[t.Alert]:
        ctx = info.context
        found = await blocking(
            list_alerts,
            states=ctx.alert_states,
            acks=ctx.acks,
            tenant=ctx.tenant,
            state=states,
            severity=severities,
            label=labels,
        )
        return [_alert(row) for row in found["alerts"]]

    @strawberry.field(description="Alert transitions, newest first (as GET /v1/alerts/history).")
    async def alert_history(
        self,
        info: Ctx,
        start: str | None = None,
        end: str | None = None,
        rule: str | None = None,
        instance: str | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> t.AlertTransitionPage:
        ctx = info.context
        first, offset = _first(first), t.offset_of(after)
        found = await blocking(
            alert_history,
            history=ctx.alert_history,
            tenant=ctx.tenant,
            start=start,
            end=end,
            rule=rule,
            instance=instance,
            limit=offset + first + 1,
        )
        rows = found["transitions"][offset:]
        shown = rows[:first]
        return t.AlertTransitionPage(
            nodes=[t.alert_transition(r) for r in shown],
            page_info=t.page_info(offset, len(shown), offset + len(rows)),
        )

    @strawberry.field(
        description="The tenant's dead letters, newest first (as GET /v1/dead-letters); "
        "`after` is the previous page's endCursor."
    )
    async def dead_letters(
        self,
        info: Ctx,
        failure_type: str | None = None,
        event_type: str | None = None,
        since: str | None = None,
        until: str | None = None,
        replayed: bool | None = None,
        first: int = 100,
        after: str | None = None,
    ) -> t.DeadLetterPage:
        ctx = info.context
        if failure_type is not None and failure_type not in FAILURE_TYPES:
            raise RiffleGraphQLError(
                f"failureType must be one of {', '.join(FAILURE_TYPES)}", "invalid_filter", 400
            )
        page = await awaited(
            list_dead_letters(
                app=ctx.collect,
                caller=ctx.caller,
                failure_type=failure_type,
                event_type=event_type,
                since=since,
                until=until,
                replayed=replayed,
                limit=_first(first, MAX_PAGE),
                cursor=after,
            )
        )
        return t.DeadLetterPage(
            nodes=[
                t.DeadLetter(
                    id=d.id,
                    failure_type=d.failure_type,
                    reason=d.reason,
                    path=d.path,
                    errors=[t.Issue(path=e.path, rule=e.rule, message=e.message) for e in d.errors],
                    source=d.source,
                    event_type=d.event_type,
                    event_id=d.event_id,
                    event_ts=d.event_ts,
                    received_at=d.received_at,
                    replayed_at=d.replayed_at,
                    raw_text=d.raw_text,
                    raw_base64=d.raw_base64,
                )
                for d in page.dead_letters
            ],
            page_info=t.PageInfo(
                has_next_page=page.next_cursor is not None, end_cursor=page.next_cursor
            ),
        )


def _alert(row: dict[str, Any]) -> t.Alert:
    ack = row.get("ack")
    return t.Alert(
        instance=row["instance"],
        rule=row["rule"],
        metric=row["metric"],
        severity=row["severity"],
        state=row["to_state"],
        from_state=row["from_state"],
        at_ms=row["at"],
        value=row.get("value"),
        labels=t.pairs(row.get("labels")),
        annotations=t.pairs(row.get("annotations")),
        ack=None
        if ack is None
        else t.Ack(
            by=ack["by"], comment=ack["comment"], acked_at_ms=ack["acked_at"], until_ms=ack["until"]
        ),
    )
