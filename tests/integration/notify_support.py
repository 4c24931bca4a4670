"""Real peers for notification tests: an HTTP receiver on a free port, an SMTP server
(aiosmtpd), and a notifier running in a thread against the session's broker and Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from riffle.config.notifications import NotificationsSpec
from riffle.dataflows.notifier.feeds import KafkaFeed
from riffle.dataflows.notifier.run import build_channels
from riffle.dataflows.notifier.service import Notifier
from riffle.operators.alerts.transitions import AlertTransition
from riffle.sinks.channels.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER
from riffle.sinks.topics.alerts import AlertProducer
from riffle.stack import free_port

SECRET = b"s3cret-for-tests"


@dataclass
class Hit:
    """One request the receiver got."""

    path: str
    body: bytes
    headers: dict[str, str]
    at: float
    """Wall-clock seconds it arrived."""
    code: int = 200
    """The status it was answered with."""

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)

    @property
    def timestamp(self) -> str:
        return self.headers.get(TIMESTAMP_HEADER, "")

    @property
    def signature(self) -> str:
        return self.headers.get(SIGNATURE_HEADER, "")


@dataclass
class Receiver:
    """An HTTP server that records POSTs and answers with scripted status codes."""

    port: int = field(default_factory=free_port)
    received: list[Hit] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default: int = 200
    server: ThreadingHTTPServer | None = None

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                if len(body) < length:  # the sender died mid-request: nothing was delivered
                    self.close_connection = True
                    return
                code = receiver.script.pop(0) if receiver.script else receiver.default
                receiver.received.append(
                    Hit(self.path, body, dict(self.headers), time.time(), code)
                )
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Hit]:
        return [h for h in self.received if h.path == path]

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class Inbox:
    """aiosmtpd handler that keeps every message and refuses the first ``fail`` of them
    with ``reply`` (451: try again later; a 5xx reply is a permanent refusal)."""

    def __init__(self, fail: int = 0, reply: str = "451 try again later") -> None:
        self.messages: list[Any] = []
        self.fail = fail
        self.reply = reply
        self.attempts = 0

    async def handle_DATA(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Any, envelope: Any
    ) -> str:
        self.attempts += 1
        if self.fail:
            self.fail -= 1
            return self.reply
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@contextmanager
def smtp_server(inbox: Inbox) -> Iterator[int]:
    """A real SMTP server on a free port; yields the port."""
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


def transition(
    instance: str,
    to: str = "firing",
    frm: str = "pending",
    at: int = 300_000,
    *,
    rule: str = "views_high",
    severity: str = "warning",
    tenant: str = "t1",
    **labels: str,
) -> AlertTransition:
    """A transition as the alert stage makes it (labels carry the reserved ones)."""
    shown = {"alertname": rule, "severity": severity, "tenant": tenant, "metric": "views"}
    shown.update(labels)
    return AlertTransition(
        tenant,
        rule,
        "views",
        instance,
        tuple(sorted(shown.items())),
        severity,
        frm,
        to,
        at,
        500.0,
        at - 120_000 if to == "firing" else None,
        (("summary", f"{instance}: 500 views"),),
    )


@dataclass
class RunningNotifier:
    notifier: Notifier
    producer: AlertProducer
    stop: threading.Event
    thread: threading.Thread
    errors: list[BaseException]
    registry: CollectorRegistry

    def send(self, *items: AlertTransition) -> None:
        self.producer.send(list(items))


@contextmanager
def running_notifier(
    spec: NotificationsSpec,
    *,
    servers: str,
    topic: str,
    redis_url: str,
    prefix: str,
    environ: dict[str, str] | None = None,
) -> Iterator[RunningNotifier]:
    """A notifier over ``topic`` stepping in a thread until the block ends."""
    registry = CollectorRegistry()
    notifier = Notifier(
        spec,
        build_channels(spec, environ or {}),
        feed=KafkaFeed(servers, topic),
        redis_url=redis_url,
        prefix=prefix,
        lease_s=5,
        registry=registry,
    )
    notifier.start()
    stop = threading.Event()
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            while not stop.is_set():
                notifier.step(0.05)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield RunningNotifier(
            notifier, AlertProducer(servers, topic), stop, thread, errors, registry
        )
    finally:
        stop.set()
        thread.join(10)
        notifier.close()
    assert not errors, errors


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate``; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
