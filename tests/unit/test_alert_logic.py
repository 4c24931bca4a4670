"""The alert shard's logic without Bytewax: the stream clock from the partitions keeps
absence moving when no window comes, one tick late; the rule book's versions by event time."""

from __future__ import annotations

import pytest

from riffle.config.spec import parse_spec
from riffle.dataflows.alert_logic import CLOCK, AlertLogic, ClockReading, compile_rules
from riffle.operators.alert_rules import RuleBook, RuleChange
from riffle.operators.alerts.observations import Observation
from riffle.operators.watermark import IDLE

SEC = 1000
SPEC = """
version: 1
event_types: {view: {}}
metrics:
  - {name: views, events: [view], aggregation: count, window: 1s, lateness: 2s}
alerts:
  - {name: gone, kind: absence, metric: views, after: 5s}
"""


def _logic(partitions: list[str]) -> AlertLogic:
    rules = compile_rules(parse_spec(SPEC), default_lateness_ms=10 * SEC)
    assert rules["gone"].lateness_ms == 2 * SEC  # the metric's own lateness wins
    return AlertLogic(rules, None, partitions=partitions, tick_ms=100)


def _window(end: int) -> tuple[str, Observation]:
    return ("gone", Observation("t1", "views", (), end, 3.0, count=3))


def test_the_partition_clock_judges_absence_one_tick_after_it_is_read() -> None:
    logic = _logic(["p0", "p1"])
    assert logic.on_batch([_window(10 * SEC)])[0] == []
    logic.on_batch([(CLOCK, ClockReading("p0", 30 * SEC))])
    assert logic.on_notify()[0] == []  # p1 has reported nothing: no stream clock yet
    logic.on_batch([(CLOCK, ClockReading("p1", 16 * SEC))])
    assert logic.on_notify()[0] == []  # read now, applied on the next tick
    # Lowest clock 16 s, less the 2 s lateness: windows ending at 14 s are all in; the
    # absence due at 15 s is not judged yet.
    assert logic.on_notify()[0] == []
    logic.on_batch([(CLOCK, ClockReading("p1", 18 * SEC))])
    logic.on_notify()
    [fired] = logic.on_notify()[0]
    assert (fired.to_state, fired.at) == ("firing", 15 * SEC)
    assert logic.snapshot().horizon == 18 * SEC


def test_partitions_that_never_delivered_hold_nothing_back() -> None:
    logic = _logic(["p0", "p1"])
    logic.on_batch([_window(10 * SEC)])
    logic.on_batch([(CLOCK, ClockReading("p0", IDLE)), (CLOCK, ClockReading("p1", 60 * SEC))])
    logic.on_notify()
    assert [t.to_state for t in logic.on_notify()[0]] == ["firing"]
    without = AlertLogic(compile_rules(parse_spec(SPEC)), None)
    assert without.notify_at() is None  # no partitions: no ticks


def _change(seq: int, at: int, rule: dict[str, object] | None, name: str = "a") -> RuleChange:
    return RuleChange(seq, at, "t1", name, rule)


def test_the_rule_book_answers_by_event_time() -> None:
    rule = {"name": "a", "kind": "threshold", "metric": "views", "value": 1}
    book = RuleBook()
    book.extend([_change(1, 100, rule), _change(2, 200, rule | {"value": 2})], 250)
    book.extend([_change(2, 200, rule), _change(3, 300, None)], 400)  # a re-read overlaps
    assert [e.seq for e in book.entries] == [1, 2, 3]
    assert book.version_at("t1/a", 99) is None
    assert book.version_at("t1/a", 100).seq == 1  # type: ignore[union-attr]
    assert book.version_at("t1/a", 299).seq == 2  # type: ignore[union-attr]
    assert book.version_at("t1/a", 300) is None  # deleted
    assert list(book.keys_for("t1", "views")) == ["t1/a"] and not book.keys_for("t2", "views")
    assert book.covers(399) and not book.covers(400)
    assert [e.seq for e in book.due(1, 299)] == [2] and book.due(3, 10**9) == []
    with pytest.raises(ValueError, match="after 3"):
        book.extend([_change(5, 500, rule)], 600)
    assert _change(9, 1, {"kind": "nope"}).parsed() is None
