"""DataLoaders: each resolver batch of a request is one Redis pipeline.

``metrics { dimensionValues(dimension: "country") forecasts { … } }`` asks
for something per metric; without loaders that is one Redis round trip per
metric (N+1). Each loader collects the keys one tick of the executor asks
for and reads them all with one pipelined call of the store
(:meth:`~sinks.redis.windows.RedisWindowStore.list_series_many`,
:meth:`~sinks.redis.model_results.RedisModelStore.latest_forecasts_many`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from strawberry.dataloader import DataLoader

from riffle.operators.records import Dims
from riffle.sinks.redis.model_results import RedisModelStore

if TYPE_CHECKING:
    from riffle.api.deps import Services


class Loaders:
    """One request's loaders, all for the request's tenant."""

    def __init__(self, app: Services, hot_models: RedisModelStore, tenant: str) -> None:
        self._app = app
        self._hot_models = hot_models
        self._tenant = tenant
        self.series_index: DataLoader[str, dict[str, Dims]] = DataLoader(self._series_index)
        self.forecasts: DataLoader[str, list[dict[str, Any]]] = DataLoader(self._forecasts)

    async def _series_index(self, metrics: list[str]) -> list[dict[str, Dims]]:
        """Each stored metric's series index (id -> dims), one pipeline for the batch."""
        found = await asyncio.to_thread(
            self._app.hot.list_series_many, self._tenant, list(dict.fromkeys(metrics))
        )
        return [found[m] for m in metrics]

    async def _forecasts(self, metrics: list[str]) -> list[list[dict[str, Any]]]:
        """Each metric's newest forecasts in Redis, one pipeline for the batch."""
        found = await asyncio.to_thread(
            self._hot_models.latest_forecasts_many, self._tenant, list(dict.fromkeys(metrics))
        )
        return [found[m] for m in metrics]
