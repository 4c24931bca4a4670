"""The instants Riffle accepts from outside: epoch milliseconds from 1970 to the year 9999.

One range for query strings, stored silences, acks and key expiries, so a value
that was accepted can always be stored, read back and printed as RFC 3339 (a
four-digit year, with room to align up to a day or add a period).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import Field

MIN_INSTANT_MS = 0
"""1970-01-01T00:00:00Z."""
MAX_INSTANT_MS = (datetime(9999, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // (
    timedelta(milliseconds=1)
)
"""9999-01-01T00:00:00Z."""

EpochMs = Annotated[
    int,
    Field(
        ge=MIN_INSTANT_MS,
        le=MAX_INSTANT_MS,
        description="Milliseconds since 1970-01-01T00:00:00Z, up to 9999-01-01.",
    ),
]
"""An instant in a request body."""
