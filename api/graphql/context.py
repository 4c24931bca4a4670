"""What every resolver of one GraphQL request gets: the caller, the app's stores, the loaders.

The context is built by a FastAPI dependency over the same aliases the REST
routes use (:mod:`api.deps`): a request without a key is ``401``, a key
without ``read`` is ``403``, before any GraphQL runs, and every resolver
reads the key's tenant only. Loaders (:mod:`api.graphql.loaders`) live one
request long, so a batch never mixes tenants or requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from graphql import GraphQLError
from strawberry.fastapi import BaseContext

from riffle.api.auth import CollectDep, Principal
from riffle.api.collect import Collect
from riffle.api.deps import (
    Acks,
    AlertHistory,
    AlertStates,
    HotModelResults,
    HotPredictions,
    ModelResults,
    Predictions,
    ReadKey,
    Services,
    ServicesDep,
)
from riffle.api.errors import ApiError
from riffle.api.graphql.loaders import Loaders
from riffle.sinks.errors import SinkError
from riffle.sinks.redis.acks import AckStore
from riffle.sinks.redis.alerts import RedisAlerts
from riffle.sinks.redis.model_results import RedisModelStore
from riffle.sinks.redis.predictions import RedisPredictionStore
from riffle.sinks.warehouse.alert_history import WarehouseAlerts
from riffle.sinks.warehouse.model_results import ModelStore
from riffle.sinks.warehouse.predictions import PredictionStore

T = TypeVar("T")


class RiffleGraphQLError(GraphQLError):
    """An error a client may see: the REST API's code and status ride in ``extensions``."""

    def __init__(self, message: str, code: str, status: int) -> None:
        super().__init__(message, extensions={"code": code, "status": status})


class GraphContext(BaseContext):
    """The caller, the app's services and stores, and this request's loaders."""

    def __init__(
        self,
        *,
        caller: Principal,
        app: Services,
        collect: Collect,
        acks: AckStore,
        alert_states: RedisAlerts,
        alert_history: WarehouseAlerts,
        model_results: ModelStore,
        hot_model_results: RedisModelStore,
        predictions: PredictionStore,
        hot_predictions: RedisPredictionStore,
    ) -> None:
        super().__init__()
        self.caller = caller
        self.app = app
        self.collect = collect
        self.acks = acks
        self.alert_states = alert_states
        self.alert_history = alert_history
        self.model_results = model_results
        self.hot_model_results = hot_model_results
        self.predictions = predictions
        self.hot_predictions = hot_predictions
        self.loaders = Loaders(app, hot_model_results, caller.tenant)

    @property
    def tenant(self) -> str:
        """The tenant of the request's key: the only one any resolver reads."""
        return self.caller.tenant


async def context(
    caller: ReadKey,
    app: ServicesDep,
    collect: CollectDep,
    acks: Acks,
    alert_states: AlertStates,
    alert_history: AlertHistory,
    model_results: ModelResults,
    hot_model_results: HotModelResults,
    predictions: Predictions,
    hot_predictions: HotPredictions,
) -> GraphContext:
    """The context of one GraphQL request (a FastAPI dependency: auth runs first)."""
    return GraphContext(
        caller=caller,
        app=app,
        collect=collect,
        acks=acks,
        alert_states=alert_states,
        alert_history=alert_history,
        model_results=model_results,
        hot_model_results=hot_model_results,
        predictions=predictions,
        hot_predictions=hot_predictions,
    )


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store or engine call off the event loop; its refusals become client errors.

    ``ApiError`` keeps its code and status in the error's extensions; a store
    that cannot be reached is ``store_unavailable`` (503), as in REST.
    """
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except ApiError as exc:
        raise RiffleGraphQLError(exc.message, exc.code, exc.status) from None
    except SinkError as exc:
        raise RiffleGraphQLError(str(exc), "store_unavailable", 503) from None


async def awaited(coroutine: Any) -> Any:
    """Await a REST route coroutine, mapping its refusals as :func:`blocking` does."""
    try:
        return await coroutine
    except ApiError as exc:
        raise RiffleGraphQLError(exc.message, exc.code, exc.status) from None
    except SinkError as exc:
        raise RiffleGraphQLError(str(exc), "store_unavailable", 503) from None
