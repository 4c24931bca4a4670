"""Dashboards of each tenant in the warehouse, every version kept.

Table :data:`sinks.warehouse.tables.DASHBOARDS` (either engine), keyed by
``(tenant, dashboard_id, version)``. A save adds the next version and never
rewrites one, so the history is the table; a deletion is a version marked
``deleted``. Saves are optimistic: the caller names the version it edited
and a save over any other current version is refused with
:class:`VersionConflictError`. The check and the write run under a per-dashboard
lock (``lock(name)``, a Redis lock in the API), so two saves of the same
version cannot both win.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import orjson

from riffle.config.dashboards import Dashboard
from riffle.sinks.errors import SinkError
from riffle.sinks.warehouse.base import Warehouse
from riffle.sinks.warehouse.query import Cmp, Select
from riffle.sinks.warehouse.tables import DASHBOARDS

Lock = Callable[[str], AbstractContextManager[Any]]


class VersionConflictError(SinkError):
    """A save named a version that is not the current one (someone saved in between)."""

    def __init__(self, dashboard_id: str, expected: int | None, current: int | None) -> None:
        super().__init__(
            f"dashboard {dashboard_id!r} is at version {current}, not {expected}: reload and retry"
        )
        self.current = current


@dataclass(frozen=True, slots=True)
class StoredDashboard:
    """One version of a dashboard as stored."""

    dashboard: Dashboard
    version: int
    author: str
    updated_at: int
    deleted: bool = False

    def summary(self) -> dict[str, Any]:
        """The listing fields: id, title, version, author, update time."""
        return {
            "id": self.dashboard.id,
            "title": self.dashboard.title,
            "version": self.version,
            "author": self.author,
            "updated_at": self.updated_at,
        }


class DashboardStore:
    """The ``dashboards`` table over a warehouse; ``lock`` serialises saves per dashboard."""

    def __init__(self, warehouse: Warehouse, lock: Lock) -> None:
        self.warehouse = warehouse
        self._lock = lock

    def current(self, tenant: str) -> list[StoredDashboard]:
        """The current version of every dashboard of ``tenant`` not deleted, by title."""
        rows = self.warehouse.select(
            Select(
                DASHBOARDS,
                where=(Cmp("tenant", "=", tenant),),
                latest_per=("dashboard_id",),
                latest_by=("version DESC",),
            )
        )
        found = [_stored(r) for r in rows if not r["deleted"]]
        return sorted(found, key=lambda d: (d.dashboard.title.lower(), d.dashboard.id))

    def get(
        self, tenant: str, dashboard_id: str, version: int | None = None
    ) -> StoredDashboard | None:
        """The current (or a given) version; ``None`` if absent or deleted (current only)."""
        where = [Cmp("tenant", "=", tenant), Cmp("dashboard_id", "=", dashboard_id)]
        if version is not None:
            where.append(Cmp("version", "=", version))
        rows = self.warehouse.select(
            Select(DASHBOARDS, where=tuple(where), order_by=("version DESC",), limit=1)
        )
        if not rows or (version is None and rows[0]["deleted"]):
            return None
        return _stored(rows[0])

    def versions(self, tenant: str, dashboard_id: str) -> list[dict[str, Any]]:
        """Every version's number, author, time and whether it deleted, newest first."""
        rows = self.warehouse.select(
            Select(
                DASHBOARDS,
                columns=("version", "author", "updated_at", "deleted", "title"),
                where=(Cmp("tenant", "=", tenant), Cmp("dashboard_id", "=", dashboard_id)),
                order_by=("version DESC",),
            )
        )
        return [dict(r) for r in rows]

    def save(
        self, tenant: str, dashboard: Dashboard, expected: int | None, author: str
    ) -> StoredDashboard:
        """Store ``dashboard`` as the version after ``expected`` (``None``: a new dashboard).

        Raises :class:`VersionConflictError` when the current version is not
        ``expected`` (a new dashboard whose id exists, an edit of a stale
        version). A deleted dashboard's id can be created again.
        """
        return self._write(tenant, dashboard, expected, author, deleted=False)

    def delete(self, tenant: str, dashboard_id: str, expected: int | None, author: str) -> None:
        """Mark the dashboard deleted as a new version; ``expected`` ``None`` skips the check."""
        current = self.get(tenant, dashboard_id)
        if current is None:
            raise VersionConflictError(dashboard_id, expected, None)
        self._write(
            tenant,
            current.dashboard,
            current.version if expected is None else expected,
            author,
            deleted=True,
        )

    def _write(
        self, tenant: str, dashboard: Dashboard, expected: int | None, author: str, *, deleted: bool
    ) -> StoredDashboard:
        with self._lock(f"dashboard:{tenant}:{dashboard.id}"):
            latest = self.warehouse.select(
                Select(
                    DASHBOARDS,
                    columns=("version", "deleted"),
                    where=(Cmp("tenant", "=", tenant), Cmp("dashboard_id", "=", dashboard.id)),
                    order_by=("version DESC",),
                    limit=1,
                )
            )
            top = latest[0]["version"] if latest else 0
            current = None if not latest or latest[0]["deleted"] else top
            if current != expected:
                raise VersionConflictError(dashboard.id, expected, current)
            stored = StoredDashboard(dashboard, top + 1, author, int(time.time() * 1000), deleted)
            self.warehouse.upsert(
                DASHBOARDS,
                [
                    {
                        "tenant": tenant,
                        "dashboard_id": dashboard.id,
                        "version": stored.version,
                        "title": dashboard.title,
                        "document": dashboard.model_dump_json(),
                        "deleted": deleted,
                        "author": author,
                        "updated_at": stored.updated_at,
                    }
                ],
            )
            return stored


def _stored(row: dict[str, Any]) -> StoredDashboard:
    return StoredDashboard(
        Dashboard.model_validate(orjson.loads(row["document"])),
        int(row["version"]),
        str(row["author"]),
        int(row["updated_at"]),
        bool(row["deleted"]),
    )
