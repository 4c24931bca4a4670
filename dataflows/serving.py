"""The flow process's HTTP endpoint: Prometheus metrics, and its recovery progress for its peers.

``GET /recovery/progress`` answers the progress rows of the recovery
partitions in this process's directory (:func:`dataflows.recovery.progress_rows`;
empty lists without recovery or partitions): before a cluster starts, each
process asks the others for theirs to compute where the run resumes. Every
other path is the Prometheus exposition of the process's default registry.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from riffle.config.settings import Settings
from riffle.dataflows.recovery import progress_rows

PROGRESS_PATH = "/recovery/progress"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and peers' questions are not worth a log line each."""


def serve(host: str, port: int, recovery_dir: Path | None) -> None:
    """Serve this process's metrics and recovery progress on ``host:port`` from a
    daemon thread, for the life of the process."""
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == PROGRESS_PATH:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [orjson.dumps(progress_rows(recovery_dir))]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    family, _, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class Server(ThreadingWSGIServer):
        address_family = family  # an IPv6 host too, as prometheus_client's own server

    server = make_server(str(address[0]), port, app, Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()


def metrics_port(settings: Settings, process_id: int) -> int:
    """Where process ``process_id`` of the flow serves (``RIFFLE_METRICS_PORT``, plus the
    process id where processes share a host)."""
    return settings.metrics_port + (process_id if settings.metrics_port_per_process else 0)


def peer_progress_urls(settings: Settings, process_id: int, addresses: list[str]) -> list[str]:
    """The progress URLs of the cluster's other processes (their hosts in ``addresses``;
    none when metrics are off, since that is where they serve)."""
    if not settings.metrics_port:
        return []
    return [
        f"http://{address.rsplit(':', 1)[0]}:{metrics_port(settings, peer)}{PROGRESS_PATH}"
        for peer, address in enumerate(addresses)
        if peer != process_id
    ]
