"""The CAD-OSE-style member (``benchmarks/context_ose.py``) on small series.

It was measured as a member of ``riffle`` (issue 17, round 4; see
docs/models.md) and did not earn its place, so no detector uses it; these
tests pin the behaviour those measurements rely on: nothing is scored during
the probation, a pattern it has learned scores 0 while a break of it does
not, the rest after a high score, the bounded memory and the pickle round
trip (it would be recovery state).
"""

from __future__ import annotations

import pickle
import random

from benchmarks.context_ose import ContextNovelty


def _square(n: int, period: int = 8) -> list[float]:
    return [10.0 if i % period < period // 2 else 0.0 for i in range(n)]


def test_the_probation_scores_nothing_then_a_learned_pattern_scores_zero() -> None:
    cad = ContextNovelty(probation=100, rest=0.0)
    scores = [cad.update(v) for v in _square(400)]
    assert scores[:100] == [0.0] * 100
    assert max(scores[300:]) == 0.0


def test_a_break_of_a_learned_pattern_scores_high() -> None:
    cad = ContextNovelty(probation=100, rest=0.0)
    for v in _square(400):
        cad.update(v)
    # A value the grid never saw (beyond the probation's range) at a point
    # where the square wave predicted its low level.
    assert cad.update(30.0) > 0.5


def test_after_a_high_score_it_rests() -> None:
    cad = ContextNovelty(probation=100, rest=0.2)  # 20 points of rest
    for v in _square(400):
        cad.update(v)
    first = cad.update(30.0)
    assert first >= cad.threshold
    after = [cad.update(v) for v in [30.0, -20.0, 50.0, -40.0] * 5]
    assert after == [0.0] * 20


def test_memory_is_bounded_and_the_pickle_gives_identical_next_scores() -> None:
    rng = random.Random(3)
    cad = ContextNovelty(probation=50, max_contexts=300)
    for _ in range(2000):
        cad.update(rng.gauss(0.0, 1.0))
    assert cad.contexts <= 300
    clone = pickle.loads(pickle.dumps(cad))
    tail = [rng.gauss(0.0, 1.0) for _ in range(200)]
    assert [clone.update(v) for v in tail] == [cad.update(v) for v in tail]


def test_a_known_range_skips_the_held_probation() -> None:
    # NAB's CAD-OSE is told the file's range up front; given it, the member
    # learns from the first value (and the probation is not held).
    told = ContextNovelty(probation=100, rest=0.0, lo=0.0, hi=10.0)
    held = ContextNovelty(probation=100, rest=0.0)
    values = _square(300)
    a = [told.update(v) for v in values]
    b = [held.update(v) for v in values]
    assert a[100:] == b[100:]
    assert any(a[:100])
