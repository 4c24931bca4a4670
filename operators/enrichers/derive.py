"""Derived fields: safe expressions over an event, evaluated with ``simpleeval`` (never ``eval``).

Expressions are checked at spec load (:func:`config.enrichment.check_expression`)
and parsed once here; evaluating one walks the prebuilt tree. ``props.x``
reads a field of an object and gives ``None`` when it is absent (Python
attributes of dicts such as ``items`` are never reachable), so ``props.amount
if props.amount is not None else 0`` works as written.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

from simpleeval import SimpleEval

from riffle.config.enrichment import EXPRESSION_NAMES, DerivedField


def _coalesce(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "int": int,
    "float": float,
    "str": str,
    "len": len,
    "lower": _lower,
    "upper": _upper,
    "coalesce": _coalesce,
}


class _FieldEval(SimpleEval):  # type: ignore[misc]
    """simpleeval with attribute access meaning "field of a JSON object" and nothing else.

    simpleeval checks every intermediate result for forbidden functions and
    modules, walking containers; the event's objects hold JSON values only
    (decoded JSON and the enricher's strings and numbers), so walking them —
    the whole ``context`` for every ``context.x`` — is skipped.
    """

    def _eval(self, node: ast.AST) -> Any:
        handler = self.nodes.get(type(node))
        if handler is None:
            return super()._eval(node)  # raises simpleeval's "not available" error
        result = handler(node)
        if type(result) is not dict:
            self._check_disallowed_items(result)
        return result

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        holder = self._eval(node.value)
        if type(holder) is dict:
            return holder.get(node.attr)
        if holder is None:
            return None
        raise TypeError(f"cannot read .{node.attr} of a {type(holder).__name__}")


def compile_expression(expr: str) -> Callable[[dict[str, Any]], Any]:
    """An expression already checked by :func:`config.enrichment.check_expression`,
    parsed once; call the result with the values of its names. Raises what the
    expression raises (a user's expression failing is data: callers catch it)."""
    evaluator = _FieldEval(functions=FUNCTIONS, names={})
    tree = evaluator.parse(expr.strip())

    def evaluate(names: dict[str, Any]) -> Any:
        evaluator.names = names
        return evaluator.eval("", previously_parsed=tree)

    return evaluate


Names = dict[str, Any]
Compiled = Callable[[Names], Any]

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


def _closure(node: ast.AST) -> Compiled | None:
    """A closure evaluating ``node`` as :class:`_FieldEval` would, for the common subset
    (constants, event parts, field reads, comparisons, ``and``/``or``/``not``); ``None``
    when anything else appears, and simpleeval evaluates the expression.

    The subset computes nothing but comparisons of values already in the event,
    so it needs none of simpleeval's limits on sizes and powers.
    """
    if isinstance(node, ast.Expr):
        return _closure(node.value)
    if isinstance(node, ast.Constant):
        constant = node.value
        return lambda names: constant
    if isinstance(node, ast.Name) and node.id in EXPRESSION_NAMES:
        name = node.id
        return lambda names: names[name]
    if isinstance(node, ast.Attribute):
        holder_of = _closure(node.value)
        if holder_of is None:
            return None
        return _field(holder_of, node.attr)
    if isinstance(node, ast.Compare):
        parts = [_closure(node.left), *(_closure(c) for c in node.comparators)]
        ops = [_COMPARE.get(type(o)) for o in node.ops]
        if any(p is None for p in parts) or any(o is None for o in ops):
            return None
        return _compare(parts, ops)  # type: ignore[arg-type]
    if isinstance(node, ast.BoolOp):
        values = [_closure(v) for v in node.values]
        if any(v is None for v in values):
            return None
        return _boolean(values, isinstance(node.op, ast.And))  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = _closure(node.operand)
        return None if operand is None else (lambda names: not operand(names))
    return None


def _field(holder_of: Compiled, attr: str) -> Compiled:
    def read(names: Names) -> Any:
        holder = holder_of(names)
        if type(holder) is dict:
            return holder.get(attr)
        if holder is None:
            return None
        raise TypeError(f"cannot read .{attr} of a {type(holder).__name__}")

    return read


def _compare(parts: list[Compiled], ops: list[Callable[[Any, Any], Any]]) -> Compiled:
    if len(ops) == 1:
        left_of, right_of, op = parts[0], parts[1], ops[0]
        return lambda names: op(left_of(names), right_of(names))

    def chain(names: Names) -> Any:
        right = parts[0](names)
        result: Any = True
        for op, part in zip(ops, parts[1:], strict=True):
            if not result:
                break
            left, right = right, part(names)
            result = op(left, right)
        return result

    return chain


def _boolean(values: list[Compiled], conjunction: bool) -> Compiled:
    def run(names: Names) -> Any:
        result: Any = False
        for value in values:
            result = value(names)
            if (not result) if conjunction else result:
                break
        return result

    return run


class DerivationError(Exception):
    """An expression failed on one event; the enricher turns it into a dead letter."""


class Derivation:
    """One derived field, compiled."""

    __slots__ = ("_evaluator", "_fast", "_tree", "events", "key", "on_error", "section", "spec")

    def __init__(self, spec: DerivedField) -> None:
        self.spec = spec
        self.section, self.key = spec.field.split(".", 1)
        self.events = frozenset(spec.events)
        self.on_error = spec.on_error
        self._evaluator = _FieldEval(functions=FUNCTIONS, names={})
        self._tree = self._evaluator.parse(spec.expr.strip())
        self._fast = _closure(self._tree)

    def applies_to(self, event_type: str) -> bool:
        """Whether this field is derived for events of ``event_type``."""
        return not self.events or event_type in self.events

    def evaluate(self, event: dict[str, Any], ts: int) -> Any:
        """The field's value for ``event``; raises :class:`DerivationError` with the reason."""
        names = {
            "props": event.get("props"),
            "context": event.get("context"),
            "meta": event.get("meta"),
            "type": event.get("type"),
            "event_id": event.get("event_id"),
            "ts": ts,
        }
        try:
            if self._fast is not None:
                value = self._fast(names)
            else:
                self._evaluator.names = names
                value = self._evaluator.eval("", previously_parsed=self._tree)
        except Exception as exc:  # noqa: BLE001 - any failure of a user expression is data
            raise DerivationError(f"{type(exc).__name__}: {exc}") from None
        kind = type(value)
        if kind is float and not math.isfinite(value):
            raise DerivationError(f"the result is {value}, not a finite number")
        if value is not None and kind not in (str, int, float, bool):
            raise DerivationError(f"the result is a {kind.__name__}, not a string or number")
        if kind is str and len(value) > 1024:
            raise DerivationError("the result is a string of more than 1024 characters")
        return value
