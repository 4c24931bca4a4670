"""Aggregators and the compiled metric plans."""

from __future__ import annotations

import math
import operator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riffle.config.base import Condition
from riffle.config.spec import load_spec
from riffle.operators.aggregators import VALUE_OF, add, merge, new_agg, value_of
from riffle.operators.envelope import EnvelopeError
from riffle.operators.extract import MetricPlan, compile_plans, compile_readers, getter, predicate
from riffle.operators.records import Dims


def test_aggregations_from_one_state() -> None:
    agg = new_agg()
    for v in (3.0, 1.0, 8.0):
        add(agg, v)
    assert [VALUE_OF[a](agg) for a in ("count", "sum", "avg", "min", "max")] == [3, 12, 4, 1, 8]
    empty = new_agg()
    assert VALUE_OF["avg"](empty) is None and VALUE_OF["min"](empty) is None


def test_merge_equals_adding_everything() -> None:
    left, right, whole = new_agg(), new_agg(), new_agg()
    for v in (5.0, -2.0):
        add(left, v)
        add(whole, v)
    for v in (7.5,):
        add(right, v)
        add(whole, v)
    merge(left, right)
    assert left == whole
    assert value_of("avg", 3, 10.5, -2.0, 7.5) == 3.5


def test_getter_handles_missing_and_non_objects() -> None:
    assert getter("props.amount")({"props": {"amount": 3}}) == 3
    assert getter("props.amount")({"props": "x"}) is None
    assert getter("context.geo.city")({"context": {"geo": {"city": "Oslo"}}}) == "Oslo"
    assert getter("context.geo.city")({"context": {"geo": 1}}) is None
    assert getter("type")({"type": "t"}) == "t"


def test_filter_predicates() -> None:
    test = predicate(
        [
            Condition(path="props.status", op="gte", value=500),
            Condition(path="props.endpoint", op="in", value=["/a", "/b"]),
        ]
    )
    assert test is not None
    assert test({"props": {"status": 503, "endpoint": "/a"}})
    assert not test({"props": {"status": 200, "endpoint": "/a"}})
    assert not test({"props": {"status": "503", "endpoint": "/a"}})  # mismatched type
    assert not test({"props": {"endpoint": "/a"}})
    exists = predicate([Condition(path="props.coupon", op="exists")])
    assert exists is not None and exists({"props": {"coupon": "X"}})
    assert predicate([]) is None


def test_plans_read_dims_and_values() -> None:
    plans = compile_plans(load_spec("config/demo.yaml"))
    revenue = next(p for p in plans["purchase"] if p.name == "revenue")
    event = {"props": {"amount": 12, "currency": "EUR"}, "context": {}}
    assert revenue.read(event) == ((("country", "unknown"), ("currency", "EUR")), 12.0)
    for bad in ("12", None, math.inf, True):
        with pytest.raises(EnvelopeError) as caught:
            revenue.read({"props": {"amount": bad, "currency": "EUR"}})
        assert caught.value.failure_type == "invalid"
        assert caught.value.path == "props.amount"
    errors = next(p for p in plans["api_request"] if p.name == "api_errors")
    assert errors.read({"props": {"status": 200, "endpoint": "/x"}}) is None
    assert errors.read({"props": {"status": 502, "endpoint": "/x"}}) == ((("endpoint", "/x"),), 1.0)
    views = next(p for p in plans["page_view"] if p.name == "page_views")
    with pytest.raises(EnvelopeError, match="dimension page"):
        views.read({"props": {"page": {"nested": 1}}, "context": {}})
    dims, _ = views.read({"props": {"page": "x" * 500}, "context": {"device": 3}}) or ((), 0)
    assert dict(dims)["page"] == "x" * 128 and dict(dims)["device"] == "3"


def _reference_read(plan: MetricPlan, event: dict[str, Any]) -> tuple[Dims, Any] | None:
    """What a plan takes from an event, written plainly (the generated reader must agree)."""
    for cond in plan.conditions:
        actual = getter(cond.path)(event)
        if cond.op == "exists":
            if (actual is not None) is not (cond.value is not False):
                return None
            continue
        test = {"eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge,
                "lt": operator.lt, "lte": operator.le, "in": lambda a, b: a in b,
                "not_in": lambda a, b: a not in b}[cond.op]  # fmt: skip
        try:
            if actual is None or not test(actual, cond.value):
                return None
        except TypeError:
            return None
    value: Any = 1.0
    if plan.value_path is not None:
        raw = getter(plan.value_path)(event)
        if plan.sketch is not None and plan.sketch.kind != "quantiles":
            if raw is None:
                return None
            if isinstance(raw, dict | list):
                raise EnvelopeError("invalid", plan.value_path, "scalar")
            value = ("true" if raw else "false") if isinstance(raw, bool) else str(raw)
        elif type(raw) not in (int, float) or not math.isfinite(raw):
            raise EnvelopeError("invalid", plan.value_path, "number")
        else:
            value = float(raw)
    dims = []
    for name, path, default in plan.dims:
        raw = getter(path)(event)
        if raw is None:
            text = default
        elif type(raw) is str:
            text = raw[:128] or default
        elif type(raw) is bool:
            text = "true" if raw else "false"
        elif type(raw) in (int, float):
            text = str(raw)
        else:
            raise EnvelopeError("invalid", path, "dimension")
        dims.append((name, text))
    return tuple(dims), value


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-1000, 1000), st.floats(allow_nan=True),
    st.text(max_size=3), st.just(""), st.just({"x": 1}), st.just([1]),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(
    props=st.dictionaries(
        st.sampled_from(["page", "amount", "currency", "status", "endpoint", "latency_ms",
                         "status_class", "product_id", "channel"]),
        _VALUES,
    ),
    context=st.dictionaries(
        st.sampled_from(["country", "device", "user_id", "browser", "device_type",
                         "geo_country", "session_index"]),
        _VALUES,
    ),
    event_type=st.sampled_from(["page_view", "add_to_cart", "purchase", "signup", "api_request"]),
)  # fmt: skip
def test_generated_readers_agree_with_a_plain_reading(
    props: dict[str, Any], context: dict[str, Any], event_type: str
) -> None:
    plans = compile_plans(load_spec("config/demo.yaml"))
    reader = compile_readers(plans)[event_type]
    event = {"type": event_type, "props": props, "context": context}
    want: list[tuple[str, tuple[str, ...], Any]] = []
    error = None
    for plan in plans[event_type]:
        try:
            found = _reference_read(plan, event)
        except EnvelopeError as exc:
            error = exc.path
            break
        if found is not None:
            want.append((plan.name, tuple(v for _, v in found[0]), found[1]))
    if error is not None:
        with pytest.raises(EnvelopeError) as caught:
            reader(event)
        assert caught.value.path == error
        return
    got = [(plan.name, values, value) for plan, values, value in reader(event)]
    assert got == want
