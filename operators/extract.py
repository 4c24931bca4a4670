"""The spec compiled for the hot loop: per event type, what each metric takes.

:func:`compile_plans` turns the spec's metrics into :class:`MetricPlan`
objects (lateness, window assigner, what to read), and :func:`compile_readers`
compiles, per event type, every metric that type feeds into *one* Python
function: each field the metrics read (dimensions, filter paths, values) is
looked up once per event, each filter clause and conversion is written out
for its metric, and nothing generic (getters, predicates, loops over
dimensions) runs per event. The functions are generated from templates
whose only inputs from the spec are string literals (``repr``) and
constants held in the function's namespace, so a spec cannot inject code.

A reader returns, in the metrics' spec order, ``(plan, dimension values,
value)`` for each metric the event contributes to; the dimension values are
a flat tuple in the order of :attr:`MetricPlan.dim_names` (the windows key
on it, and the named pairs are built once per window, not per event).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from riffle.config.base import Condition
from riffle.config.spec import PipelineSpec
from riffle.operators.assigners import WindowAssigner, assigner_for
from riffle.operators.envelope import EnvelopeError
from riffle.operators.records import Dims
from riffle.operators.sketches import SketchSpec, sketch_for

Getter = Callable[[dict[str, Any]], Any]
MAX_DIM_VALUE = 128

Contribution = tuple["MetricPlan", tuple[str, ...], Any]
"""``(plan, dimension values, value)``: what one event gives one metric."""

Reader = Callable[[dict[str, Any]], list[Contribution]]
"""Every contribution of one event (of the reader's type), in spec order; raises
:class:`EnvelopeError` (``invalid``) when the event lacks what a metric needs."""


def getter(path: str) -> Getter:
    """A function reading a dotted path (``props.amount``) from an event; ``None`` if absent."""
    parts = path.split(".")
    if len(parts) == 1:
        key = parts[0]
        return lambda event: event.get(key)
    if len(parts) == 2:
        outer, inner = parts

        def two(event: dict[str, Any]) -> Any:
            holder = event.get(outer)
            return holder.get(inner) if type(holder) is dict else None

        return two

    def deep(event: dict[str, Any]) -> Any:
        value: Any = event
        for part in parts:
            if type(value) is not dict:
                return None
            value = value.get(part)
        return value

    return deep


def predicate(conditions: Sequence[Condition]) -> Callable[[dict[str, Any]], bool] | None:
    """All conditions as one generated test; a comparison between mismatched types is false.

    ``None`` when there is no condition (everything passes).
    """
    if not conditions:
        return None
    src = CodeWriter()
    src.emit(0, "def test(event):")
    for cond in conditions:
        src.raw(cond.path)
    for cond in conditions:
        src.condition(1, cond, "return False")
    src.emit(1, "return True")
    test: Callable[[dict[str, Any]], bool] = src.build("test")
    return test


@dataclass(frozen=True, slots=True, eq=False)
class MetricPlan:
    """What one metric takes from one event, and how its windows are assigned."""

    name: str
    index: int
    """Position of the metric in the spec: a cheap key for per-batch bookkeeping."""
    assigner: WindowAssigner
    lateness_ms: int
    """How far this metric's watermark trails the partition clock."""
    horizon_ms: int
    """With ``late: correct``, corrections are taken until the watermark passes
    ``end + horizon_ms``; 0 means late events are dropped."""
    value_path: str | None
    dims: tuple[tuple[str, str, str], ...]
    """``(name, path, default)`` per dimension, sorted by name."""
    conditions: tuple[Condition, ...] = ()
    sketch: SketchSpec | None = None
    """Distinct counts and top-k read any scalar as text; quantiles read numbers."""
    max_values: int = 0
    """Cardinality cap (0: none): all the metric's series of a tenant share one shard."""
    _reader: list[Reader] = field(default_factory=list, repr=False)

    @property
    def dim_names(self) -> tuple[str, ...]:
        """The dimension names, in the order of a contribution's values."""
        return tuple(name for name, _, _ in self.dims)

    @property
    def session(self) -> bool:
        """Whether this metric's windows are sessions (they merge as they grow)."""
        return self.assigner.merges

    def named(self, values: tuple[str, ...]) -> Dims:
        """A contribution's dimension values as the series' ``(name, value)`` pairs."""
        return tuple(zip(self.dim_names, values, strict=True))

    def read(self, event: dict[str, Any]) -> tuple[Dims, Any] | None:
        """The series dimensions and value this event contributes, or ``None`` if filtered.

        Distinct and top-k metrics also pass over events that lack their value.

        Raises :class:`EnvelopeError` (``invalid``) when the event lacks what the
        metric needs, so the caller can reject the event as a whole.
        """
        if not self._reader:
            self._reader.append(compile_reader([self]))
        found = self._reader[0](event)
        if not found:
            return None
        _, values, value = found[0]
        return self.named(values), value


def compile_plans(
    spec: PipelineSpec, default_lateness_ms: int = 0
) -> dict[str, tuple[MetricPlan, ...]]:
    """Metric plans grouped by the event type that feeds them.

    ``default_lateness_ms`` applies to metrics that set no ``lateness``.
    """
    by_type: dict[str, list[MetricPlan]] = {name: [] for name in spec.event_types}
    for index, metric in enumerate(spec.metrics):
        dims = tuple(
            (name, spec.dimensions[name].path, spec.dimensions[name].default)
            for name in sorted(metric.dimensions)
        )
        lateness = (
            default_lateness_ms
            if metric.lateness is None
            else int(metric.lateness.total_seconds() * 1000)
        )
        plan = MetricPlan(
            name=metric.name,
            index=index,
            assigner=assigner_for(metric, spec),
            lateness_ms=lateness,
            horizon_ms=(
                int(metric.late_horizon.total_seconds() * 1000) if metric.late == "correct" else 0
            ),
            value_path=metric.value,
            dims=dims,
            conditions=tuple(metric.filter),
            sketch=sketch_for(metric),
            max_values=metric.max_values or 0,
        )
        for event_type in metric.events:
            by_type[event_type].append(plan)
    return {name: tuple(plans) for name, plans in by_type.items()}


def compile_readers(plans: Mapping[str, Sequence[MetricPlan]]) -> dict[str, Reader]:
    """One generated reader per event type (see the module docstring)."""
    return {event_type: compile_reader(list(ps)) for event_type, ps in plans.items()}


class _Bad:
    """Marks a dimension value that is not a string (converted or refused in its metric)."""


_BAD = _Bad()


def _dim_text(raw: Any, default: str, path: str, name: str) -> str:
    kind = type(raw)
    if kind is bool:
        return "true" if raw else "false"
    if kind is int or kind is float:
        return str(raw)
    raise EnvelopeError("invalid", path, f"dimension {name} must be a string, number or boolean")


def _not_number(path: str, metric: str) -> EnvelopeError:
    return EnvelopeError("invalid", path, f"metric {metric} needs a finite number")


def _not_scalar(path: str, metric: str) -> EnvelopeError:
    return EnvelopeError("invalid", path, f"metric {metric} needs a scalar")


def _deep(event: dict[str, Any], parts: tuple[str, ...]) -> Any:
    value: Any = event
    for part in parts:
        if type(value) is not dict:
            return None
        value = value.get(part)
    return value


_OPS = {"eq": "==", "ne": "!=", "in": "in", "not_in": "not in", "gt": ">", "gte": ">=",
        "lt": "<", "lte": "<="}  # fmt: skip


class CodeWriter:
    """Builds the text of one generated function (a metric reader, a filter test, a
    prediction's observer); every value from the spec goes through :meth:`const`."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {
            "_BAD": _BAD,
            "_dim_text": _dim_text,
            "_not_number": _not_number,
            "_not_scalar": _not_scalar,
            "_deep": _deep,
            "_isfinite": math.isfinite,
        }
        self.paths: dict[str, str] = {}
        self.sections: dict[str, str] = {}

    def const(self, value: Any) -> str:
        name = f"_c{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def condition(self, depth: int, cond: Condition, fail: str) -> None:
        """Lines that run ``fail`` unless ``cond`` holds (its path already read by :meth:`raw`)."""
        var = self.raw(cond.path)
        if cond.op == "exists":
            self.emit(depth, f"if {var} is {'None' if cond.value is not False else 'not None'}:")
            self.emit(depth + 1, fail)
            return
        self.emit(depth, "try:")
        test = f"{var} {_OPS[cond.op]} {self.const(cond.value)}"
        self.emit(depth + 1, f"if {var} is None or not ({test}):")
        self.emit(depth + 2, fail)
        self.emit(depth, "except TypeError:")
        self.emit(depth + 1, fail)

    def build(self, name: str) -> Any:
        """Compile the text and return the function ``name`` it defines."""
        code = "\n".join(self.lines)
        exec(compile(code, f"<riffle {name}>", "exec"), self.namespace)  # noqa: S102 - generated from templates; spec values are constants
        return self.namespace[name]

    def raw(self, path: str) -> str:
        """The variable holding ``path``'s value, read once at the top of the reader."""
        var = self.paths.get(path)
        if var is not None:
            return var
        var = self.paths[path] = f"r{len(self.paths)}"
        parts = path.split(".")
        if len(parts) == 1:
            self.emit(1, f"{var} = event.get({parts[0]!r})")
        elif len(parts) == 2:
            section = self.sections.get(parts[0])
            if section is None:
                section = self.sections[parts[0]] = f"s{len(self.sections)}"
                self.emit(1, f"{section} = event.get({parts[0]!r})")
            got = f"{section}.get({parts[1]!r})"
            self.emit(1, f"{var} = {got} if type({section}) is dict else None")
        else:
            self.emit(1, f"{var} = _deep(event, {self.const(tuple(parts))})")
        return var


def compile_reader(plans: Sequence[MetricPlan]) -> Reader:
    """The reader of an event type fed by ``plans`` (see the module docstring)."""
    src = CodeWriter()
    src.emit(0, "def read(event):")
    texts: dict[tuple[str, str], str] = {}
    for plan in plans:  # every field once, up front
        for cond in plan.conditions:
            src.raw(cond.path)
        if plan.value_path is not None:
            src.raw(plan.value_path)
        for _name, path, default in plan.dims:
            if (path, default) not in texts:
                var = src.raw(path)
                text = texts[(path, default)] = f"t{len(texts)}"
                d = src.const(default)
                src.emit(
                    1,
                    f"{text} = ({var}[:{MAX_DIM_VALUE}] or {d}) if type({var}) is str else "
                    f"({d} if {var} is None else _BAD)",
                )
    src.emit(1, "out = []")
    for plan in plans:
        p = src.const(plan)
        src.emit(1, "while True:")  # one pass; `break` skips the metric
        for cond in plan.conditions:
            src.condition(2, cond, "break")
        metric, path = src.const(plan.name), src.const(plan.value_path or "")
        if plan.value_path is None:
            src.emit(2, "v = 1.0")
        elif plan.sketch is not None and plan.sketch.kind != "quantiles":
            var = src.raw(plan.value_path)
            src.emit(2, f"v = {var}")
            src.emit(2, "if v is None:")
            src.emit(3, "break")
            src.emit(2, "k = type(v)")
            src.emit(2, "if k is not str:")
            src.emit(3, "if k is dict or k is list:")
            src.emit(4, f"raise _not_scalar({path}, {metric})")
            src.emit(3, "v = ('true' if v else 'false') if k is bool else str(v)")
        else:
            var = src.raw(plan.value_path)
            src.emit(2, f"v = {var}")
            src.emit(2, "k = type(v)")
            src.emit(2, "if k is float:")
            src.emit(3, "if not _isfinite(v):")
            src.emit(4, f"raise _not_number({path}, {metric})")
            src.emit(2, "elif k is int:")
            src.emit(3, "v = float(v)")
            src.emit(2, "else:")
            src.emit(3, f"raise _not_number({path}, {metric})")
        for name, dim_path, default in plan.dims:
            text = texts[(dim_path, default)]
            var = src.raw(dim_path)
            src.emit(2, f"if {text} is _BAD:")
            src.emit(
                3,
                f"{text} = _dim_text({var}, {src.const(default)}, {src.const(dim_path)}, "
                f"{src.const(name)})",
            )
        values = "".join(f"{texts[(path_, default)]}, " for _, path_, default in plan.dims)
        src.emit(2, f"out.append(({p}, ({values}), v))")
        src.emit(2, "break")
    src.emit(1, "return out")
    reader: Reader = src.build("read")  # every field was read in the first pass, above the blocks
    return reader
