"""``/v1/imports``: start a run with the admin scope, follow it, and the 4xx of bad requests."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from riffle.api.app import create_app
from riffle.config.settings import Settings
from riffle.sinks.redis.imports import FINISHED
from tests.api_support import keyed_client

CSV = (
    "order_id,created_at,country,total,currency\n"
    "o-1,2026-01-05T10:00:12Z,DE,49.90,EUR\n"
    "o-2,2026-01-05T10:00:40Z,US,oops,USD\n"
    "o-3,2026-01-05T10:01:10Z,FR,17.50,EUR\n"
)
MAPPING: dict[str, Any] = {
    "type": "purchase",
    "event_id": "order_id",
    "ts": "created_at",
    "props": {"amount": {"column": "total", "type": "float"}, "currency": "currency"},
    "context": {"country": "country"},
}


def wait_finished(http: TestClient, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body: dict[str, Any] = http.get(f"/v1/imports/{run_id}").json()
        if body["status"] in FINISHED:
            return body
        time.sleep(0.5)
    raise AssertionError(f"import {run_id} did not finish: {body}")


def test_an_import_started_through_the_api_runs_and_is_recorded(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "orders.csv").write_text(CSV)
    settings = settings_factory(import_allowed_dir=inbox, import_state_dir=tmp_path / "state")
    app = create_app(settings)
    admin = keyed_client(app, "acme", ["admin"])
    started = admin.post("/v1/imports", json={"source": "orders.csv", "mapping": MAPPING})
    assert started.status_code == 202, started.text
    run = started.json()
    assert run["status"] == "queued" and run["tenant"] == "acme"

    done = wait_finished(admin, run["id"])
    assert done["status"] == "rejected", done
    assert (done["rows_read"], done["accepted"], done["rejected"]) == (3, 2, 1)
    assert done["rejected_by_reason"] == {"import total": 1}
    (problem,) = done["problems"]
    assert problem["source"] == f"import:{inbox / 'orders.csv'}@2"
    assert problem["path"] == "total" and "'oops' for amount" in problem["reason"]
    assert [r["id"] for r in admin.get("/v1/imports").json()["imports"]] == [run["id"]]

    again = admin.post("/v1/imports", json={"source": "orders.csv", "mapping": MAPPING})
    assert wait_finished(admin, again.json()["id"])["status"] == "unchanged"
    # The windows are the tenant's.
    reader = keyed_client(app, "acme", ["read"])
    window = {"start": "2026-01-05T10:00:00Z", "end": "2026-01-05T10:05:00Z"}
    series = reader.get("/v1/metrics/revenue/series", params=window)
    assert series.status_code == 200, series.text
    points = [p for s in series.json()["series"] for p in s["points"]]
    assert sum(p["value"] for p in points) == 49.90 + 17.50
    assert all(p["is_final"] for p in points)


def test_bad_import_requests_get_clear_4xx(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(import_allowed_dir=tmp_path / "inbox")
    app = create_app(settings)
    admin = keyed_client(app, "acme", ["admin"])
    bad_mapping = admin.post(
        "/v1/imports", json={"source": "x.csv", "mapping": {"ts": {"zone": "Nowhere/City"}}}
    )
    assert bad_mapping.status_code == 422
    assert "unknown time zone 'Nowhere/City'" in bad_mapping.json()["error"]["message"]
    outside = admin.post("/v1/imports", json={"source": "../../etc/passwd", "type": "signup"})
    assert outside.status_code == 403
    unknown = admin.post("/v1/imports", json={"source": "gs://b/x", "type": "nope"})
    assert unknown.status_code == 422
    assert (
        admin.post("/v1/imports", json={"source": "gs://b/x", "lateness": "soon"}).status_code
        == 422
    )
    assert admin.get("/v1/imports/none").status_code == 404
    reader = keyed_client(app, "acme", ["read"])
    assert reader.get("/v1/imports").status_code == 403
    assert reader.post("/v1/imports", json={"source": "gs://b/x"}).status_code == 403
