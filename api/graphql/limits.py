"""Limits on what one GraphQL document may ask, and the cost log operators read.

Four limits, each refusing the whole document with an error that says which
and by how much: depth (:data:`MAX_DEPTH` levels of selection), aliases
(:data:`MAX_ALIASES`), tokens (:data:`MAX_TOKENS`, checked while parsing)
and cost (:data:`MAX_COST`). The cost of a document is the sum over every
field it selects, fragments expanded, of the field's weight: 1, or the
weight in :data:`WEIGHTS` for fields that read a store or run the query
engine. Every operation is logged when it ends (``graphql_operation``:
tenant, operation name, cost, duration — a subscription's is its lifetime —,
errors, the document's SHA-256) and counted in ``riffle_api_graphql_cost``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)
from prometheus_client import CollectorRegistry, Histogram
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)

log = structlog.get_logger(__name__)

MAX_DEPTH = 8
MAX_ALIASES = 20
MAX_TOKENS = 2_000
MAX_COST = 300
WEIGHTS: dict[str, int] = {
    "series": 20,
    "top": 20,
    "insights": 30,
    "anomalies": 10,
    "forecasts": 5,
    "predictions": 5,
    "alerts": 5,
    "alertHistory": 10,
    "deadLetters": 10,
    "dimensionValues": 2,
}
"""Fields that read a store or run the query engine, and what each costs."""


def document_cost(document: DocumentNode) -> int:
    """The cost of the costliest operation of ``document`` (see the module doc)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return max((_cost(op.selection_set, fragments, frozenset()) for op in operations), default=0)


def _cost(
    selections: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    entered: frozenset[str],
) -> int:
    if selections is None:
        return 0
    total = 0
    for node in selections.selections:
        if isinstance(node, FieldNode):
            total += WEIGHTS.get(node.name.value, 1)
            total += _cost(node.selection_set, fragments, entered)
        elif isinstance(node, InlineFragmentNode):
            total += _cost(node.selection_set, fragments, entered)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            if name in fragments and name not in entered:  # cycles are a validation error
                total += _cost(fragments[name].selection_set, fragments, entered | {name})
    return total


class _CostRule(ValidationRule):
    def leave_document(self, node: DocumentNode, *_: Any) -> None:
        cost = document_cost(node)
        if cost > MAX_COST:
            self.report_error(
                GraphQLError(
                    f"query cost {cost} exceeds the limit of {MAX_COST}: ask for fewer "
                    "series, pages or store-backed fields per request",
                    extensions={"code": "query_too_costly", "cost": cost, "limit": MAX_COST},
                )
            )


def cost_histogram(registry: CollectorRegistry) -> Histogram:
    """``riffle_api_graphql_cost``: the cost of each operation run (in ``registry``)."""
    return Histogram(
        "riffle_api_graphql_cost",
        "Cost of each GraphQL operation (sum of field weights)",
        buckets=(1, 5, 10, 25, 50, 100, 200, MAX_COST),
        registry=registry,
    )


def operation_log(histogram: Histogram) -> type[SchemaExtension]:
    """An extension logging every operation with its cost into ``histogram`` and the log."""

    class OperationLog(SchemaExtension):
        def on_operation(self) -> Iterator[None]:
            started = time.perf_counter()
            try:
                yield
            finally:  # a subscription ends when its client stops it: logged then
                self._log(started)

        def _log(self, started: float) -> None:
            context = self.execution_context
            document = context.graphql_document
            cost = 0 if document is None else document_cost(document)
            if document is not None:
                histogram.observe(cost)
            errors = context.result.errors if context.result is not None else None
            caller = getattr(context.context, "caller", None)
            log.info(
                "graphql_operation",
                tenant=None if caller is None else caller.tenant,
                operation=context.operation_name,
                cost=cost,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                errors=len(errors or []),
                document_sha256=hashlib.sha256((context.query or "").encode()).hexdigest(),
            )

    return OperationLog


def limits() -> list[Callable[[], SchemaExtension]]:
    """Factories of the extensions enforcing depth, aliases, tokens and cost."""
    return [
        lambda: QueryDepthLimiter(max_depth=MAX_DEPTH),
        lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
        lambda: AddValidationRules([_CostRule]),
    ]
