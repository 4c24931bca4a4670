"""Per-entity predictions: features from enriched events, outcomes later in the same stream.

Two halves, split where the dataflow splits:

* :class:`EntityExtractor` runs in the ingest stage on every enriched event
  that is not late and turns it into compact :data:`Observation` tuples —
  the entity id, the event time, the Kafka offset, whether it is the
  prediction's outcome, and the feature updates it brings — so the event
  itself never travels further.
* :class:`EntityTracker` is the state of one prediction (all tenants): each
  tenant's :class:`~operators.models.classifier.OnlineClassifier` and its
  open entities with their features.

**Event time, deterministic on replay.** Observations reach the tracker from
several source partitions in any interleaving. The tracker keeps every
partition's clock and releases observations only once the watermark — the
slowest partition's clock less the lateness — has passed them, in
``(ts, partition, offset)`` order. Since the ingest stage drops observations
behind its own partition's clock less the same lateness, nothing released
later can sort before what was released, so the sequence of feature
updates, resolutions and learning steps is a function of the events alone,
whatever the batching, polling or restarts.

**Outcomes.** An entity opens at its first feature event and resolves as a
positive when its outcome event comes within ``horizon`` of that first event,
or as a negative once event time passes ``first + horizon`` without it. The
classifier learns from the features *before* the outcome event (so the
outcome never leaks into its own example), predicting first (prequential).
A later event of a resolved entity opens a new episode.

**Bounded state.** Entities open in event-time order and all share one
horizon, so their deadlines are in insertion order: they live in an
``OrderedDict`` and expire from its front. At most ``max_entities`` per
tenant stay open; beyond that the oldest are dropped without learning
(counted in ``dropped``). The snapshot is one pickle (bytes), so Bytewax's
per-epoch deep copy costs a bytes copy.
"""

from __future__ import annotations

import heapq
import math
import pickle
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from riffle.config.predictions import PredictionSpec
from riffle.operators.extract import CodeWriter, predicate
from riffle.operators.models.classifier import ClassifierStats, OnlineClassifier
from riffle.operators.watermark import IDLE, NEVER

Update = tuple[str, str, Any]
"""``(op, name, value)``: ``count`` name (+1), ``cat`` field value, ``last``/``sum``/``max``."""

Observation = tuple[str, int, str, int, int, bool, tuple[Update, ...]]
"""``(tenant, prediction index, entity id, ts, offset, is outcome, updates)``."""

Status = Literal["open", "positive", "negative"]

MAX_ENTITY_ID = 256


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """An entity's current probability (``open``) or its resolution, with the model's stats."""

    tenant: str
    prediction: str
    entity_type: str
    entity_id: str
    ts: int
    """Event time of the entity's last event (open) or of its resolution."""
    probability: float
    status: Status
    events: int
    learned: int
    """Examples the tenant's model had learned when it gave ``probability`` (its version)."""


@dataclass(frozen=True, slots=True)
class ModelStatsRecord:
    """A tenant's model after a release: its rolling accuracy and its entity bookkeeping."""

    tenant: str
    prediction: str
    entity_type: str
    watermark: int
    stats: ClassifierStats
    open_entities: int
    dropped: int


PredictionOut = PredictionRecord | ModelStatsRecord


class _Compiled:
    __slots__ = ("names", "spec")

    def __init__(self, spec: PredictionSpec) -> None:
        self.spec = spec
        self.names: dict[tuple[str, str], str] = {}
        """Feature names built from event values, interned once (bounded)."""

    def name(self, prefix: str, value: str) -> str:
        """``prefix + value``, interned: a snapshot's pickle then holds each name once."""
        key = (prefix, value)
        found = self.names.get(key)
        if found is None:
            if len(self.names) >= 10_000:
                self.names.clear()
            found = self.names[key] = sys.intern(prefix + value)
        return found


Observer = Callable[[dict[str, Any], str, int, int], list[Observation]]
"""``(event, tenant, ts, offset) -> observations``: one event type's generated observer."""

MAX_OBSERVERS = 1024
"""Event types with a compiled observer kept (the spec's own, plus any others met)."""


def compile_observer(plans: Sequence[_Compiled], kind: Any) -> Observer:
    """Every prediction's observation of an event of type ``kind``, as one generated function.

    Built like the metric readers (:func:`~operators.extract.compile_reader`):
    each field any prediction reads (entity key, filter paths, features) is
    looked up once, what depends on the type alone (is it the outcome, a
    feature event, the ``n_<type>`` count) is decided here rather than per
    event, and every filter clause and feature is written out. Values from
    the spec enter only as constants, so a spec cannot inject code.
    """
    src = CodeWriter()
    src.emit(0, "def observe(event, tenant, ts, offset):")
    active = []
    for index, plan in enumerate(plans):
        spec = plan.spec
        outcome = kind == spec.outcome.event
        feature = not spec.events or kind in spec.events
        if outcome or feature:
            active.append((index, plan, outcome, feature))
    for _, plan, _outcome, feature in active:  # every field once, up front
        spec = plan.spec
        src.raw(spec.key)
        if feature:
            for cond in spec.filter:
                src.raw(cond.path)
            for f in spec.features:
                src.raw(f.path)
    src.emit(1, "out = []")
    for index, plan, outcome, feature in active:
        spec = plan.spec
        key = src.raw(spec.key)
        src.emit(1, "while True:")  # one pass; `break` ends this prediction
        src.emit(2, f"k = type({key})")
        src.emit(2, "if k is str:")
        src.emit(3, f"if not {key} or len({key}) > {MAX_ENTITY_ID}:")
        src.emit(4, "break")
        src.emit(3, f"entity = {key}")
        src.emit(2, "elif k is int:")
        src.emit(3, f"entity = str({key})")
        src.emit(3, f"if len(entity) > {MAX_ENTITY_ID}:")
        src.emit(4, "break")
        src.emit(2, "else:")
        src.emit(3, "break")
        if outcome:
            test = predicate(spec.outcome.filter)
            call = "" if test is None else f"if {src.const(test)}(event):"
            depth = 2 if test is None else 3
            if test is not None:
                src.emit(2, call)
            src.emit(depth, f"out.append((tenant, {index}, entity, ts, offset, True, ()))")
            src.emit(depth, "break")
            if test is None:
                continue  # the outcome's events are never feature events
        if not feature:
            src.emit(2, "break")
            continue
        for cond in spec.filter:
            src.condition(2, cond, "break")
        events = src.const(("count", "events", 1))
        per_type = src.const(("count", sys.intern(f"n_{kind}"), 1))
        src.emit(2, f"u = [{events}, {per_type}]")
        for f in spec.features:
            var = src.raw(f.path)
            path = src.const(f.path)
            src.emit(2, f"v = {var}")
            src.emit(2, "if v is not None and not isinstance(v, _containers):")
            if f.kind == "category":
                src.emit(3, "k = type(v)")
                src.emit(
                    3, "t = v if k is str else ('true' if v else 'false') if k is bool else str(v)"
                )
                if f.agg == "count":
                    name, prefix = src.const(plan.name), src.const(f.path + "=")
                    src.emit(3, f"u.append(('count', {name}({prefix}, t), 1))")
                else:
                    src.emit(3, f"u.append(('cat', {path}, t))")
            else:
                src.emit(3, "if isinstance(v, _numbers) and type(v) is not bool:")
                src.emit(4, "v = float(v)")
                src.emit(4, "if _isfinite(v):")
                src.emit(5, f"u.append(({src.const(f.agg)}, {path}, v))")
        src.emit(2, f"out.append((tenant, {index}, entity, ts, offset, False, tuple(u)))")
        src.emit(2, "break")
    src.emit(1, "return out")
    src.namespace["_containers"] = (dict, list)
    src.namespace["_numbers"] = (int, float)
    observer: Observer = src.build("observe")
    return observer


class EntityExtractor:
    """Observations of every prediction from one enriched event.

    Shared by a process's partitions; holds no recoverable state, only the
    compiled observers (one per event type, built on first sight) and a
    bounded cache of interned feature names.
    """

    __slots__ = ("_observers", "_plans", "lateness_ms")

    def __init__(self, predictions: Sequence[PredictionSpec], lateness_ms: int) -> None:
        self._plans = tuple(_Compiled(p) for p in predictions)
        self._observers: dict[Any, Observer] = {}
        self.lateness_ms = lateness_ms

    def observe(
        self, event: dict[str, Any], tenant: str, ts: int, offset: int
    ) -> list[Observation]:
        """What ``event`` tells each prediction (nothing when it carries no entity id)."""
        kind = event.get("type")
        observer = self._observers.get(kind)
        if observer is None:
            if len(self._observers) >= MAX_OBSERVERS:
                self._observers.clear()
            observer = self._observers[kind] = compile_observer(self._plans, kind)
        return observer(event, tenant, ts, offset)


class _Entity:
    """One open entity: first and last event time, numeric features and categories."""

    __slots__ = ("cats", "first", "last", "n", "values")

    def __init__(self, ts: int) -> None:
        self.first = ts
        self.last = ts
        self.n = 0
        self.values: dict[str, float] = {}
        self.cats: dict[str, str] = {}

    def __getstate__(self) -> tuple[int, int, int, dict[str, float], dict[str, str]]:
        return (self.first, self.last, self.n, self.values, self.cats)

    def __setstate__(self, state: tuple[int, int, int, dict[str, float], dict[str, str]]) -> None:
        self.first, self.last, self.n, self.values, self.cats = state

    def apply(self, ts: int, updates: Iterable[Update]) -> None:
        self.last = max(self.last, ts)
        self.n += 1
        values = self.values
        for op, key, value in updates:
            name = sys.intern(key)  # pickled once per snapshot, not once per entity
            if op == "count":
                values[name] = values.get(name, 0.0) + 1.0
            elif op == "cat":
                self.cats[name] = sys.intern(value)
            elif op == "sum":
                values[name] = values.get(name, 0.0) + value
            elif op == "max":
                values[name] = max(values.get(name, value), value)
            else:
                values[name] = value

    def features(self) -> dict[str, float]:
        """The model's input: log-scaled counts and sums, the age, one-hot categories."""
        x = {name: math.copysign(math.log1p(abs(v)), v) for name, v in self.values.items()}
        x["age_s"] = math.log1p((self.last - self.first) / 1000)
        for field, value in self.cats.items():
            x[f"{field}={value}"] = 1.0
        return x


class _Tenant:
    __slots__ = ("dropped", "entities", "model")

    def __init__(self, spec: PredictionSpec) -> None:
        self.model = OnlineClassifier(
            spec.model, window=spec.window, threshold=spec.threshold, seed=spec.seed
        )
        self.entities: OrderedDict[str, _Entity] = OrderedDict()
        self.dropped = 0


class EntityTracker:
    """The state of one prediction over every tenant; see the module docstring."""

    def __init__(
        self, spec: PredictionSpec, partitions: Sequence[str], *, lateness_ms: int
    ) -> None:
        self.spec = spec
        self.lateness_ms = lateness_ms
        self.clocks: dict[str, int] = dict.fromkeys(partitions, NEVER)
        self.pending: list[tuple[int, str, int, Observation]] = []
        self.tenants: dict[str, _Tenant] = {}
        self.watermark = NEVER

    def snapshot(self) -> bytes:
        """The whole state as one pickle (clocks, pending observations, models, entities)."""
        return pickle.dumps(
            (self.clocks, self.pending, self.tenants, self.watermark), pickle.HIGHEST_PROTOCOL
        )

    def restore(self, snapshot: bytes | None) -> EntityTracker:
        """Resume from a :meth:`snapshot` (``None``: start empty); returns ``self``."""
        if snapshot is not None:
            clocks, self.pending, self.tenants, self.watermark = pickle.loads(snapshot)  # noqa: S301 - our own snapshot
            heapq.heapify(self.pending)  # a heap already, unless written before it was one
            # Partitions that no longer exist must not hold the watermark back.
            self.clocks.update({p: c for p, c in clocks.items() if p in self.clocks})
        return self

    def apply(
        self, partition: str, clock: int, observations: Sequence[Observation]
    ) -> list[PredictionOut]:
        """Take one partition's clock and observations; return what the watermark released.

        The result holds every resolution, then the newest state of each
        entity still open that was touched, then one :class:`ModelStatsRecord`
        per tenant touched. Records of entities depend on the events only;
        the stats are those after the whole release.
        """
        # A partition's updates come in order: its newest clock is its clock (it
        # moves back only from IDLE, when a partition that had nothing delivers).
        self.clocks[partition] = clock
        pending = self.pending
        for obs in observations:
            heapq.heappush(pending, (obs[3], partition, obs[4], obs))
        low = min(self.clocks.values(), default=NEVER)
        if low == NEVER or low >= IDLE:
            # Some partition has not reported, or none ever delivered: no evidence
            # of time passing (as in the windows stage).
            return []
        return self._release(low - self.lateness_ms)

    def flush(self) -> list[PredictionOut]:
        """At the end of a bounded input: release everything up to the newest clock.

        Entities whose horizon the newest clock has not passed stay open.
        """
        newest = max((c for c in self.clocks.values() if c < IDLE), default=NEVER)
        newest = max([newest, *(item[0] + 1 for item in self.pending)])
        return self._release(newest)

    def _release(self, watermark: int) -> list[PredictionOut]:
        if watermark <= self.watermark:
            return []
        pending = self.pending
        self.watermark = watermark
        # A heap on (ts, partition, offset), unique per observation: what is due comes
        # out in release order, in time proportional to it (nothing else is touched).
        released = []
        while pending and pending[0][0] < watermark:
            released.append(heapq.heappop(pending))
        out: dict[tuple[str, str], PredictionRecord] = {}
        resolved: list[PredictionRecord] = []
        touched: set[str] = set()

        def settle(record: PredictionRecord) -> None:
            # A resolution replaces the episode's open record; a new episode of
            # the same id after it in this release adds a new one.
            resolved.append(record)
            out.pop((record.tenant, record.entity_id), None)

        for ts, _, _, (tenant, _, entity_id, _, _, outcome, updates) in released:
            state = self.tenants.get(tenant)
            if state is None:
                state = self.tenants[tenant] = _Tenant(self.spec)
            touched.add(tenant)
            self._expire(tenant, state, ts, settle)
            entity = state.entities.get(entity_id)
            if outcome:
                if entity is not None:
                    del state.entities[entity_id]
                    settle(self._resolve(tenant, state, entity_id, entity, ts, True))
                continue
            if entity is None:
                entity = state.entities[entity_id] = _Entity(ts)
                while len(state.entities) > self.spec.max_entities:
                    gone, _ = state.entities.popitem(last=False)
                    state.dropped += 1
                    out.pop((tenant, gone), None)
            entity.apply(ts, updates)
            out[(tenant, entity_id)] = self._record(tenant, state, entity_id, entity)
        for tenant, state in self.tenants.items():
            before = len(resolved)
            self._expire(tenant, state, watermark, settle)
            if len(resolved) > before:
                touched.add(tenant)
        stats = [
            ModelStatsRecord(
                tenant,
                self.spec.name,
                self.spec.entity,
                watermark,
                self.tenants[tenant].model.stats,
                len(self.tenants[tenant].entities),
                self.tenants[tenant].dropped,
            )
            for tenant in sorted(touched)
        ]
        return [*resolved, *out.values(), *stats]

    def _expire(
        self, tenant: str, state: _Tenant, now: int, emit: Callable[[PredictionRecord], None]
    ) -> None:
        horizon = self.spec.horizon_ms
        entities = state.entities
        while entities:
            entity_id, entity = next(iter(entities.items()))
            if entity.first + horizon >= now:
                return
            entities.popitem(last=False)
            emit(self._resolve(tenant, state, entity_id, entity, entity.first + horizon, False))

    def _resolve(
        self, tenant: str, state: _Tenant, entity_id: str, entity: _Entity, ts: int, positive: bool
    ) -> PredictionRecord:
        p = state.model.learn_one(entity.features(), positive)
        return PredictionRecord(
            tenant,
            self.spec.name,
            self.spec.entity,
            entity_id,
            ts,
            p,
            "positive" if positive else "negative",
            entity.n,
            state.model.learned - 1,
        )

    def _record(
        self, tenant: str, state: _Tenant, entity_id: str, entity: _Entity
    ) -> PredictionRecord:
        return PredictionRecord(
            tenant,
            self.spec.name,
            self.spec.entity,
            entity_id,
            entity.last,
            state.model.predict_proba(entity.features()),
            "open",
            entity.n,
            state.model.learned,
        )

    def open_entities(self, tenant: str) -> int:
        """How many entities of ``tenant`` are open."""
        state = self.tenants.get(tenant)
        return 0 if state is None else len(state.entities)
