"""Each tenant's live stream ``P:T:live``: its changed windows and alert transitions, in order.

A Redis STREAM, one entry per change, with one field that says what changed:

``w``
    a window the window writer wrote (partial, final or retracted):
    :func:`sinks.redis.windows.live_json`;
``a``
    an alert transition the alert writer accepted (a replayed one is not
    added again): :meth:`operators.alerts.AlertTransition.to_json`.

Trimmed to about :data:`LIVE_MAXLEN` entries (``XADD MAXLEN ~``). Every
window write sets its expiry to the hot retention; a transition that finds
the stream without one (none written within the retention) gives it
:data:`ALERT_ONLY_TTL_MS`. :mod:`api.live` reads it; an entry id is the
stream's resume point.
"""

from __future__ import annotations

LIVE_MAXLEN = 10_000
"""Entries each tenant's live stream keeps, about: the reach of a resume."""
WINDOW_FIELD = "w"
"""The field of a window entry."""
ALERT_FIELD = "a"
"""The field of an alert-transition entry."""
ALERT_ONLY_TTL_MS = 86_400_000
"""Expiry of a stream an alert transition created (a window write then sets the hot retention)."""


def live_key(prefix: str, tenant: str) -> str:
    """The STREAM of a tenant's changes."""
    return f"{prefix}:{tenant}:live"
