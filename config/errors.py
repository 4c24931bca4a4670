"""The root of Riffle's exception hierarchy and the spec's errors."""

from __future__ import annotations


class RiffleError(Exception):
    """Root of every error Riffle raises on purpose."""


class SpecError(RiffleError):
    """A pipeline spec that cannot be loaded; the message names file, line and field."""
