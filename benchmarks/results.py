"""Figures the benchmarks record for `benchmarks.summary` to set side by side.

A benchmark calls :func:`record` with the figures it has checked and printed.
Nothing is written unless ``RIFFLE_BENCH_RESULTS`` names a file (``make bench``
sets it); each call appends one JSON line with the benchmark's name, the time
and the machine's load average, so a summary can say how loaded the machine
was when each figure was taken.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import orjson

ENV = "RIFFLE_BENCH_RESULTS"


def record(benchmark: str, **figures: float) -> None:
    """Append ``figures`` of ``benchmark`` to the results file, if one is set."""
    path = os.environ.get(ENV)
    if not path:
        return
    line = {"benchmark": benchmark, "at": time.time(), "load": os.getloadavg()[0], **figures}
    with Path(path).open("ab") as out:
        out.write(orjson.dumps(line) + b"\n")


def read(path: Path) -> dict[str, dict[str, Any]]:
    """The last line recorded for each benchmark in ``path``."""
    found: dict[str, dict[str, Any]] = {}
    for raw in path.read_bytes().splitlines():
        if raw.strip():
            line = orjson.loads(raw)
            found[line["benchmark"]] = line
    return found
