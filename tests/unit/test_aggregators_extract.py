"""Aggregators and the compiled metric plans."""

from __future__ import annotations

import math

import pytest

from riffle.config.base import Condition
from riffle.config.spec import load_spec
from riffle.operators.aggregators import VALUE_OF, add, merge, new_agg, value_of
from riffle.operators.envelope import EnvelopeError
from riffle.operators.extract import compile_plans, getter, predicate


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
