"""Does a CAD-OSE (or ARTime) member earn its place in ``riffle``? Issue 17, rounds 4 and 5.

    python -m benchmarks.nab_members [--member ose|artime] [--grid probation|file] [--variants]
                                     [--data D] [--windows F]

Runs :class:`~benchmarks.context_ose.ContextNovelty` (CAD-OSE's
algorithm) over the NAB subset, prints its own in-sample and
leave-one-family-out (threshold) figures, then the ``riffle`` defaults
combined with it — ``max(riffle, w x member)`` and ``(1 - w) riffle + w x
member`` for each ``w`` of :data:`WEIGHTS` — and the lofo figure with ``w``
(and the threshold) chosen on the other families, the way
``benchmarks.nab`` chooses its variants; with ``--variants``, also the
lofo figure with ``riffle``'s :data:`~benchmarks.nab.VARIANTS` and ``w``
chosen together (``max`` only; about 6 more CPU-minutes). The combination
is offline (the
member's alerts are not followed by ``riffle``'s rest; the member rests
after its own, as CAD-OSE does).

``--grid probation`` (the default) quantises on the range of the series'
probation, as a stream can; ``--grid file`` gives the member each file's
minimum and maximum before its first value, as NAB gives CAD-OSE: a
look-ahead no stream has, kept to check the implementation against NAB's
published CAD-OSE scores and to measure what the look-ahead is worth. About
2-4 CPU-minutes (the member runs at 1-2k points per CPU-second).

``--member artime`` measures :class:`~benchmarks.artime.ARTime` (ARTime's
algorithm) the same way instead, with the same two grids (``file``: the
file's range, as NAB gives ARTime; ``probation``: the probation's range,
later levels clipped). Its memory line counts ART categories and gives
the largest and the median file's; it runs at ~130k points per
CPU-second, so the run is the riffle runs' (under a CPU-minute, plus the
variants' with ``--variants``).
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

from benchmarks.artime import footprint, run_artime
from benchmarks.context_ose import ContextNovelty
from benchmarks.nab import (
    NAB_DIR,
    PROFILES,
    VARIANTS,
    Series,
    leave_one_family_out,
    leave_one_family_out_of,
    load_corpus,
    run_detector,
    score_profile,
)

WEIGHTS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0)
"""The member's weights the combination is measured at (0: ``riffle`` alone)."""


def run_member(corpus: list[Series], grid: str) -> tuple[list[list[float]], float, int, int]:
    """Member scores of every row, points per CPU-second, and the largest memory and pickle."""
    scores = []
    points = contexts = size = 0
    started = time.process_time()
    for series in corpus:
        if grid == "file":
            lo, hi = min(series.values), max(series.values)
            member = ContextNovelty(probation=series.probation, lo=lo, hi=hi)
        else:
            member = ContextNovelty(probation=series.probation)
        scores.append([member.update(v) for v in series.values])
        points += len(series.values)
        contexts = max(contexts, member.contexts)
        size = max(size, len(pickle.dumps(member)))
    return scores, points / max(time.process_time() - started, 1e-9), contexts, size


def combine(
    base: list[list[float]], member: list[list[float]], w: float, how: str
) -> list[list[float]]:
    """``max(base, w x member)`` or ``(1 - w) base + w x member``, row by row."""
    if how == "max":
        return [
            [max(a, w * b) for a, b in zip(r, m, strict=True)]
            for r, m in zip(base, member, strict=True)
        ]
    return [
        [(1 - w) * a + w * b for a, b in zip(r, m, strict=True)]
        for r, m in zip(base, member, strict=True)
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--member", choices=("ose", "artime"), default="ose", help="CAD-OSE (default) or ARTime"
    )
    parser.add_argument("--grid", choices=("probation", "file"), default="probation")
    parser.add_argument(
        "--variants", action="store_true", help="also choose riffle's variants with w (max)"
    )
    parser.add_argument("--data", type=Path, default=NAB_DIR / "data")
    parser.add_argument("--windows", type=Path, default=NAB_DIR / "combined_windows.json")
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data, args.windows)
    if args.member == "artime":
        member, rate, categories, sizes = run_artime(corpus, args.grid)
        print(f"== member ARTime (grid: {args.grid}): {footprint(rate, categories, sizes)}")
    else:
        member, rate, contexts, size = run_member(corpus, args.grid)
        print(
            f"== member (grid: {args.grid}): {rate:,.0f} points per CPU-second; "
            f"largest memory {contexts:,} contexts, pickle {size:,} bytes"
        )
    for p, weights in PROFILES.items():
        score, threshold = score_profile(corpus, member, weights)
        lofo, _ = leave_one_family_out(corpus, member, weights)
        print(f"member alone {p}={score:.1f} @{threshold:.3f}; lofo threshold {lofo:.1f}")
    riffle, _ = run_detector("riffle", corpus)
    for how in ("max", "mix"):
        combined = [combine(riffle, member, w, how) for w in WEIGHTS]
        for w, scores in zip(WEIGHTS, combined, strict=True):
            ins = " ".join(f"{score_profile(corpus, scores, x)[0]:.1f}" for x in PROFILES.values())
            out = " ".join(
                f"{leave_one_family_out(corpus, scores, x)[0]:.1f}" for x in PROFILES.values()
            )
            print(f"{how} w={w}: in-sample {ins}; lofo threshold {out}")
        parts = []
        for p, weights in PROFILES.items():
            chosen_lofo, _, chosen = leave_one_family_out_of(corpus, combined, weights)
            picks = "/".join(f"{WEIGHTS[i]}" for i in chosen.values())
            parts.append(f"{p}={chosen_lofo:.1f} (w {picks})")
        print(f"{how}, w and threshold chosen on the other families: {' '.join(parts)}")
    if args.variants:
        names = [label for label, _ in VARIANTS["riffle"]]
        candidates = [riffle] + [
            run_detector("riffle", corpus, **kw)[0] for _, kw in VARIANTS["riffle"][1:]
        ]
        grid = [combine(c, member, w, "max") for c in candidates for w in WEIGHTS]
        parts = []
        for p, weights in PROFILES.items():
            chosen_lofo, _, chosen = leave_one_family_out_of(corpus, grid, weights)
            picks = ", ".join(
                f"{names[i // len(WEIGHTS)]} w {WEIGHTS[i % len(WEIGHTS)]}" for i in chosen.values()
            )
            parts.append(f"{p}={chosen_lofo:.1f} ({picks})")
        print(f"max, variants, w and threshold chosen on the other families: {' '.join(parts)}")


if __name__ == "__main__":
    main()
