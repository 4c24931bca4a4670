"""Every channel kind, by the name a receiver uses for it in the spec's ``notifications:``.

A receiver (:class:`~config.notifications.ReceiverSpec`) has one optional field per
kind; :func:`build_receiver` builds a channel for each field that is set, with its
secrets read from the environment. :data:`BUILDERS` is the one list of kinds: the
contract tests (``tests/integration/test_channel_contract.py``) run against each,
and a unit test checks that it names exactly the receiver's fields.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from riffle.config.notifications import ReceiverSpec
from riffle.sinks.channels.alertmanager import AlertmanagerChannel
from riffle.sinks.channels.base import Channel
from riffle.sinks.channels.email import EmailChannel
from riffle.sinks.channels.slack import SlackChannel
from riffle.sinks.channels.webhook import WebhookChannel

Builder = Callable[[Any, Mapping[str, str]], Channel]
"""``(the kind's config model, environment) -> channel``; raises
:class:`~config.notifications.NotificationConfigError` naming a missing variable."""

BUILDERS: dict[str, Builder] = {
    WebhookChannel.kind: WebhookChannel.from_config,
    SlackChannel.kind: SlackChannel.from_config,
    EmailChannel.kind: EmailChannel.from_config,
    AlertmanagerChannel.kind: AlertmanagerChannel.from_config,
}


def build_receiver(receiver: ReceiverSpec, environ: Mapping[str, str]) -> list[Channel]:
    """The channels of one receiver, in :data:`BUILDERS` order."""
    return [
        build(config, environ)
        for kind, build in BUILDERS.items()
        if (config := getattr(receiver, kind)) is not None
    ]
