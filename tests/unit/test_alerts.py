"""Alert rules in the spec, the per-instance state machine (with property tests) and
the rule evaluator: event time only, replays give the same history."""

from __future__ import annotations

import pickle
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from riffle.config.alerts import AlertRule, ForecastRule, ThresholdRule
from riffle.config.errors import SpecError
from riffle.config.spec import PipelineSpec, parse_spec
from riffle.operators.alerts.evaluator import RuleEvaluator, evaluate_series
from riffle.operators.alerts.machine import Machine
from riffle.operators.alerts.observations import Observation
from riffle.operators.alerts.transitions import AlertTransition

BASE = """\
version: 1
event_types:
  page_view: {}
dimensions:
  country: {path: context.country}
  device: {path: context.device}
metrics:
  - name: views
    events: [page_view]
    aggregation: count
    dimensions: [country, device]
    window: 1m
  - name: uniques
    events: [page_view]
    aggregation: distinct
    value: props.user
    dimensions: [country]
    window: 1m
"""

RULES = """\
alerts:
  - name: views_high
    kind: threshold
    metric: views
    op: gt
    value: 100
    for: 2m
    keep_firing_for: 1m
    severity: critical
    labels: {team: web}
    annotations:
      summary: "{{ labels.country }} has {{ value }} views (> {{ threshold }})"
    group_by: [country]
  - name: views_jump
    kind: change
    metric: views
    mode: percent
    op: gte
    value: 50
  - name: views_gone
    kind: absence
    metric: views
    after: 5m
"""

MIN = 60_000


def spec_with(rules: str) -> PipelineSpec:
    return parse_spec(BASE + rules, source="s.yaml")


# ---- spec -------------------------------------------------------------------------------


def test_rules_load_with_defaults() -> None:
    spec = spec_with(RULES)
    assert [r.name for r in spec.alerts] == ["views_high", "views_jump", "views_gone"]
    high = spec.alerts[0]
    assert isinstance(high, ThresholdRule)
    assert (high.for_ms, high.keep_firing_ms, high.group_by) == (120_000, 60_000, ["country"])
    assert spec.alerts[1].for_ms == 0 and spec.alerts[1].severity == "warning"
    assert parse_spec(BASE).alerts == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "metric: views\n    op",
            "metric: nope\n    op",
            "s.yaml:22: alerts[0].metric: unknown metric",
        ),
        ("group_by: [country]", "group_by: [page]", "alerts[0].group_by[0]: 'page' is not a dim"),
        ("op: gt", "op: bigger", "s.yaml:23: alerts[0].op"),
        ("for: 2m", "for: soon", "s.yaml:25: alerts[0].for"),
        ("{team: web}", "{severity: x}", "label 'severity' is set by Riffle"),
        ("{{ value }} views", "{{ value views", "annotation 'summary' is not a valid template"),
        ("after: 5m", "after: 10s", "alerts[2].after: absence 'after' must be at least"),
        ("name: views_gone", "name: views_high", "alerts[2].name: alert rule 'views_high' is"),
        ("kind: change", "kind: wobble", "alerts[1]: Input tag 'wobble'"),
    ],
)
def test_bad_rules_name_line_and_field(old: str, new: str, expected: str) -> None:
    assert old in RULES
    with pytest.raises(SpecError) as info:
        spec_with(RULES.replace(old, new, 1))
    assert expected in str(info.value)


def test_sketched_metrics_cannot_be_merged_and_anomaly_needs_a_model() -> None:
    rules = """\
alerts:
  - {name: u, kind: threshold, metric: uniques, value: 3, group_by: []}
  - {name: a, kind: anomaly, metric: views, above: 3}
"""
    with pytest.raises(SpecError) as info:
        spec_with(rules)
    text = str(info.value)
    assert "alerts[0].group_by: a distinct metric's series cannot be merged" in text
    assert "alerts[1].metric: metric 'views' has no anomaly: block" in text


def test_annotations_render_in_a_sandbox() -> None:
    rules = """\
alerts:
  - name: evil
    kind: threshold
    metric: views
    value: 0
    annotations:
      x: "{{ labels.__class__.__mro__[1].__subclasses__() }}"
"""
    rule = spec_with(rules).alerts[0]
    [t] = evaluate_series(rule, "count", False, [obs(1, 5.0)])
    assert dict(t.annotations)["x"].startswith("<annotation 'x' failed:")


# ---- state machine ----------------------------------------------------------------------


def obs(minute: int, value: float | None, dims: tuple[tuple[str, str], ...] = ()) -> Observation:
    return Observation("t1", "views", dims, minute * MIN, value, count=int(value or 0))


def threshold(for_: str = "0s", keep: str = "0s", no_data: str | None = None) -> ThresholdRule:
    data = {"name": "r", "kind": "threshold", "metric": "views", "value": 10, "for": for_}
    data |= {"keep_firing_for": keep}
    if no_data is not None:
        data["no_data_after"] = no_data
    return ThresholdRule.model_validate(data)


def states(transitions: list[AlertTransition]) -> list[tuple[int, str]]:
    return [(t.at // MIN, t.to_state) for t in transitions]


def test_the_whole_life_of_an_alert() -> None:
    rule = threshold(for_="2m", keep="2m")
    values = [1, 20, 20, 20, 1, 20, 1, 1, 1, 1]
    out = evaluate_series(rule, "count", False, [obs(i, v) for i, v in enumerate(values)])
    assert states(out) == [
        (1, "pending"),
        (3, "firing"),
        (4, "recovering"),
        (5, "firing"),
        (6, "recovering"),
        (8, "normal"),
    ]
    firing = out[1]
    assert firing.active_at == MIN and firing.from_state == "pending"
    assert dict(firing.labels)["alertname"] == "r"


def test_nodata_when_the_series_stops_and_back_when_it_returns() -> None:
    rule = threshold(no_data="3m")
    ev = RuleEvaluator(rule, "count", False)
    out = ev.observe(obs(1, 50))
    out += ev.advance(3 * MIN)
    assert states(out) == [(1, "firing")]
    out += ev.advance(4 * MIN)
    assert states(out) == [(1, "firing")]  # the window ending at 4 may still come
    out += ev.advance(5 * MIN)
    out += ev.observe(obs(5, 1))
    assert states(out) == [(1, "firing"), (4, "nodata"), (5, "normal")]


def test_absence_fires_after_the_gap_and_clears_on_data() -> None:
    spec = spec_with(RULES)
    rule = spec.alerts[2]
    ev = RuleEvaluator(rule, "count", False)
    out = ev.observe(obs(1, 3))
    for m in range(2, 8):
        out += ev.advance(m * MIN)
    out += ev.observe(obs(8, 3))
    assert states(out) == [(6, "firing"), (8, "normal")]


def test_change_rule_in_percent() -> None:
    rule = spec_with(RULES).alerts[1]
    out = evaluate_series(rule, "count", False, [obs(1, 10), obs(2, 14), obs(3, 21), obs(4, 20)])
    assert states(out) == [(3, "firing"), (4, "normal")]
    assert out[0].value == pytest.approx(50.0)


def test_grouped_instances_merge_series_and_keep_groups_apart() -> None:
    rule = spec_with(RULES).alerts[0]  # views > 100 for 2m, group_by country
    data = []
    for m in range(1, 6):
        data += [
            obs(m, 60, (("country", "de"), ("device", "mobile"))),
            obs(m, 60, (("country", "de"), ("device", "desktop"))),
            obs(m, 60, (("country", "fr"), ("device", "mobile"))),
        ]
    out = evaluate_series(rule, "count", True, data)
    assert {dict(t.labels)["country"] for t in out} == {"de"}
    assert states(out) == [(1, "pending"), (3, "firing")]
    assert out[0].value == 120.0
    assert dict(out[0].annotations)["summary"] == "de has 120.0 views (> 100.0)"


def test_replayed_windows_cause_no_second_transition_and_state_pickles() -> None:
    rule = threshold()
    ev = RuleEvaluator(rule, "count", False)
    first = ev.observe(obs(1, 50))
    assert ev.observe(obs(1, 50)) == [] and ev.observe(obs(0, 1)) == []
    copy = RuleEvaluator(rule, "count", False, pickle.loads(pickle.dumps(ev.instances)))
    assert copy.observe(obs(2, 1)) == ev.observe(obs(2, 1))
    assert (
        first[0].transition_id
        == evaluate_series(rule, "count", False, [obs(1, 50)])[0].transition_id
    )
    assert AlertTransition.from_json(first[0].to_json()) == first[0]


# ---- properties -------------------------------------------------------------------------

breaches = st.lists(st.booleans(), min_size=1, max_size=60)
minutes = st.integers(min_value=0, max_value=6)


@settings(max_examples=300, deadline=None)
@given(breaches, minutes, minutes)
def test_no_firing_before_for_elapsed(seq: list[bool], for_m: int, keep_m: int) -> None:
    m = Machine()
    run_start: int | None = None
    for i, breached in enumerate(seq):
        at = (i + 1) * MIN
        if breached and run_start is None:
            run_start = at
        change = m.step(at, breached, for_m * MIN, keep_m * MIN)
        if change is not None and change[1] == "firing" and change[0] != "recovering":
            assert run_start is not None and at - run_start >= for_m * MIN
            assert all(seq[(run_start // MIN) - 1 : i + 1])
        if not breached and m.state != "recovering" and m.state != "firing":
            run_start = None


@settings(max_examples=300, deadline=None)
@given(breaches, minutes, minutes)
def test_recovering_honours_keep_firing_for(seq: list[bool], for_m: int, keep_m: int) -> None:
    m = Machine()
    clear_since: int | None = None
    for i, breached in enumerate(seq):
        at = (i + 1) * MIN
        before = m.state
        change = m.step(at, breached, for_m * MIN, keep_m * MIN)
        if before in ("firing", "recovering") and not breached and clear_since is None:
            clear_since = at
        if breached:
            clear_since = None
        if change is not None and before in ("firing", "recovering") and change[1] == "normal":
            assert clear_since is not None and at - clear_since >= keep_m * MIN
            clear_since = None
        if before == "firing" and not breached:
            assert m.state == ("recovering" if keep_m else "normal")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 30)), min_size=1, max_size=40),
    st.integers(1, 5),
)
def test_nodata_when_a_series_stops(values: list[int | None], gap_m: int) -> None:
    """A missing window is ``None``: after ``gap`` minutes without one the instance is NoData."""
    rule = threshold(no_data=f"{gap_m}m")
    ev = RuleEvaluator(rule, "count", False)
    last_seen: int | None = None
    for i, v in enumerate(values):
        at = (i + 1) * MIN
        ev.advance(at)
        [inst] = ev.instances.values() if ev.instances else [None]
        if inst is not None and last_seen is not None and at - last_seen > gap_m * MIN:
            assert inst.machine.state == "nodata"
        if v is not None:
            ev.observe(obs(i + 1, float(v)))
            last_seen = at
            [inst] = ev.instances.values()
            assert inst.machine.state != "nodata"


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=1, max_size=30), minutes, minutes)
def test_replay_gives_the_same_history(values: list[int], for_m: int, keep_m: int) -> None:
    rule = threshold(for_=f"{for_m}m", keep=f"{keep_m}m")
    data = [obs(i + 1, float(v)) for i, v in enumerate(values)]
    once = evaluate_series(rule, "count", False, data)
    twice = evaluate_series(rule, "count", False, data + data[: len(data) // 2])
    assert once == twice


# ---- new rule kinds ---------------------------------------------------------------------

MODELLED = """\
version: 1
event_types:
  page_view: {}
dimensions:
  country: {path: context.country}
metrics:
  - name: views
    events: [page_view]
    aggregation: count
    dimensions: [country]
    window: 1m
    forecast: {}
"""


def rule_of(**fields: object) -> AlertRule:
    data: dict[str, object] = {"name": "r", "metric": "views"} | fields
    return TypeAdapter(AlertRule).validate_python(data)


def test_new_rule_fields_are_checked_against_the_spec() -> None:
    bad = """\
alerts:
  - {name: a, kind: forecast, metric: views}
  - {name: b, kind: change, metric: views, value: 1, period: 90s}
  - {name: c, kind: absence, metric: views, after: 5m, evaluate: partial}
"""
    with pytest.raises(SpecError) as info:
        spec_with(bad)
    text = str(info.value)
    assert "alerts[0].metric: metric 'views' has no forecast: block" in text
    assert "alerts[1].period: period must be a positive multiple of the window" in text
    assert "alerts[2].evaluate: only change, threshold rules can evaluate partial" in text
    with pytest.raises(SpecError, match=r"alerts\[0\].side: Input should be 'outside'"):
        spec_with("alerts:\n  - {name: e, kind: forecast, metric: views, side: sideways}\n")
    ok = parse_spec(MODELLED + "alerts:\n  - {name: f, kind: forecast, metric: views}\n")
    assert isinstance(ok.alerts[0], ForecastRule) and ok.alerts[0].min_history == 10


def test_change_against_the_same_window_a_period_earlier() -> None:
    rule = rule_of(kind="change", op="gte", value=50, mode="percent", period="3m")
    values = [10, 20, 30, 10, 20, 60, 10]  # minute 6 is +100% on minute 3
    out = evaluate_series(rule, "count", False, [obs(i + 1, v) for i, v in enumerate(values)])
    assert states(out) == [(6, "firing"), (7, "normal")]
    assert out[0].value == pytest.approx(100.0)


def test_forecast_rule_joins_intervals_and_values_in_either_order() -> None:
    rule = rule_of(kind="forecast", min_history=2, annotations={"s": "{{ lower }}..{{ upper }}"})

    def interval(minute: int, n: int) -> Observation:
        return Observation("t1", "views", (), minute * MIN, None, interval=(10, 5, 15), history=n)

    values = [obs(m, 10.0) for m in range(1, 6)] + [obs(6, 40.0), obs(7, 12.0)]
    intervals = [interval(m, m) for m in range(1, 8)]
    ev = RuleEvaluator(rule, "count", False)
    first = [t for o in values + intervals for t in ev.observe(o)]
    ev = RuleEvaluator(rule, "count", False)
    second = [
        t for pair in zip(intervals, values, strict=True) for o in pair for t in ev.observe(o)
    ]
    assert first == second
    assert states(first) == [(6, "firing"), (7, "normal")]
    assert dict(first[0].annotations)["s"] == "5..15"
    # Intervals from a forecaster with fewer than min_history scored forecasts are skipped.
    ev = RuleEvaluator(rule, "count", False)
    assert [t for o in [interval(6, 1), obs(6, 40.0)] for t in ev.observe(o)] == []


def partial(minute: int, value: float) -> Observation:
    return Observation("t1", "views", (), minute * MIN, value, count=int(value), final=False)


def test_partials_raise_early_and_finals_decide() -> None:
    rule = rule_of(kind="threshold", value=10, evaluate="partial")
    ev = RuleEvaluator(rule, "count", False, window_ms=MIN)
    out = ev.observe(obs(1, 1))
    out += ev.observe(partial(2, 5)) + ev.observe(partial(2, 11))  # raises: firing at 2
    assert states(out) == [(2, "firing")]
    out += ev.observe(partial(2, 12)) + ev.observe(obs(2, 12))  # the final confirms: nothing
    assert states(out) == [(2, "firing")]
    out += ev.observe(partial(3, 1))  # a partial never lowers
    out += ev.observe(obs(3, 1))
    out += ev.observe(partial(4, 30)) + ev.observe(obs(4, 9))  # the final withdraws the raise
    assert states(out) == [(2, "firing"), (3, "normal"), (4, "firing"), (4, "normal")]
    # A partial is not judged before the previous window's final.
    assert ev.observe(partial(6, 50)) == []
    with pytest.raises(ValueError, match="window_ms"):
        RuleEvaluator(rule, "count", False)


def test_grouped_partials_merge_the_newest_partial_of_each_series() -> None:
    rule = rule_of(kind="threshold", value=100, evaluate="partial", group_by=[])
    de, fr = (("country", "de"),), (("country", "fr"),)

    def part(minute: int, value: float, dims: tuple[tuple[str, str], ...]) -> Observation:
        return replace(partial(minute, value), dims=dims, sum=value)

    ev = RuleEvaluator(rule, "count", True, window_ms=MIN)
    out = ev.observe(obs(1, 10, de)) + ev.advance(1 * MIN + 1)  # the group's window 1 is in
    out += ev.observe(part(2, 40, de)) + ev.observe(part(2, 50, fr))  # 90: not yet
    out += ev.observe(part(2, 55, de))  # 55 replaces 40: 105 raises the group
    assert states(out) == [(2, "firing")] and out[0].value == 105.0
    out += ev.observe(obs(2, 55, de)) + ev.observe(obs(2, 60, fr)) + ev.advance(2 * MIN + 1)
    assert states(out) == [(2, "firing")]  # the merged final (115) confirms
    [inst] = ev.instances.values()
    assert inst.open is None and inst.shown is None


def test_absence_is_stamped_when_due_however_the_clock_moves() -> None:
    rule = rule_of(kind="absence", after="5m", **{"for": "2m"})
    creeping = RuleEvaluator(rule, "count", False)
    out = creeping.observe(obs(1, 3))
    for second in range(2 * 60, 20 * 60, 7):
        out += creeping.advance(second * 1000)
    jumping = RuleEvaluator(rule, "count", False)
    jumped = jumping.observe(obs(1, 3)) + jumping.advance(20 * MIN)
    assert states(out) == states(jumped) == [(6, "pending"), (8, "firing")]


# ---- properties over every kind ---------------------------------------------------------

Series = list[tuple[int, float | None, float | None]]
"""Per minute: the final value (None: no window) and a partial value seen before it."""


def _observations(kind: str, series: Series) -> list[Observation]:
    out = []
    for i, (value, part) in enumerate((v, p) for _m, v, p in series):
        minute = i + 1
        if kind == "forecast":
            out.append(
                Observation("t1", "views", (), minute * MIN, None, interval=(10, 5, 15), history=9)
            )
        if kind == "partial" and part is not None and value is not None:
            out.append(partial(minute, part))  # a window with partials has a final
        if value is not None:
            out.append(obs(minute, value))
    return out


def _rule(kind: str, for_m: int, keep_m: int, gap_m: int) -> AlertRule:
    common = {"for": f"{for_m}m", "keep_firing_for": f"{keep_m}m", "no_data_after": f"{gap_m}m"}
    if kind == "threshold":
        return rule_of(kind="threshold", value=10, **common)
    if kind == "partial":
        return rule_of(kind="threshold", value=10, evaluate="partial", **common)
    if kind == "change":
        return rule_of(kind="change", value=5, period="2m", **common)
    if kind == "forecast":
        return rule_of(kind="forecast", min_history=0, **common)
    return rule_of(kind="absence", after=f"{gap_m}m", **{"for": f"{for_m}m"})


KINDS = st.sampled_from(["threshold", "partial", "change", "forecast", "absence"])
SERIES = st.lists(
    st.tuples(
        st.just(0),
        st.one_of(st.none(), st.integers(0, 25).map(float)),
        st.one_of(st.none(), st.integers(0, 25).map(float)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(KINDS, SERIES, minutes, minutes, st.integers(1, 5))
def test_every_kind_keeps_the_machine_guarantees(
    kind: str, series: Series, for_m: int, keep_m: int, gap_m: int
) -> None:
    """Chained states; Firing only once ``for`` elapsed; Normal after Recovering only after
    ``keep_firing_for``; NoData (or absence) once the series stops, stamped when due."""
    rule = _rule(kind, for_m, keep_m, gap_m)
    out = evaluate_series(rule, "count", False, _observations(kind, series), window_ms=MIN)
    ev_end = max((i + 1 for i, (_m, v, _p) in enumerate(series) if v is not None), default=0)
    state, recovering_since = "normal", None
    for t in out:
        assert t.from_state == state, (t, out)
        if t.to_state == "firing" and t.from_state in ("normal", "pending", "nodata"):
            assert t.active_at is not None and t.at - t.active_at >= rule.for_ms
        if t.to_state == "recovering":
            recovering_since = t.at
        if t.from_state == "recovering" and t.to_state == "normal" and kind != "partial":
            assert recovering_since is not None and t.at - recovering_since >= rule.keep_firing_ms
        state = t.to_state
    # The series stops after its last window: one more clock tick far ahead judges it.
    if ev_end:
        ev = RuleEvaluator(rule, "count", False, window_ms=MIN)
        for o in sorted(_observations(kind, series), key=lambda o: o.window_end):
            if o.final and o.interval is None:
                ev.advance(o.window_end)
            ev.observe(o)
        tail = ev.advance(10**9)
        [inst] = ev.instances.values()
        due = inst.machine.last_seen + gap_m * MIN  # type: ignore[operator]
        if kind == "absence":
            assert inst.machine.state == "firing"
            assert any(t.to_state in ("pending", "firing") and t.at == due for t in tail) or (
                state == "firing"
            )
        else:
            assert inst.machine.state == "nodata"
            assert (tail[-1] if tail else out[-1]).at == due


@settings(max_examples=200, deadline=None)
@given(SERIES, minutes, minutes)
def test_partials_change_nothing_the_finals_decide(series: Series, for_m: int, keep_m: int) -> None:
    """After every final the machine is where finals alone would have put it, and every
    transition finals alone make is in the history with partials too (same ids)."""
    with_partials = _rule("partial", for_m, keep_m, 5)
    finals_only = _rule("threshold", for_m, keep_m, 5)
    data = _observations("partial", series)
    a = RuleEvaluator(with_partials, "count", False, window_ms=MIN)
    b = RuleEvaluator(finals_only, "count", False, window_ms=MIN)
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    for o in data:
        seen_a |= {t.transition_id for t in a.observe(o)}
        if o.final:
            seen_b |= {t.transition_id for t in b.observe(o)}
            [ia], [ib] = a.instances.values(), b.instances.values()
            assert ia.machine == ib.machine and ia.shown is None
    assert seen_b <= seen_a


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60), st.integers(0, 60)),
        min_size=1,
        max_size=25,
    ),
    minutes,
    minutes,
)
def test_grouped_partials_change_nothing_the_finals_decide(
    data: list[tuple[int, int, int, int]], for_m: int, keep_m: int
) -> None:
    """Two series merged into one instance: per minute a partial of each, then the finals,
    then the clock; after each, the state is what finals alone give."""
    common = {"for": f"{for_m}m", "keep_firing_for": f"{keep_m}m", "group_by": []}
    a = RuleEvaluator(
        rule_of(kind="threshold", value=60, evaluate="partial", **common),
        "count",
        True,
        window_ms=MIN,
    )
    b = RuleEvaluator(rule_of(kind="threshold", value=60, **common), "count", True)
    de, fr = (("country", "de"),), (("country", "fr"),)
    ids_a: set[str] = set()
    ids_b: set[str] = set()
    for i, (pde, pfr, fde, ffr) in enumerate(data):
        m = i + 1
        for dims, v in ((de, pde), (fr, pfr)):
            ids_a |= {t.transition_id for t in a.observe(replace(partial(m, v), dims=dims))}
        for dims, v in ((de, max(pde, fde)), (fr, max(pfr, ffr))):  # counts only grow
            final = obs(m, v, dims)
            ids_a |= {t.transition_id for t in a.observe(final)}
            ids_b |= {t.transition_id for t in b.observe(final)}
        ids_a |= {t.transition_id for t in a.advance(m * MIN + 1)}
        ids_b |= {t.transition_id for t in b.advance(m * MIN + 1)}
        [ia], [ib] = a.instances.values(), b.instances.values()
        assert ia.machine == ib.machine and ia.shown is None
    assert ids_b <= ids_a
