"""Provisioning: the dashboards of ``RIFFLE_DASHBOARDS_DIR`` stored for every tenant.

Run when the API starts (and by ``riffle dashboards provision``). A file's
dashboard is saved when the tenant has none of that id, or when the stored
current version was itself provisioned and the file changed; a version
saved by a person (the page, the API) is left as it is.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from riffle.config.dashboards import load_dashboards
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec
from riffle.sinks.warehouse.dashboards import DashboardStore

log = structlog.get_logger(__name__)

AUTHOR = "provisioning"


def provision_tenants(settings: Settings, spec: PipelineSpec) -> list[str]:
    """The tenants provisioned: the default tenant and every tenant the spec names."""
    return sorted({settings.default_tenant, *spec.tenants})


def provision(
    store: DashboardStore, settings: Settings, spec: PipelineSpec, tenants: Iterable[str]
) -> dict[str, int]:
    """Store the folder's dashboards for ``tenants``; ``{"saved": n, "kept": m}``.

    Raises :class:`~config.errors.SpecError` when a file is invalid.
    """
    if not settings.dashboards_dir.is_dir():
        return {"saved": 0, "kept": 0}
    dashboards = load_dashboards(settings.dashboards_dir, spec)
    saved = kept = 0
    for tenant in tenants:
        for dashboard in dashboards:
            current = store.get(tenant, dashboard.id)
            if current is None:
                versions = store.versions(tenant, dashboard.id)
                if versions:  # deleted on purpose: leave it deleted
                    kept += 1
                    continue
                store.save(tenant, dashboard, None, AUTHOR)
                saved += 1
            elif current.author == AUTHOR and current.dashboard != dashboard:
                store.save(tenant, dashboard, current.version, AUTHOR)
                saved += 1
            else:
                kept += 1
    log.info("dashboards_provisioned", saved=saved, kept=kept, folder=str(settings.dashboards_dir))
    return {"saved": saved, "kept": kept}
