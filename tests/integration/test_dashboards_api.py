"""``/v1/dashboards`` and ``/v1/shared`` against real Redis and DuckDB: versions and
optimistic saves, validation against the spec, provisioning, share tokens' scope,
expiry and revocation, CSV export, and the keys' scopes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from riffle.api.share import sign
from riffle.config.settings import Settings
from riffle.operators.records import WindowResult
from riffle.sinks.redis.shares import Share
from tests.integration.ingest_support import Served, serve
from tests.integration.test_live_stream import SPEC

pytestmark = pytest.mark.integration

BOARD = """
id: views
title: Views
variables: [{name: country}]
panels:
  - {id: total, title: Total views, type: stat, query: {metric: views}}
  - {id: top, title: Top countries, type: topk, query: {kind: top, metric: views, by: [country]}}
"""


@pytest.fixture
def served(settings_factory: Callable[..., Settings], tmp_path: Path) -> Iterator[Served]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        SPEC
        + "\n  - name: clicks\n    events: [page_view]\n    aggregation: count\n    window: 1m\n"
    )
    boards = tmp_path / "dashboards"
    boards.mkdir()
    (boards / "views.yaml").write_text(BOARD)
    with serve(settings_factory(spec=spec, dashboards_dir=boards)) as running:
        yield running


def doc(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "mine",
        "title": "Mine",
        "panels": [{"id": "a", "title": "A", "query": {"metric": "views", "by": ["country"]}}],
    }
    return {**base, **changes}


def client(served: Served, scopes: list[str], tenant: str = "demo") -> httpx.Client:
    key = served.key(tenant, scopes)
    return httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_crud_versions_and_optimistic_saves(served: Served) -> None:
    admin = client(served, ["read", "admin"])
    created = admin.post("/v1/dashboards", json=doc())
    assert created.status_code == 201, created.text
    assert (created.json()["version"], created.headers["etag"]) == (1, '"1"')
    assert admin.post("/v1/dashboards", json=doc()).status_code == 409
    assert admin.put("/v1/dashboards/mine", json=doc(title="B")).status_code == 428
    saved = admin.put("/v1/dashboards/mine", json=doc(title="B"), headers={"If-Match": '"1"'})
    assert (saved.status_code, saved.json()["version"]) == (200, 2)
    stale = admin.put("/v1/dashboards/mine", json=doc(title="C"), headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    assert admin.put("/v1/dashboards/mine?version=1", json=doc(title="C")).status_code == 409
    assert admin.get("/v1/dashboards/mine").json()["dashboard"]["title"] == "B"
    assert admin.get("/v1/dashboards/mine?version=1").json()["dashboard"]["title"] == "Mine"
    huge = "3752978024682475943503391440764928"  # past INT64: refused, not a store error
    assert admin.get(f"/v1/dashboards/mine?version={huge}").status_code == 422
    past = admin.put("/v1/dashboards/mine", json=doc(title="D"), headers={"If-Match": huge})
    assert past.json()["error"]["code"] == "invalid_if_match"
    versions = admin.get("/v1/dashboards/mine/versions").json()["versions"]
    assert [v["version"] for v in versions] == [2, 1]
    exported = admin.get("/v1/dashboards/mine/export")
    assert (
        exported.json()["title"] == "B" and "attachment" in exported.headers["content-disposition"]
    )
    assert admin.delete("/v1/dashboards/mine", headers={"If-Match": '"1"'}).status_code == 412
    assert admin.delete("/v1/dashboards/mine").status_code == 204
    assert admin.get("/v1/dashboards/mine").status_code == 404
    ids = [d["id"] for d in admin.get("/v1/dashboards").json()["dashboards"]]
    assert ids == ["views"]  # provisioned from the folder; the deleted one is gone


def test_documents_must_fit_the_spec_and_scopes_apply(served: Served) -> None:
    admin = client(served, ["read", "admin"])
    bad = doc(panels=[{"id": "a", "title": "A", "query": {"metric": "nope"}}])
    response = admin.post("/v1/dashboards", json=bad)
    assert response.status_code == 422 and "unknown metric 'nope'" in response.text
    bad = doc(panels=[{"id": "a", "title": "A", "query": {"metric": "views", "by": ["city"]}}])
    assert admin.post("/v1/dashboards", json=bad).status_code == 422
    assert admin.post("/v1/dashboards", json={**doc(), "extra": 1}).status_code == 422
    reader = client(served, ["read"])
    assert reader.get("/v1/dashboards/views").status_code == 200
    assert reader.post("/v1/dashboards", json=doc()).status_code == 403
    other = client(served, ["read", "admin"], tenant="other")
    assert (
        other.get("/v1/dashboards/views").status_code == 404
        or other.get("/v1/dashboards/views").json()["author"] == "provisioning"
    )
    assert httpx.get(f"{served.url}/v1/dashboards").status_code == 401


def test_share_token_reads_only_its_dashboard_until_revoked(served: Served) -> None:
    admin = client(served, ["read", "admin"])
    hot = served.app.state.services.hot
    start = (int(time.time() * 1000) // 60_000) * 60_000 - 120_000
    hot.write(
        [
            WindowResult(
                "demo",
                "views",
                (("country", c), ("device", "m")),
                start,
                start + 10_000,
                n,
                float(n),
                None,
                None,
                float(n),
                True,
                1,
            )
            for c, n in (("de", 5), ("fr", 3))
        ]
    )
    made = admin.post("/v1/dashboards/views/shares", json={"expires_in": "1h"})
    assert made.status_code == 201, made.text
    token = made.json()["token"]
    assert made.json()["url"].endswith(f"/ui/shared#{token}")
    assert "rfl_" not in made.json()["url"]
    shared = httpx.Client(base_url=served.url, headers={"X-Share-Token": token}, timeout=30)
    board = shared.get("/v1/shared/dashboard").json()
    assert board["dashboard"]["id"] == "views" and "views" in board["metrics"]
    top = shared.get("/v1/shared/metrics/views/top", params={"by": "country"})
    assert top.status_code == 200, top.text
    assert {i["country"]: i["value"] for i in top.json()["items"]} == {"de": 5.0, "fr": 3.0}
    assert shared.get("/v1/shared/metrics/clicks/query").status_code == 403
    alerts = shared.get("/v1/shared/stream", params={"sub": '{"kind": "alerts"}'})
    assert alerts.status_code == 403
    assert shared.get("/v1/metrics/views/query").status_code == 401  # not an API key
    assert shared.get("/v1/dashboards").status_code == 401
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert (
        httpx.get(
            f"{served.url}/v1/shared/dashboard", headers={"X-Share-Token": forged}
        ).status_code
        == 401
    )
    settings = served.settings
    expired = Share("x", "demo", "views", "-1h", "now", int(time.time() * 1000) - 1, "t", 0)
    old = sign(settings.share_secret.get_secret_value(), expired)
    response = httpx.get(f"{served.url}/v1/shared/dashboard", headers={"X-Share-Token": old})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "expired_share_token")
    other_tenant = Share(made.json()["share"]["id"], "other", "views", "-1h", "now",
                         int(time.time() * 1000) + 60_000, "t", 0)  # fmt: skip
    moved = sign(settings.share_secret.get_secret_value(), other_tenant)
    assert (
        httpx.get(f"{served.url}/v1/shared/dashboard", headers={"X-Share-Token": moved}).status_code
        == 401
    )
    listed = admin.get("/v1/dashboards/views/shares").json()["shares"]
    assert [s["id"] for s in listed] == [made.json()["share"]["id"]]
    assert admin.delete(f"/v1/dashboards/views/shares/{listed[0]['id']}").status_code == 204
    response = shared.get("/v1/shared/dashboard")
    assert (response.status_code, response.json()["error"]["code"]) == (401, "revoked_share_token")


def test_panel_csv_export_and_page_headers(served: Served) -> None:
    reader = client(served, ["read"])
    hot = served.app.state.services.hot
    start = (int(time.time() * 1000) // 60_000) * 60_000 - 120_000
    hot.write([WindowResult("demo", "views", (("country", "de"), ("device", "m")), start,
                            start + 10_000, 4, 4.0, None, None, 4.0, True, 1)])  # fmt: skip
    csv = reader.get("/v1/dashboards/views/panels/top/export.csv")
    assert csv.status_code == 200, csv.text
    assert csv.text.splitlines()[:2] == ["country,value,count,previous,delta", "de,4.0,4,,"]
    assert reader.get("/v1/dashboards/views/panels/nope/export.csv").status_code == 404
    assert reader.get("/v1/dashboards/views/panels/top/export.gif").status_code == 404
    page = httpx.get(f"{served.url}/ui/")
    assert page.status_code == 200 and "echarts" in page.text
    assert "frame-ancestors 'self'" in page.headers["content-security-policy"]
    embed = httpx.get(f"{served.url}/ui/shared")
    assert "frame-ancestors *" in embed.headers["content-security-policy"]
    vendored = httpx.get(f"{served.url}/ui/static/vendor/echarts-6.1.0/echarts.min.js")
    assert vendored.status_code == 200 and len(vendored.content) > 1_000_000
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'riffle_ui_page_loads_total{page="dashboard"} 1.0' in metrics
