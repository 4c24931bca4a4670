"""A server-sent-events reader over a real HTTP connection (httpx), for stream tests."""

from __future__ import annotations

import queue
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Event:
    """One SSE event: its type, data (parsed JSON) and id (``None`` when it had none)."""

    event: str
    data: Any
    id: str | None


class SseReader:
    """Reads one SSE response in a thread; :meth:`next` waits for the next event."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.last_id: str | None = None
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        kind, data, event_id = "message", "", None
        try:
            for line in self.response.iter_lines():
                if line == "":
                    if data:
                        self._events.put(Event(kind, orjson.loads(data), event_id))
                    kind, data, event_id = "message", "", None
                elif line.startswith(":"):
                    continue
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        kind = value
                    elif name == "data":
                        data += value
                    elif name == "id":
                        event_id = value
        except Exception:  # the test closed the connection under the reader
            pass
        self._events.put(None)

    def next(self, timeout: float = 10.0) -> Event:
        """The next event (raises ``queue.Empty`` after ``timeout`` seconds)."""
        event = self._events.get(timeout=timeout)
        if event is None:
            raise EOFError("the stream ended")
        if event.id is not None:
            self.last_id = event.id
        return event

    def windows(self, n: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The data of the next ``n`` ``window`` events (other events skipped)."""
        out: list[dict[str, Any]] = []
        while len(out) < n:
            event = self.next(timeout)
            if event.event == "window":
                out.append(event.data)
        return out


@contextmanager
def sse(url: str, headers: dict[str, str], timeout: float = 30.0) -> Iterator[SseReader]:
    """An open SSE connection to ``url`` for the block."""
    with (
        httpx.Client(timeout=httpx.Timeout(timeout, read=None)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        if response.status_code != 200:
            response.read()
            raise AssertionError(f"{url}: {response.status_code} {response.text}")
        try:
            yield SseReader(response)
        finally:
            # Closing the response does not interrupt the reader thread's blocking
            # read; shutting the socket down does, and the server sees the disconnect.
            sock = response.extensions["network_stream"].get_extra_info("socket")
            sock.shutdown(socket.SHUT_RDWR)
