"""Which BigQuery failures are worth a retry, and the scope that turns client failures into
sink errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from google.api_core import exceptions as gexc

from riffle.sinks.errors import SinkError, TransientSinkError

_TRANSIENT_HTTP = (
    gexc.TooManyRequests,
    gexc.InternalServerError,
    gexc.BadGateway,
    gexc.ServiceUnavailable,
    gexc.GatewayTimeout,
)
_TRANSIENT_IO = (requests.ConnectionError, requests.Timeout, gexc.RetryError, TimeoutError)


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: throttling, a 5xx, or no answer at all."""
    return isinstance(exc, (*_TRANSIENT_HTTP, *_TRANSIENT_IO, TransientSinkError))


@contextmanager
def error_scope(what: str) -> Iterator[None]:
    """Turn client failures into :class:`SinkError` (transient ones into the subclass)."""
    try:
        yield
    except SinkError:
        raise
    except Exception as exc:
        if is_transient(exc):
            raise TransientSinkError(f"{what} failed (will retry): {exc}") from exc
        if isinstance(exc, gexc.GoogleAPIError | requests.RequestException):
            raise SinkError(f"{what} failed: {exc}") from exc
        raise
