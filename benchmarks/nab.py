"""The NAB harness: Riffle's detectors over the Numenta Anomaly Benchmark, scored as NAB does.

    python -m benchmarks.nab --data DIR --windows FILE --out DIR [--detector NAME]

Every CSV under ``DIR`` (``<family>/<file>.csv`` with ``timestamp,value``)
is fed one row at a time to a new detector of the production class (the
same ``update`` the dataflow's model stage calls). Results go to
``OUT/<detector>/<family>/<detector>_<file>.csv`` with
``timestamp,value,anomaly_score,label``. Scoring follows NAB's rules
(probation, earliest detection per window with the scaled sigmoid, false
positives weighted by their distance past the previous window, one
threshold for the whole corpus chosen to maximise each profile's score).

Without ``--detector`` the two baselines run first and Riffle's detector
last, so the output ends with its line of profile scores.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from operators.models.registry import DETECTORS, make_detector

PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}
"""Profile name → (tpWeight, fnWeight, fpWeight), as in NAB's ``profiles.json``."""

ORDER = ("windowed_gaussian", "halfspacetrees", "riffle")


def sigmoid(x: float) -> float:
    """NAB's scaled sigmoid ``S(x) = 2 / (1 + e^(5x)) - 1``."""
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


@dataclass
class Series:
    """One NAB file: its rows and its anomaly windows as inclusive row ranges."""

    family: str
    name: str
    timestamps: list[str]
    ts_ms: list[int]
    values: list[float]
    windows: list[tuple[int, int]]

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    @property
    def probation(self) -> int:
        return min(math.floor(0.15 * len(self.values)), 750)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts).replace(tzinfo=UTC)


def load_corpus(data: Path, windows_file: Path) -> list[Series]:
    """Every ``<family>/<file>.csv`` under ``data``, with its windows from ``windows_file``."""
    labels: dict[str, list[list[str]]] = json.loads(windows_file.read_text())
    corpus = []
    for path in sorted(data.glob("*/*.csv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        stamps = [row["timestamp"] for row in rows]
        ts_ms = [int(_parse(s).timestamp() * 1000) for s in stamps]
        key = f"{path.parent.name}/{path.name}"
        windows = []
        for start, end in labels.get(key, []):
            lo, hi = int(_parse(start).timestamp() * 1000), int(_parse(end).timestamp() * 1000)
            inside = [i for i, t in enumerate(ts_ms) if lo <= t <= hi]
            if inside:
                windows.append((inside[0], inside[-1]))
        corpus.append(
            Series(
                path.parent.name,
                path.name,
                stamps,
                ts_ms,
                [float(row["value"]) for row in rows],
                windows,
            )
        )
    return corpus


def run_detector(name: str, corpus: list[Series]) -> tuple[list[list[float]], float]:
    """Scores of every row of every file, and the detector's points per second."""
    scores = []
    points = 0
    started = time.perf_counter()
    for series in corpus:
        detector = make_detector(name)
        update = detector.update
        scores.append(
            [update(t, v).score for t, v in zip(series.ts_ms, series.values, strict=True)]
        )
        points += len(series.values)
    return scores, points / max(time.perf_counter() - started, 1e-9)


def write_results(out: Path, name: str, corpus: list[Series], scores: list[list[float]]) -> None:
    """NAB results files, one per input file."""
    for series, file_scores in zip(corpus, scores, strict=True):
        folder = out / name / series.family
        folder.mkdir(parents=True, exist_ok=True)
        inside = [0] * len(series.values)
        for lo, hi in series.windows:
            for i in range(lo, hi + 1):
                inside[i] = 1
        with (folder / f"{name}_{series.name}").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["timestamp", "value", "anomaly_score", "label"])
            for row in zip(series.timestamps, series.values, file_scores, inside, strict=True):
                writer.writerow(row)


def score_profile(
    corpus: list[Series], scores: list[list[float]], profile: tuple[float, float, float]
) -> tuple[float, float]:
    """NAB's normalised score for the best single threshold, and that threshold."""
    tp_w, fn_w, fp_w = profile
    s_left = sigmoid(-1.0)
    rows: list[tuple[float, int, int, float]] = []  # score, window id (-1: none), row, weight
    n_windows = 0
    for series, file_scores in zip(corpus, scores, strict=True):
        wins = series.windows
        owner = [-1] * len(series.values)
        for w, (lo, hi) in enumerate(wins):
            for i in range(lo, hi + 1):
                owner[i] = n_windows + w
        prev: tuple[int, int] | None = None
        next_window = 0
        for i in range(series.probation, len(series.values)):
            while next_window < len(wins) and wins[next_window][1] < i:
                prev = wins[next_window]
                next_window += 1
            if owner[i] >= 0:
                lo, hi = wins[owner[i] - n_windows]
                width = hi - lo + 1
                weight = tp_w * sigmoid(-(hi - i + 1) / width) / s_left
            elif prev is not None:
                lo, hi = prev
                p = abs(hi - i) / max(hi - lo, 1)
                weight = fp_w * (sigmoid(p) if p < 3 else -1.0)
            else:
                weight = -fp_w
            rows.append((file_scores[i], owner[i], i, weight))
        n_windows += len(wins)
    null = -fn_w * n_windows
    perfect = tp_w * n_windows
    rows.sort(key=lambda r: -r[0])
    earliest: dict[int, tuple[int, float]] = {}
    total = null
    best, best_threshold = null, math.inf
    for k, (score, window, index, weight) in enumerate(rows):
        if window < 0:
            total += weight
        else:
            seen = earliest.get(window)
            if seen is None:
                total += weight + fn_w
                earliest[window] = (index, weight)
            elif index < seen[0]:
                total += weight - seen[1]
                earliest[window] = (index, weight)
        if (k + 1 == len(rows) or rows[k + 1][0] != score) and total > best:
            best, best_threshold = total, score
    return 100.0 * (best - null) / (perfect - null), best_threshold


def raw_at(
    corpus: list[Series],
    scores: list[list[float]],
    profile: tuple[float, float, float],
    threshold: float,
) -> float:
    """NAB's raw (unnormalised) score of ``corpus`` with detections at ``score >= threshold``."""
    tp_w, fn_w, fp_w = profile
    s_left = sigmoid(-1.0)
    total = 0.0
    for series, file_scores in zip(corpus, scores, strict=True):
        wins = series.windows
        hit = [False] * len(wins)
        prev: tuple[int, int] | None = None
        w = 0
        for i in range(series.probation, len(series.values)):
            while w < len(wins) and wins[w][1] < i:
                prev = wins[w]
                w += 1
            if file_scores[i] < threshold:
                continue
            if w < len(wins) and wins[w][0] <= i:
                lo, hi = wins[w]
                if not hit[w]:
                    hit[w] = True
                    total += tp_w * sigmoid(-(hi - i + 1) / (hi - lo + 1)) / s_left
            elif prev is not None:
                lo, hi = prev
                p = abs(hi - i) / max(hi - lo, 1)
                total += fp_w * (sigmoid(p) if p < 3 else -1.0)
            else:
                total -= fp_w
        total -= fn_w * hit.count(False)
    return total


def leave_one_family_out(
    corpus: list[Series], scores: list[list[float]], profile: tuple[float, float, float]
) -> tuple[float, dict[str, float]]:
    """Each family scored at the threshold best for the *other* families.

    Returns the four left-out raw scores summed and normalised over the whole
    corpus (as :func:`score_profile` normalises), and each family's own
    normalised score at its left-out threshold (its raw score if it has no
    window, as ``artificialNoAnomaly``).
    """
    tp_w, fn_w, _ = profile
    families = sorted({s.family for s in corpus})
    total = 0.0
    per_family: dict[str, float] = {}
    for family in families:
        rest = [(s, f) for s, f in zip(corpus, scores, strict=True) if s.family != family]
        own = [(s, f) for s, f in zip(corpus, scores, strict=True) if s.family == family]
        _, threshold = score_profile([s for s, _ in rest], [f for _, f in rest], profile)
        raw = raw_at([s for s, _ in own], [f for _, f in own], profile, threshold)
        total += raw
        n = sum(len(s.windows) for s, _ in own)
        per_family[family] = 100.0 * (raw + fn_w * n) / ((tp_w + fn_w) * n) if n else raw
    n_windows = sum(len(s.windows) for s in corpus)
    null, perfect = -fn_w * n_windows, tp_w * n_windows
    return 100.0 * (total - null) / (perfect - null), per_family


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True, help="NAB data folder")
    parser.add_argument("--windows", type=Path, required=True, help="combined_windows.json")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    parser.add_argument("--detector", choices=sorted(DETECTORS), help="one detector only")
    parser.add_argument(
        "--lofo",
        action="store_true",
        help="also print leave-one-family-out scores (threshold chosen on the other families)",
    )
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data, args.windows)
    n_points = sum(len(s.values) for s in corpus)
    n_windows = sum(len(s.windows) for s in corpus)
    print(f"{len(corpus)} files, {n_points} points, {n_windows} windows")
    names = [args.detector] if args.detector else list(ORDER)
    for name in names:
        scores, rate = run_detector(name, corpus)
        write_results(args.out, name, corpus, scores)
        results = {p: score_profile(corpus, scores, w) for p, w in PROFILES.items()}
        (args.out / name / "scores.json").write_text(
            json.dumps(
                {p: {"score": s, "threshold": t} for p, (s, t) in results.items()}
                | {"points_per_second": rate},
                indent=1,
            )
        )
        thresholds = " ".join(f"{p}@{t:.4f}" for p, (_, t) in results.items())
        print(f"== {name}: {rate:,.0f} points/s; thresholds {thresholds}")
        if args.lofo:
            for p, weights in PROFILES.items():
                combined, per_family = leave_one_family_out(corpus, scores, weights)
                families = " ".join(f"{f}={v:.1f}" for f, v in per_family.items())
                print(f"lofo {p}={combined:.1f} ({families})")
        print(" ".join(f"{p}={s:.1f}" for p, (s, _) in results.items()), flush=True)


if __name__ == "__main__":
    main()
