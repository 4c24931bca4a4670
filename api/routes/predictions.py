"""``/v1/predictions/{entity_type}/{entity_id}``: probabilities and the models' accuracy."""

from __future__ import annotations

from typing import Any

import redis
from fastapi import APIRouter

from riffle.api.deps import HotPredictions, Predictions, Spec, Tenant
from riffle.api.errors import ApiError
from riffle.api.params import Source

router = APIRouter(tags=["models"])


def model_summary(row: dict[str, Any]) -> dict[str, Any]:
    """A ``prediction_models`` row with the base rate and whether it beats the baseline."""
    learned = row["learned"]
    return {
        **row,
        "base_rate": row["positives"] / learned if learned else 0.0,
        "beats_baseline": bool(learned) and row["logloss"] < row["base_logloss"],
    }


@router.get(
    "/v1/predictions/{entity_type}/{entity_id}",
    operation_id="getPrediction",
    summary="An entity's predicted probabilities, with each model's online accuracy",
)
def get_prediction(
    entity_type: str,
    entity_id: str,
    spec: Spec,
    warm: Predictions,
    hot: HotPredictions,
    tenant: Tenant,
    source: Source = "auto",
) -> dict[str, Any]:
    """Every prediction of ``entity_type`` for one entity of the caller's tenant.

    404 ``unknown_entity_type`` when no prediction of the spec is about that
    entity type; 404 ``unknown_entity`` when no prediction has seen the entity
    (or its rows have expired from both stores).
    """
    names = [p.name for p in spec.predictions if p.entity == entity_type]
    if not names:
        known = ", ".join(sorted({p.entity for p in spec.predictions})) or "none configured"
        raise ApiError(
            404, "unknown_entity_type", f"no prediction about {entity_type!r} (known: {known})"
        )
    rows: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    used = "warehouse"
    if source in ("auto", "hot"):
        try:
            rows = hot.entity(tenant, entity_type, entity_id)
            models = hot.models(tenant, entity_type)
            used = "hot"
        except redis.RedisError:
            if source == "hot":
                raise
    if source == "warehouse" or (source == "auto" and not rows):
        rows = warm.entity(tenant, entity_type, entity_id)
        models = [m for m in warm.models(tenant) if m["entity_type"] == entity_type]
        used = "warehouse"
    rows = [r for r in rows if r["prediction"] in names]
    if not rows:
        raise ApiError(404, "unknown_entity", f"no prediction has seen {entity_type} {entity_id!r}")
    by_name = {m["prediction"]: model_summary(m) for m in models}
    return {
        "entity_type": entity_type,
        "entity_id": entity_id,
        "predictions": [{**r, "model": by_name.get(r["prediction"])} for r in rows],
        "source": used,
    }
