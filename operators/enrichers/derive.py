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
from collections.abc import Callable
from typing import Any

from simpleeval import SimpleEval

from riffle.config.enrichment import DerivedField


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
    """simpleeval with attribute access meaning "field of a JSON object" and nothing else."""

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


class DerivationError(Exception):
    """An expression failed on one event; the enricher turns it into a dead letter."""


class Derivation:
    """One derived field, compiled."""

    __slots__ = ("_evaluator", "_tree", "events", "key", "on_error", "section", "spec")

    def __init__(self, spec: DerivedField) -> None:
        self.spec = spec
        self.section, self.key = spec.field.split(".", 1)
        self.events = frozenset(spec.events)
        self.on_error = spec.on_error
        self._evaluator = _FieldEval(functions=FUNCTIONS, names={})
        self._tree = self._evaluator.parse(spec.expr.strip())

    def applies_to(self, event_type: str) -> bool:
        """Whether this field is derived for events of ``event_type``."""
        return not self.events or event_type in self.events

    def evaluate(self, event: dict[str, Any], ts: int) -> Any:
        """The field's value for ``event``; raises :class:`DerivationError` with the reason."""
        evaluator = self._evaluator
        evaluator.names = {
            "props": event.get("props"),
            "context": event.get("context"),
            "meta": event.get("meta"),
            "type": event.get("type"),
            "event_id": event.get("event_id"),
            "ts": ts,
        }
        try:
            value = evaluator.eval("", previously_parsed=self._tree)
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
