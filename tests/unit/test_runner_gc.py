"""The flow process's garbage-collector settings (see ``dataflows.runner``)."""

from __future__ import annotations

import gc
import weakref

from riffle.dataflows.runner import GC_THRESHOLDS, collect_garbage_rarely


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_the_flow_collects_cycles_rarely_and_leaves_its_start_up_objects_out() -> None:
    before = gc.get_threshold()
    try:
        collect_garbage_rarely()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_threshold()[0] >= 50 * before[0]
        assert gc.get_freeze_count() > 0
        # Reference cycles are still collected, only less often.
        node = _Node()
        ref = weakref.ref(node)
        del node
        gc.collect()
        assert ref() is None
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
