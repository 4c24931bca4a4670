"""A contextual anomaly detector in the manner of CAD-OSE, as a member for ``riffle``.

CAD-OSE (Mikhail Smirnov's Contextual Anomaly Detector, open source
edition, one of NAB's detectors) describes each value by a few *facts* —
the bits of its quantised value — and remembers *contexts*: pairs (facts of
the step before, with the contexts active then; facts now). Each step it
predicts the facts the best-scoring contexts expect and scores

    (1 - share of the contexts selected by the previous step that came true
       + share of the possible new contexts that really were new) / 2

when the value had a fact that was not predicted (0 otherwise). This is an
independent implementation of that algorithm from its published
description (NAB's ``nab/detectors/context_ose``); no code is copied.

One change for a stream: NAB gives CAD-OSE the whole file's minimum and
maximum before its first value, which a stream cannot know. Here the grid
is the range of the series' probation: its values are held, then learned
in order once the probation ends (they score 0, as NAB does not score the
probation); a later value beyond that range quantises past the grid's 8
levels, and its extra high level is one more fact, so it cannot have been
predicted.

The memory of contexts grows with the patterns a series shows; it is
capped at ``max_contexts`` (then no new context is learned), so the state
stays bounded.
"""

from __future__ import annotations

import math

_NEURON = 1 << 20
"""Offset of the facts that stand for an active context (sensor facts are small)."""
_HIGH = 64
"""Offset of the fact that holds a value's levels beyond the grid's 8 (``q >> 3``)."""


class ContextNovelty:
    """CAD-OSE's score for one series (see the module docstring).

    ``probation`` points fix the quantisation grid (``2 ** bits`` levels of
    their range) and are learned when it ends; ``rest`` x ``probation`` is
    CAD-OSE's rest after a score of ``threshold`` (0.75); ``max_left`` the
    longest left semi-context a crossing may create (7) and ``neurons`` the
    number of active contexts that join the next step's facts (15) — all
    CAD-OSE's values.
    """

    __slots__ = (
        "_c_act",
        "_c_pred",
        "_c_right",
        "_c_sel",
        "_c_zero",
        "_fact_left",
        "_fact_right",
        "_held",
        "_left_cross",
        "_left_ctx",
        "_left_group",
        "_left_key",
        "_left_len",
        "_lo",
        "_new_id",
        "_predicted",
        "_right_key",
        "_right_len",
        "_since_high",
        "_step",
        "bits",
        "max_contexts",
        "max_left",
        "neurons",
        "probation",
        "rest",
        "threshold",
    )

    def __init__(
        self,
        *,
        probation: int = 500,
        bits: int = 3,
        rest: float = 0.2,
        threshold: float = 0.75,
        max_left: int = 7,
        neurons: int = 15,
        max_contexts: int = 20_000,
        lo: float | None = None,
        hi: float | None = None,
    ) -> None:
        self.probation = probation
        self.bits = bits
        self.rest = rest
        self.threshold = threshold
        self.max_left = max_left
        self.neurons = neurons
        self.max_contexts = max_contexts
        self._held: list[float] | None = []
        self._lo = 0.0
        self._step = 1.0
        if lo is not None and hi is not None:
            self._set_grid(lo, hi)
            self._held = None
        self._left_key: dict[tuple[int, ...], int] = {}
        self._left_len: list[int] = []
        self._left_ctx: list[dict[int, int]] = []
        self._right_key: dict[tuple[int, ...], int] = {}
        self._right_len: list[int] = []
        self._fact_left: dict[int, list[int]] = {}
        self._fact_right: dict[int, list[int]] = {}
        self._c_sel: list[int] = []
        self._c_pred: list[int] = []
        self._c_act: list[int] = []
        self._c_right: list[tuple[int, ...]] = []
        self._c_zero: list[bool] = []
        self._left_cross: dict[int, list[int]] = {}
        self._left_group: tuple[int, ...] = ()
        self._new_id = -1
        self._predicted: frozenset[int] = frozenset()
        self._since_high = 0

    def __getstate__(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    def _set_grid(self, lo: float, hi: float) -> None:
        top = 2**self.bits - 1
        span = hi - lo
        self._lo = lo
        self._step = (span if span > 0 and math.isfinite(span) else float(top)) / top

    @property
    def contexts(self) -> int:
        """How many contexts the memory holds."""
        return len(self._c_sel)

    def update(self, x: float) -> float:
        """CAD-OSE's score of ``x`` (0 during the probation and the rest), then learn it."""
        held = self._held
        if held is not None:
            held.append(x)
            if len(held) < self.probation:
                return 0.0
            self._set_grid(min(held), max(held))
            self._held = None
            for value in held:
                self._score(value)
            # The probation is not scored; the rest starts afresh.
            self._since_high = round(self.rest * self.probation)
            return 0.0
        return self._score(x)

    def _facts(self, x: float) -> tuple[tuple[int, ...], dict[int, float]]:
        scaled = (x - self._lo) / self._step
        q = math.floor(scaled) if math.isfinite(scaled) else 0
        facts = []
        weights: dict[int, float] = {}
        for i in range(self.bits):
            fact = 2 * i + (q >> i & 1)
            facts.append(fact)
            weights[fact] = float(1 << i)
        high = q >> self.bits
        if high:
            fact = _HIGH + high if high > 0 else -_HIGH + high
            facts.append(fact)
            weights[fact] = float(1 << self.bits)
        return tuple(sorted(facts)), weights

    def _score(self, x: float) -> float:
        facts, weights = self._facts(x)
        unpredicted = sum(w for f, w in weights.items() if f not in self._predicted)
        selected_true, new_share = self._step_contexts(facts)
        score = (1.0 - selected_true + new_share) / 2.0 if unpredicted > 0 else 0.0
        rest = round(self.rest * self.probation)
        out = score if self._since_high >= rest else 0.0
        self._since_high = 0 if score >= self.threshold else self._since_high + 1
        return out

    def _semi(
        self,
        facts: tuple[int, ...],
        keys: dict[tuple[int, ...], int],
        lengths: list[int],
        index: dict[int, list[int]],
    ) -> int | None:
        """The id of a left or right semi-context, made if new (``None``: memory full)."""
        sid = keys.get(facts)
        if sid is None:
            if len(self._c_sel) >= self.max_contexts:
                return None
            sid = keys[facts] = len(lengths)
            lengths.append(len(facts))
            for fact in facts:
                index.setdefault(fact, []).append(sid)
        return sid

    def _context(self, left: tuple[int, ...], right: tuple[int, ...], zero: bool) -> bool:
        """Find or create the context (left facts, right facts); True if it is new."""
        lid = self._semi(left, self._left_key, self._left_len, self._fact_left)
        if lid is None:
            return False
        if lid == len(self._left_ctx):
            self._left_ctx.append({})
        rid = self._semi(right, self._right_key, self._right_len, self._fact_right)
        if rid is None:
            return False
        contexts = self._left_ctx[lid]
        cid = contexts.get(rid)
        if cid is None:
            if len(self._c_sel) >= self.max_contexts:
                return False
            cid = contexts[rid] = len(self._c_sel)
            self._c_sel.append(0)
            self._c_pred.append(0)
            self._c_act.append(0)
            self._c_right.append(right)
            self._c_zero.append(zero)
            if zero:
                self._new_id = cid
            return True
        if zero:
            self._c_zero[cid] = True
        return False

    def _step_contexts(self, facts: tuple[int, ...]) -> tuple[float, float]:
        """One step of the context memory: (share of predictions that came true, share new)."""
        potential: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
        new_flag = False
        if self._left_group:
            zero = (self._left_group, facts)
            potential.add(zero)
            new_flag = self._context(self._left_group, facts, True)
        # The right semi-contexts that the facts now match, and by which facts.
        right_cross: dict[int, list[int]] = {}
        for fact in facts:
            for rid in self._fact_right.get(fact, ()):
                right_cross.setdefault(rid, []).append(fact)
        # The contexts selected by the previous step: did they come true?
        right_len, c_sel, c_pred, c_act, c_zero = (
            self._right_len,
            self._c_sel,
            self._c_pred,
            self._c_act,
            self._c_zero,
        )
        active: list[int] = []
        candidates: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        selected = 0
        new_id, max_left = self._new_id, self.max_left
        for lid, left_facts in self._left_cross.items():
            full = len(left_facts) == self._left_len[lid]
            for rid, cid in self._left_ctx[lid].items():
                if cid == new_id:
                    continue
                matched = right_cross.get(rid)
                if full:
                    selected += 1
                    c_sel[cid] += right_len[rid]
                    if matched:
                        c_pred[cid] += len(matched)
                        if len(matched) == right_len[rid]:
                            c_act[cid] += 1
                            active.append(cid)
                        elif c_zero[cid] and new_flag and len(left_facts) <= max_left:
                            candidates.append((tuple(left_facts), tuple(matched)))
                elif matched and c_zero[cid] and new_flag and len(left_facts) <= max_left:
                    candidates.append((tuple(left_facts), tuple(matched)))
        self._new_id = -1
        selected_true = len(active) / selected if selected else 0.0
        active.sort(key=lambda c: (c_act[c], c))
        group = set(facts)
        group.update(_NEURON + c for c in active[-self.neurons :])
        self._left_group = tuple(sorted(group))
        added = sum(self._context(left, right, False) for left, right in candidates)
        potential.update(candidates)
        # The left semi-contexts the new group matches; the best full ones predict.
        left_cross: dict[int, list[int]] = {}
        for fact in self._left_group:
            for lid in self._fact_left.get(fact, ()):
                left_cross.setdefault(lid, []).append(fact)
        self._left_cross = left_cross
        best = 0.0
        predicted: set[int] = set()
        for lid, left_facts in left_cross.items():
            if len(left_facts) != self._left_len[lid]:
                continue
            for cid in self._left_ctx[lid].values():
                weight = c_pred[cid] / c_sel[cid] if c_sel[cid] > 0 else 0.0
                if weight > best:
                    best = weight
                    predicted = set(self._c_right[cid])
                elif weight == best:
                    predicted.update(self._c_right[cid])
        self._predicted = frozenset(predicted)
        added += new_flag
        new_share = added / len(potential) if new_flag and potential else 0.0
        return selected_true, new_share
