"""Structured logging for every Riffle process, set up once at start.

structlog renders both our own events and the standard-library records of
libraries (uvicorn, Bytewax) through one handler on stderr, as JSON lines or
coloured console lines, so a process's log is one stream in one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

_configured: tuple[str, str] | None = None


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (as the standard
    library's last-resort handler does): a stream swapped after set-up — a test's
    capture, a redirect — is followed, and a thread logging later never writes to
    the closed one."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        """Set-up may assign it; the current ``sys.stderr`` wins."""


def configure_logging(level: str, fmt: Literal["json", "console"]) -> None:
    """Route structlog and stdlib logging to stderr at ``level`` in ``fmt``.

    Idempotent: calling it again with the same arguments changes nothing, so
    commands and tests may call it freely. ``level`` is a stdlib level name
    (``DEBUG``, ``INFO``, ...); an unknown name raises ``ValueError``.
    """
    global _configured
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    if _configured == (level.upper(), fmt):
        return
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    rendering: list[structlog.types.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta
    ]
    if fmt == "json":
        rendering += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        # The console renderer prints exceptions itself, readably.
        rendering.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=rendering)
    handler = _CurrentStderr()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    _configured = (level.upper(), fmt)
