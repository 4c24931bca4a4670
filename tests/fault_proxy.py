"""A fault-injecting HTTP proxy for tests: forwards to a real server, fails on request.

Put it in front of the BigQuery emulator to see what the client and the
writer do when the service throttles (429) or fails (503): requests are
forwarded untouched, unless a fault is armed for their path. Two kinds of
fault, as a real service shows them:

* ``reject``: answer the status at once, the request never reaches the
  server (throttling, an overloaded front end);
* ``lose``: forward the request (the server applies it), then answer the
  status instead of the server's reply (the answer was lost: a retry
  writes the same rows again);
* ``hold``: keep the request for ``delay`` seconds, then forward it and
  relay the reply (a slow write: the client can die while it is in flight,
  and the write still lands). :attr:`FaultProxy.holding` is set meanwhile.

Error bodies are shaped like BigQuery's (``error.errors[].reason``), so the
official client classifies them as it would in production.
"""

from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

import orjson

_REASONS = {429: "rateLimitExceeded", 500: "internalError", 502: "badGateway", 503: "backendError"}
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Fault:
    """An armed fault: ``kind`` with ``status`` for requests whose path contains ``path``,
    until ``until`` (monotonic seconds) or for ``count`` more requests, whichever ends first."""

    kind: Literal["reject", "lose", "hold"]
    status: int
    path: str
    until: float
    count: int | None
    delay: float = 0.0


@dataclass
class FaultProxy:
    """A running proxy to ``target`` (``http://host:port``); ``endpoint`` is its own URL."""

    target: str
    server: ThreadingHTTPServer | None = None
    faults: list[Fault] = field(default_factory=list)
    faulted: list[tuple[float, str, int]] = field(default_factory=list)
    """(monotonic time, path, status) of every request that got a fault."""
    forwarded: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    holding: threading.Event = field(default_factory=threading.Event)
    """Set while a ``hold`` fault keeps a request."""

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def arm(
        self,
        kind: Literal["reject", "lose", "hold"],
        status: int = 200,
        *,
        path: str = "",
        seconds: float = 3600.0,
        count: int | None = None,
        delay: float = 0.0,
    ) -> None:
        """Fail (or, ``hold``, delay by ``delay``) matching requests with ``status`` for
        ``seconds`` or ``count`` requests."""
        with self.lock:
            self.faults.append(Fault(kind, status, path, time.monotonic() + seconds, count, delay))

    def disarm(self) -> None:
        """Forward everything again."""
        with self.lock:
            self.faults.clear()

    def armed(self) -> bool:
        """Whether a fault is still active."""
        with self.lock:
            self._expire()
            return bool(self.faults)

    def take(self, path: str) -> Fault | None:
        """The fault a request for ``path`` gets (used up by one request), if any."""
        with self.lock:
            self._expire()
            for fault in self.faults:
                if fault.path in path:
                    if fault.count is not None:
                        fault.count -= 1
                    return fault
            return None

    def _expire(self) -> None:
        now = time.monotonic()
        self.faults = [f for f in self.faults if f.until > now and (f.count is None or f.count > 0)]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def start_proxy(target: str) -> FaultProxy:
    """A proxy to ``target`` on a free loopback port, serving from a background thread."""
    proxy = FaultProxy(target)
    upstream = urlsplit(target)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's session expects

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test asserts on :attr:`FaultProxy.faulted` instead."""

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy.take(self.path)
            if fault is not None and fault.kind == "hold":
                proxy.holding.set()
                time.sleep(fault.delay)
                proxy.holding.clear()
                fault = None
            if fault is None or fault.kind == "lose":
                conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                reply = conn.getresponse()
                status, reply_headers, payload = reply.status, reply.getheaders(), reply.read()
                conn.close()
                with proxy.lock:
                    proxy.forwarded += 1
            if fault is not None:
                with proxy.lock:
                    proxy.faulted.append((time.monotonic(), self.path, fault.status))
                reason = _REASONS.get(fault.status, "backendError")
                status, reply_headers = fault.status, [("Content-Type", "application/json")]
                payload = orjson.dumps(
                    {
                        "error": {
                            "code": fault.status,
                            "message": f"injected {fault.kind} {fault.status}",
                            "errors": [{"reason": reason, "message": "injected"}],
                        }
                    }
                )
            try:
                self.send_response(status)
                for name, value in reply_headers:
                    if name.lower() not in _HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client died meanwhile (a kill -9 test)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _relay  # noqa: N815 - http.server names

    proxy.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.server.daemon_threads = True
    threading.Thread(target=proxy.server.serve_forever, name="fault-proxy", daemon=True).start()
    return proxy
