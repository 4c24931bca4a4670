"""The ``/graphql`` route: the schema with its limits, the context (auth first), GraphiQL.

Queries go over HTTP (``POST``/``GET``); subscriptions over a websocket
speaking ``graphql-transport-ws`` (:mod:`api.graphql.socket` admits it), and
only subscriptions: a query sent there is refused with an error that says to
use HTTP. GraphiQL is served only when ``RIFFLE_ENVIRONMENT=development``.
Errors a client caused carry the REST API's ``code``/``status`` in
``extensions``; any other error is masked ("Unexpected error.") and logged,
so the server's internals never leak and the HTTP status stays 200 as
GraphQL over HTTP expects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import strawberry
import structlog
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from fastapi import Depends, Query, Request, Response, WebSocket
from graphql import GraphQLError
from prometheus_client import CollectorRegistry
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.fastapi import GraphQLRouter
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UnsetType

from riffle.api.errors import ApiError
from riffle.api.graphql.context import GraphContext, context
from riffle.api.graphql.limits import cost_histogram, limits, operation_log
from riffle.api.graphql.schema import Query as QueryRoot
from riffle.api.graphql.socket import SocketContext, SocketCtx, admit
from riffle.api.graphql.subscriptions import Subscription
from riffle.api.graphql.types import SCALARS
from riffle.config.settings import Settings
from riffle.sinks.errors import SinkError

log = structlog.get_logger(__name__)

MAX_SUBSCRIPTIONS = 50
"""Subscriptions one socket may hold at once (as subscriptions per ``/v1/stream``)."""


def _masked(error: GraphQLError) -> bool:
    """Mask errors raised by code (not ours to show); keep validation and our refusals
    (and Strawberry's: an operation of a type the transport does not run)."""
    original = error.original_error
    return original is not None and not isinstance(
        original, GraphQLError | InvalidOperationTypeError | CannotGetOperationTypeError
    )


class RiffleSchema(strawberry.Schema):
    """Logs only the errors a client did not cause (they are masked in the answer)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        super().process_errors([e for e in errors if _masked(e)], execution_context)

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Queries (and mutations) over HTTP; a subscription there is a ``400``
        ("subscriptions are not allowed when using POST"): it needs the websocket."""
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            set(allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES)
            - {OperationType.SUBSCRIPTION},
            operation_extensions,
        )

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> Any:
        """Subscriptions only (the websocket): queries and mutations go over HTTP, where
        loaders and rate limits are per request; one sent here gets "queries are not
        allowed"."""
        return await super().stream(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            operation_extensions,
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )


def build_schema(registry: CollectorRegistry | None = None) -> RiffleSchema:
    """The schema with its limits; operation costs go to ``registry`` when one is given."""
    extensions: list[type[SchemaExtension] | Callable[[], SchemaExtension]] = [
        *limits(),
        lambda: MaskErrors(should_mask_error=_masked),
    ]
    if registry is not None:
        extensions.append(operation_log(cost_histogram(registry)))
    return RiffleSchema(
        query=QueryRoot,
        subscription=Subscription,
        extensions=extensions,
        config=StrawberryConfig(scalar_map=SCALARS, sort_schema=True),
    )


class RiffleGraphQLRouter(GraphQLRouter[GraphContext | SocketContext, None]):
    """Strawberry's router, its websocket built over :class:`SocketContext` (no key is
    checked before ``connection_init``) and admitted by :meth:`on_ws_connect`."""

    def __init__(self, schema: RiffleSchema, path: str, **kwargs: Any) -> None:
        super().__init__(
            schema,
            path=path,
            context_getter=context,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            max_subscriptions_per_connection=MAX_SUBSCRIPTIONS,
            connection_init_wait_timeout=timedelta(seconds=10),
            **kwargs,
        )
        self.routes[:] = []  # Strawberry's HTTP routes refuse in plain text; ours in JSON
        context_dep = Depends(self.context_getter)

        @self.get(path, **_GET_DOC)
        async def graphql_get(
            request: Request,
            response: Response,
            ctx: GraphContext = context_dep,
            query: str | None = Query(None, description="The query document."),
            variables: str | None = Query(None, description="Its variables, a JSON object."),
            operation_name: str | None = Query(
                None, alias="operationName", description="The operation to run."
            ),
            extensions: str | None = Query(None, description="A JSON object; ignored."),
        ) -> Response:
            """A query (not a mutation) over GET, cacheable; GraphiQL in development."""
            return await self._http(request, response, ctx)

        @self.post(path, **_POST_DOC)
        async def graphql_post(
            request: Request, response: Response, ctx: GraphContext = context_dep
        ) -> Response:
            """A query as ``{"query", "variables", "operationName"}`` JSON."""
            return await self._http(request, response, ctx)

        @self.websocket(path)
        async def graphql_socket(websocket: WebSocket, ctx: SocketCtx) -> None:
            ctx.request = websocket
            await self.run(request=websocket, context=ctx, root_value=None)

    async def _http(self, request: Request, response: Response, ctx: GraphContext) -> Response:
        """Run one HTTP request; Strawberry's refusals become the API's JSON errors."""
        self.temporal_response = response
        try:
            return await self.run(request=request, context=ctx, root_value=None)
        except HTTPException as exc:
            raise ApiError(exc.status_code, _REFUSALS.get(exc.status_code, "bad_request"),
                           exc.reason) from None  # fmt: skip

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> Any:
        """Strawberry's parse, with a JSON body that is not an object (``"x"``, ``1``,
        ``[1]``) or not UTF-8 refused as a 400 instead of failing inside it."""
        try:
            return await super().parse_http_body(request)
        except (AttributeError, TypeError, UnicodeDecodeError):
            raise HTTPException(
                400, 'the body must be a JSON object: {"query": ..., "variables": {...}}'
            ) from None

    async def on_ws_connect(
        self, context: GraphContext | SocketContext
    ) -> UnsetType | dict[str, object] | None:
        """Admit the socket's key (see :mod:`api.graphql.socket`), or close it with 4403."""
        assert isinstance(context, SocketContext)
        token = context.token_of(context.connection_params)
        try:
            context.caller = await admit(context, token)
        except (ApiError, SinkError) as exc:
            log.info(
                "graphql_socket_refused",
                code=getattr(exc, "code", "store_unavailable"),
                reason=str(exc),
            )
            raise ConnectionRejectionError from None
        context.token = token
        return UnsetType()  # the singleton UNSET: acknowledge without a payload


_REFUSALS = {
    400: "invalid_graphql_request",
    404: "not_found",
    405: "method_not_allowed",
    415: "unsupported_media_type",
}
"""The API's error code for each status Strawberry refuses a request with."""

_RESULT = {
    "type": "object",
    "properties": {
        "data": {"type": ["object", "null"]},
        "errors": {"type": "array", "items": {"type": "object"}},
        "extensions": {"type": "object"},
    },
}
"""A GraphQL-over-HTTP result (always ``200`` once the request parsed)."""

_ERROR_BODY = {
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
}
_GET_DOC: dict[str, Any] = {
    "operation_id": "graphqlGet",
    "summary": "Run a GraphQL query given in the query string",
    "response_class": Response,
    "responses": {
        200: {
            "description": "The result; with no query, GraphiQL (development only).",
            "content": {"application/json": {"schema": _RESULT}, "text/html": {}},
        },
        404: {"description": "No query and no GraphiQL here.", **_ERROR_BODY},
        405: {"description": "A mutation sent over GET.", **_ERROR_BODY},
    },
}
_POST_DOC: dict[str, Any] = {
    "operation_id": "graphqlPost",
    "summary": "Run a GraphQL query",
    "response_class": Response,
    "responses": {
        200: {"description": "The result.", "content": {"application/json": {"schema": _RESULT}}},
        415: {"description": "The body is not JSON (or multipart).", **_ERROR_BODY},
    },
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["query"],
                        "properties": {
                            "query": {"type": "string"},
                            "variables": {"type": ["object", "null"]},
                            "operationName": {"type": ["string", "null"]},
                            "extensions": {"type": ["object", "null"]},
                        },
                    }
                }
            },
        }
    },
}


def graphql_router(settings: Settings, registry: CollectorRegistry) -> RiffleGraphQLRouter:
    """The router serving ``POST``/``GET /graphql`` and its websocket for one app."""
    return RiffleGraphQLRouter(
        build_schema(registry),
        path="/graphql",
        graphql_ide="graphiql" if settings.environment == "development" else None,
        tags=["graphql"],
    )
