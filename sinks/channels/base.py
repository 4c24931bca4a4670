"""What every delivery channel shares: the channel protocol, what it carries, its errors,
retries with backoff and an HTTP POST (undelivered notifications are kept by
:mod:`sinks.redis.undelivered`).

A channel carries two kinds of message: alert notifications
(:meth:`Channel.send`) and reports (:meth:`Channel.send_report`, a
:class:`ReportMessage` with a summary, figures, a link and attachments such as
the PDF). Each method makes one attempt and raises :class:`ChannelError` when
it fails (``retryable`` when another attempt may help: timeouts, refused
connections, 408, 429, 5xx, SMTP 4xx). A channel that cannot carry reports
(``carries_reports`` false: Alertmanager) refuses them, not retryable.
:func:`deliver` and :func:`deliver_report` retry with exponential backoff and
jitter and say why they gave up.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

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


@dataclass(frozen=True)
class Attachment:
    """A file sent with a report (the PDF, the HTML)."""

    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class ReportMessage:
    """One rendered report, as channels send it.

    ``text`` is the plain-text summary every channel can show; ``html`` the
    same as an HTML page (the email body); ``figures`` the numbers as data (the
    webhook's body); ``link`` where the report's dashboard can be opened over
    its period (a share link; ``None`` when the report has no dashboard).
    ``dedup_key`` is stable across retries of the same run and channel.
    """

    dedup_key: str
    report: str
    tenant: str
    title: str
    period_start: int
    period_end: int
    text: str
    html: str
    figures: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    attachments: tuple[Attachment, ...] = ()


class Channel(Protocol):
    """One way of delivering notifications and reports (webhook, Slack, email, Alertmanager)."""

    kind: str
    attempts: int
    backoff_s: float
    carries_reports: bool

    def send(self, note: Notification) -> None:
        """One attempt; raises :class:`ChannelError`."""

    def send_report(self, report: ReportMessage) -> None:
        """One attempt; raises :class:`ChannelError` (not retryable when the channel does
        not carry reports)."""


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
    reason, _ = _with_retries(channel, note.dedup_key, lambda: channel.send(note), max_wait_s)
    return reason


def deliver_report(
    channel: Channel, report: ReportMessage, *, max_wait_s: float = 30.0
) -> tuple[str | None, int]:
    """Send a report with retries: ``(None, attempts)`` when delivered, else the reason it
    was given up and the attempts made."""
    return _with_retries(channel, report.dedup_key, lambda: channel.send_report(report), max_wait_s)


def _with_retries(
    channel: Channel, key: str, send: Callable[[], None], max_wait_s: float
) -> tuple[str | None, int]:
    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, ChannelError) and e.retryable),
        wait=wait_exponential_jitter(multiplier=channel.backoff_s, max=max_wait_s),
        stop=stop_after_attempt(channel.attempts),
        reraise=True,
    )
    started = time.monotonic()
    tries = 0
    try:
        for attempt in retrying:
            with attempt:
                tries += 1
                send()
    except ChannelError as exc:
        log.warning(
            "notification_undelivered",
            channel=channel.kind,
            dedup_key=key,
            reason=str(exc),
            seconds=round(time.monotonic() - started, 3),
        )
        return str(exc), tries
    return None, tries
