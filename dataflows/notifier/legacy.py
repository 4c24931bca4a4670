"""The deprecated single-webhook configuration (``RIFFLE_ALERT_WEBHOOK_URL`` and
``RIFFLE_ALERT_WEBHOOK_SECRET``), read as a receiver when the spec has no
``notifications:`` section."""

from __future__ import annotations

import structlog

from riffle.config.notifications import NotificationsSpec, ReceiverSpec, RootRoute, WebhookConfig
from riffle.config.settings import Settings
from riffle.config.spec import PipelineSpec

log = structlog.get_logger(__name__)
LEGACY_SECRET_ENV = "RIFFLE_ALERT_WEBHOOK_SECRET"  # noqa: S105 - a variable name


def notifications_for(spec: PipelineSpec, settings: Settings) -> NotificationsSpec | None:
    """The spec's ``notifications:``; else, deprecated, a receiver made of
    ``RIFFLE_ALERT_WEBHOOK_URL``/``_SECRET`` (one group per alert, no wait); else None."""
    if spec.notifications is not None:
        return spec.notifications
    if not settings.alert_webhook_url:
        return None
    log.warning(
        "deprecated_setting",
        setting="RIFFLE_ALERT_WEBHOOK_URL",
        use="a notifications: section in the spec (docs/alerts.md)",
    )
    hook = WebhookConfig(url=settings.alert_webhook_url, secret_env=LEGACY_SECRET_ENV)
    return NotificationsSpec(
        receivers=[ReceiverSpec(name="webhook", webhook=hook)],
        route=RootRoute.model_validate(
            {"receiver": "webhook", "group_by": ["..."], "group_wait": "0s", "group_interval": "1m"}
        ),
    )
