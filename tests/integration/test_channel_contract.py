"""The contract every delivery channel keeps, run against each kind in the registry.

Each kind is built from its spec config, as the notifier builds it, and pointed at
a real peer: an HTTP server for webhook, Slack and Alertmanager, aiosmtpd for email.
The contract :func:`sinks.channels.base.deliver` relies on:

* a peer that accepts gets the notification once, and ``deliver`` reports success;
* a transient refusal (HTTP 503, SMTP 451) is retried, then delivered;
* a permanent refusal (HTTP 400, SMTP 550) is not retried: one attempt, a reason;
* an unreachable peer is a retryable :class:`ChannelError`;
* a report (:class:`ReportMessage`) reaches the peer once with what the kind can carry
  (email: the PDF attached; webhook: the PDF and figures in the body; Slack: the
  summary and the link), or, for a kind that does not carry reports
  (``carries_reports`` false: Alertmanager), is refused without a try and not retried.

A kind registered in ``sinks/channels/registry.py`` without a peer here fails
``test_every_registered_kind_has_a_peer``.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from riffle.config.notifications import ReceiverSpec
from riffle.config.reports import REPORT_CHANNELS
from riffle.operators.notify.groups import GroupAlert, Notification
from riffle.sinks.channels.base import (
    Attachment,
    Channel,
    ChannelError,
    ReportMessage,
    deliver,
    deliver_report,
)
from riffle.sinks.channels.registry import BUILDERS, build_receiver
from tests.integration.notify_support import Inbox, Receiver, smtp_server

ENV = {"CONTRACT_SECRET": "contract-secret"}
NOTE = Notification(
    dedup_key="contract-1",
    receiver="r",
    tenant="t1",
    group_key="{}:{alertname=views_high}",
    group_labels={"alertname": "views_high"},
    alerts=(
        GroupAlert(
            "i1",
            "views_high",
            "warning",
            {"alertname": "views_high", "tenant": "t1", "severity": "warning"},
            {"summary": "500 views"},
            "firing",
            240_000,
            300_000,
            500.0,
            "transition-1",
        ),
    ),
    seq=0,
    made_at=1_700_000_000_000,
    repeat=False,
)


PDF = b"%PDF-1.4 a report\n"
REPORT = ReportMessage(
    dedup_key="report:daily@1:r:contract",
    report="daily",
    tenant="t1",
    title="Daily shop report",
    period_start=1_700_000_000_000,
    period_end=1_700_086_400_000,
    text="*page_views*: 1,234 (+5.0 %)",
    html="<html><body><h1>Daily shop report</h1></body></html>",
    figures={"metrics": [{"name": "page_views", "value": 1234.0}]},
    link="http://riffle.test/ui/shared#rfs_x",
    attachments=(Attachment("daily.pdf", "application/pdf", PDF),),
)


@dataclass
class Peer:
    """A real receiver for one kind: the config that reaches it, and its handles."""

    config: dict[str, Any]
    delivered: Callable[[], int]
    """How many notifications it accepted."""
    attempts: Callable[[], int]
    """How many deliveries were tried, accepted or not."""
    refuse: Callable[[int, bool], None]
    """``refuse(n, transient)``: refuse the next ``n`` attempts."""
    stop: Callable[[], None]
    last: Callable[[], Any]
    """What it received last (the JSON body, or the email message)."""


@contextmanager
def http_peer(config: Callable[[Receiver], dict[str, Any]]) -> Iterator[Peer]:
    receiver = Receiver().start()

    def refuse(n: int, transient: bool) -> None:
        receiver.script = [503 if transient else 400] * n

    try:
        yield Peer(
            config(receiver),
            lambda: sum(hit.code < 300 for hit in receiver.received),
            lambda: len(receiver.received),
            refuse,
            receiver.close,
            lambda: receiver.received[-1].json,
        )
    finally:
        receiver.close()


@contextmanager
def smtp_peer() -> Iterator[Peer]:
    inbox = Inbox()
    with smtp_server(inbox) as port:

        def refuse(n: int, transient: bool) -> None:
            inbox.fail, inbox.reply = n, "451 try again later" if transient else "550 no"

        yield Peer(
            {"host": "127.0.0.1", "port": port, "from": "riffle@x.test", "to": ["ops@x.test"]},
            lambda: len(inbox.messages),
            lambda: inbox.attempts,
            refuse,
            lambda: None,
            lambda: inbox.messages[-1],
        )


PEERS: dict[str, Callable[[], AbstractContextManager[Peer]]] = {
    "webhook": lambda: http_peer(
        lambda r: {"url": r.url("/hook"), "secret_env": "CONTRACT_SECRET"}
    ),
    "slack": lambda: http_peer(lambda r: {"url": r.url("/slack")}),
    "alertmanager": lambda: http_peer(lambda r: {"url": r.url("")}),
    "email": smtp_peer,
}


def channel(kind: str, config: dict[str, Any], **delivery: Any) -> Channel:
    spec = ReceiverSpec.model_validate(
        {"name": "r", kind: {"backoff": "10ms", "max_attempts": 3, **config, **delivery}}
    )
    [built] = build_receiver(spec, ENV)
    assert built.kind == kind
    return built


@pytest.fixture(params=sorted(BUILDERS))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def peer(kind: str) -> Iterator[Peer]:
    with PEERS[kind]() as running:
        yield running


def test_every_registered_kind_has_a_peer() -> None:
    assert set(PEERS) == set(BUILDERS)


def test_an_accepting_peer_gets_the_notification_once(kind: str, peer: Peer) -> None:
    assert deliver(channel(kind, peer.config), NOTE) is None
    assert (peer.attempts(), peer.delivered()) == (1, 1)


def test_a_transient_refusal_is_retried_then_delivered(kind: str, peer: Peer) -> None:
    peer.refuse(2, True)
    assert deliver(channel(kind, peer.config), NOTE) is None
    assert (peer.attempts(), peer.delivered()) == (3, 1)


def test_a_permanent_refusal_is_given_up_after_one_attempt(kind: str, peer: Peer) -> None:
    peer.refuse(3, False)
    reason = deliver(channel(kind, peer.config), NOTE)
    assert reason
    assert (peer.attempts(), peer.delivered()) == (1, 0)


def test_an_unreachable_peer_is_a_retryable_error(kind: str) -> None:
    with PEERS[kind]() as gone:
        config = gone.config
        gone.stop()
    with pytest.raises(ChannelError) as caught:
        channel(kind, config, timeout="2s").send(NOTE)
    assert caught.value.retryable


def test_a_report_reaches_the_peer_with_what_the_kind_carries(kind: str, peer: Peer) -> None:
    built = channel(kind, peer.config)
    assert built.carries_reports == (kind in REPORT_CHANNELS)  # what the spec checks against
    reason, attempts = deliver_report(built, REPORT)
    if not built.carries_reports:
        assert reason is not None and "not reports" in reason
        assert (attempts, peer.attempts(), peer.delivered()) == (1, 0, 0)
        return
    assert (reason, attempts) == (None, 1)
    assert (peer.attempts(), peer.delivered()) == (1, 1)
    got = peer.last()
    if kind == "email":
        assert got["Subject"] == REPORT.title
        [pdf] = [p for p in got.walk() if p.get_content_type() == "application/pdf"]
        assert (pdf.get_filename(), pdf.get_payload(decode=True)) == ("daily.pdf", PDF)
        html = next(p for p in got.walk() if p.get_content_type() == "text/html")
        assert "<h1>Daily shop report</h1>" in str(html.get_payload(decode=True), "utf-8")
    elif kind == "webhook":
        assert (got["kind"], got["figures"], got["link"]) == ("report", REPORT.figures, REPORT.link)
        [attached] = got["attachments"]
        assert base64.b64decode(attached["data_base64"]) == PDF
    else:  # slack: an incoming webhook takes no files: the summary and the link
        assert REPORT.text in orjson.dumps(got).decode()
        assert REPORT.link in orjson.dumps(got).decode()


def test_a_report_refusal_is_retried_like_a_notification(kind: str, peer: Peer) -> None:
    built = channel(kind, peer.config)
    if not built.carries_reports:
        pytest.skip(f"{kind} carries no reports")
    peer.refuse(2, True)
    assert deliver_report(built, REPORT) == (None, 3)
    assert (peer.attempts(), peer.delivered()) == (3, 1)
