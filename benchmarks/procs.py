"""Process helpers the benchmarks share: CPU time of a process tree from ``/proc``,
waiting for a quiet process, and Prometheus text scrapes."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process, all its threads (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children's children included)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
    return found


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and its living descendants."""
    return sum(cpu_seconds(p) for p in descendants(pid))


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (every core: all but idle and iowait)."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(f) for f in stat.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def command_of(pid: int) -> str:
    """A short name for a process: its command line, arguments joined by spaces."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def wait_quiet(
    pid: int, *, below: float = 0.1, window_s: float = 1.0, timeout_s: float = 600.0
) -> float:
    """Wait until ``pid``'s tree uses under ``below`` of a core over ``window_s``.

    Returns its CPU seconds at the start of that quiet window (what the work cost).
    """
    deadline = time.monotonic() + timeout_s
    before = tree_cpu(pid)
    while time.monotonic() < deadline:
        time.sleep(window_s)
        after = tree_cpu(pid)
        if after - before < below * window_s:
            return before
        before = after
    raise TimeoutError(f"process {pid} never went quiet within {timeout_s} s")


def scrape(url: str) -> dict[str, float]:
    """Samples of a Prometheus text page by full name (labels included); {} when down."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                continue
    return samples
