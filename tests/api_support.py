"""HTTP clients for API tests that carry a real API key of a tenant."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from fastapi.testclient import TestClient


def keyed_client(app: FastAPI, tenant: str, scopes: Sequence[str] = ("read",)) -> TestClient:
    """A client whose requests carry a freshly created key of ``tenant`` with ``scopes``."""
    key, _ = app.state.collect.keys.create(tenant, list(scopes))
    return TestClient(app, headers={"Authorization": f"Bearer {key}"})
