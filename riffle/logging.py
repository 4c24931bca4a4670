"""Structured logging for every Riffle process, set up once at start.

structlog renders both our own events and the standard-library records of
libraries (uvicorn, Bytewax) through one handler on stderr, as JSON lines or
coloured console lines, so a process's log is one stream in one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog

_configured: tuple[str, str] | None = None


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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    _configured = (level.upper(), fmt)
