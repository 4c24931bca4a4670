"""The ``/graphql`` route: the schema with its limits, the context (auth first), GraphiQL.

GraphiQL is served only when ``RIFFLE_ENVIRONMENT=development``. Errors a
client caused carry the REST API's ``code``/``status`` in ``extensions``;
any other error is masked ("Unexpected error.") and logged, so the server's
internals never leak and the HTTP status stays 200 as GraphQL over HTTP
expects. Subscriptions are not served yet (no websocket protocols):
``docs/graphql.md`` says why.
"""

from __future__ import annotations

from collections.abc import Callable

import strawberry
from graphql import GraphQLError
from prometheus_client import CollectorRegistry
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.fastapi import GraphQLRouter
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from riffle.api.graphql.context import GraphContext, context
from riffle.api.graphql.limits import cost_histogram, limits, operation_log
from riffle.api.graphql.schema import Query
from riffle.api.graphql.types import SCALARS
from riffle.config.settings import Settings


def _masked(error: GraphQLError) -> bool:
    """Mask errors raised by code (not ours to show); keep validation and our refusals."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class RiffleSchema(strawberry.Schema):
    """Logs only the errors a client did not cause (they are masked in the answer)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        super().process_errors([e for e in errors if _masked(e)], execution_context)


def build_schema(registry: CollectorRegistry | None = None) -> RiffleSchema:
    """The schema with its limits; operation costs go to ``registry`` when one is given."""
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        *limits(),
        lambda: MaskErrors(should_mask_error=_masked),
    ]
    if registry is not None:
        extensions.append(operation_log(cost_histogram(registry)))
    return RiffleSchema(
        query=Query,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS, sort_schema=True),
    )


def graphql_router(
    settings: Settings, registry: CollectorRegistry
) -> GraphQLRouter[GraphContext, None]:
    """The router serving ``POST``/``GET /graphql`` for one app."""
    return GraphQLRouter(
        build_schema(registry),
        path="/graphql",
        context_getter=context,
        graphql_ide="graphiql" if settings.environment == "development" else None,
        subscription_protocols=(),
        tags=["graphql"],
    )
