"""What every notification channel shares: the channel protocol, its errors, retries with
backoff and an HTTP POST (undelivered notifications are kept by :mod:`sinks.redis.undelivered`).

A channel's :meth:`Channel.send` makes one attempt to deliver one notification and
raises :class:`ChannelError` when it fails (``retryable`` when another attempt may
help: timeouts, refused connections, 408, 429, 5xx, SMTP 4xx). :func:`deliver`
retries with exponential backoff and jitter, then records a dead letter.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Protocol

import structlog
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from riffle.config.errors import RiffleError
from riffle.operators.notify.groups import Notification

log = structlog.get_logger(__name__)


class ChannelError(RiffleError):
    """A delivery attempt failed; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(Protocol):
    """One way of delivering notifications (webhook, Slack, email, Alertmanager)."""

    kind: str
    attempts: int
    backoff_s: float

    def send(self, note: Notification) -> None:
        """One attempt; raises :class:`ChannelError`."""


def http_post(url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> None:
    """POST ``body``; a 2xx answer returns, anything else raises :class:`ChannelError`.

    The caller checks that ``url`` is http or https.
    """
    request = urllib.request.Request(url, data=body, method="POST", headers=dict(headers))  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as reply:  # noqa: S310
            reply.read()
    except urllib.error.HTTPError as exc:
        retry = exc.code in (408, 429) or exc.code >= 500
        raise ChannelError(f"{url} answered {exc.code}", retry) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise ChannelError(f"{url} unreachable: {exc}", True) from exc
    except http.client.HTTPException as exc:  # a broken answer (bad status line, cut body)
        raise ChannelError(f"{url} answered badly: {exc!r}", True) from exc


def check_url(url: str, what: str) -> str:
    """``url`` when it is http or https; ``ValueError`` otherwise."""
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"a {what} URL is http:// or https://, not {url!r}")
    return url


def deliver(channel: Channel, note: Notification, *, max_wait_s: float = 30.0) -> str | None:
    """Send with retries; ``None`` when delivered, else the reason it was given up."""
    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, ChannelError) and e.retryable),
        wait=wait_exponential_jitter(multiplier=channel.backoff_s, max=max_wait_s),
        stop=stop_after_attempt(channel.attempts),
        reraise=True,
    )
    started = time.monotonic()
    try:
        for attempt in retrying:
            with attempt:
                channel.send(note)
    except ChannelError as exc:
        log.warning(
            "notification_undelivered",
            channel=channel.kind,
            dedup_key=note.dedup_key,
            reason=str(exc),
            seconds=round(time.monotonic() - started, 3),
        )
        return str(exc)
    return None
