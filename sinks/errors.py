"""Errors of the stores: a store that cannot be reached, locked, or written."""

from __future__ import annotations

from riffle.config.errors import RiffleError


class SinkError(RiffleError):
    """A store could not do what was asked; the message names the store and why."""


class TransientSinkError(SinkError):
    """A store failed in a way worth retrying (throttled, 5xx, unreachable, timed out)."""
