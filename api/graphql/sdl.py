"""The schema in SDL: ``docs/graphql.schema.graphql`` is this module's output.

Regenerate after a schema change: ``python -m riffle.api.graphql.sdl > docs/graphql.schema.graphql``
(a test fails while the file and the schema differ).
"""

from __future__ import annotations

import sys

from riffle.api.graphql.router import build_schema


def sdl() -> str:
    """The schema's SDL, ending in a newline."""
    return build_schema().as_str() + "\n"


if __name__ == "__main__":
    sys.stdout.write(sdl())
