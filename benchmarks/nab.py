"""The NAB harness: Riffle's detectors over the Numenta Anomaly Benchmark, scored as NAB does.

    python -m benchmarks.nab [--data DIR] [--windows FILE] [--out DIR] [--detector NAME] [--no-lofo]

Every CSV under ``DIR`` (``<family>/<file>.csv`` with ``timestamp,value``;
default ``shared/datasets/nab`` beside the checkout) is fed one row at a
time to a new detector of the production class (the same ``update`` the
dataflow's model stage calls). As NAB tells its detectors, ``riffle`` is
told each file's probationary period (:data:`PROBATION_AWARE`). Results go
to ``OUT/<detector>/<family>/<detector>_<file>.csv`` with
``timestamp,value,anomaly_score,label``. Scoring follows NAB's rules
(probation, earliest detection per window with the scaled sigmoid, false
positives weighted by their distance past the previous window, one
threshold for the whole corpus chosen to maximise each profile's score).

Without ``--detector`` the two baselines run first and Riffle's detector
last, so the output ends with its line of profile scores (in-sample: the
threshold is the corpus's best). Before it, unless ``--no-lofo``, come the
leave-one-family-out figures: each family scored at the threshold best for
the other families (``lofo threshold``) and, for ``riffle``, with its
defaults chosen there too, among the alternatives in :data:`VARIANTS`
(``lofo``, the figure to judge the detector by).

Before that last line the harness prints the published NAB detectors' scores
on this corpus: ``benchmarks/nab_published.csv`` holds, for ARTime,
``numenta`` (HTM), ``contextOSE`` (CAD-OSE), ``randomCutForest`` and
``windowedGaussian`` and the three profiles, one row per file of the 35-file
subset (``detector,profile,file,threshold,score,tp,fp,fn``), copied from the
per-file score tables NAB publishes in the numenta/NAB repository,
``results/<detector>/<detector>_<profile>_scores.csv`` (``Score`` is the
file's raw score at that detector's full-corpus optimal threshold; ``tp``,
``fp``, ``fn`` count rows, as NAB's tables do). NAB is AGPL-3.0 licensed; only
its published numeric results are reproduced, with this citation. The
tables were read at these numenta/NAB commits (the versions whose totals
give NAB's published full-corpus scores):

    ARTime            standard, low FN 5a98e4f15e4508b2d1472ac31db2467dd87a9a28
                      low FP           7c58c75924b8830f22b9ba46f13a3f800282fec0
    numenta           all three        4b89bafeb45bbfdc8a393521cf70f2e0a3af8cc5
    contextOSE        standard         08d093545d801517e0e6f89c5b396319a93c0a1b
                      low FP           3a3fe451c37147e388cb9f47dc4f26e163dce335
                      low FN           645ad29894066199a1cd3a87cf3beecd65b53abf
    randomCutForest   standard, low FP 37b9a8cf992fda51dab68bc667ddeb76c4106b86
                      low FN           f10c0fde549c0f2aec1eacfb171913bd7f35c04f
    windowedGaussian  standard, low FP de8e91a479f0c8dde58811bfd9c851a6e982f523
                      low FN           bf2de21c7dc3f0d2ff6754bbe0efedcc3162eb94

Each published detector is normalised over this corpus with this harness's
null and perfect scores (:func:`subset_score`). Its threshold was
chosen on NAB's full corpus, so its score here is a lower bound of what a
threshold chosen on this subset would give (that needs NAB's per-row results
files, which are not copied).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from riffle.operators.models.registry import DETECTORS, make_detector

PROFILES: dict[str, tuple[float, float, float]] = {
    "standard": (1.0, 1.0, 0.11),
    "reward_low_FP_rate": (1.0, 1.0, 0.22),
    "reward_low_FN_rate": (1.0, 2.0, 0.11),
}
"""Profile name → (tpWeight, fnWeight, fpWeight), as in NAB's ``profiles.json``."""

ORDER = ("windowed_gaussian", "halfspacetrees", "riffle")

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"
"""The NAB subset beside the checkout (``data/`` and ``combined_windows.json``)."""

PROBATION_AWARE = frozenset({"riffle"})
"""Detectors given each file's probationary period (``probation=``), as NAB gives its detectors."""

VARIANTS: dict[str, tuple[tuple[str, dict[str, Any]], ...]] = {
    "riffle": (
        ("defaults", {}),
        ("rest 0.1", {"rest": 0.1}),
        ("rest 0.3", {"rest": 0.3}),
        ("mature 0.5", {"mature": 0.5}),
        ("mature 1.5", {"mature": 1.5}),
        ("point 0", {"point": 0.0}),
        ("point 0.3", {"point": 0.3}),
        ("point 0.75", {"point": 0.75}),
        ("anomaly 0.30", {"anomaly": 0.30, "warning": 0.27}),
        ("anomaly 0.44", {"anomaly": 0.44}),
        ("novelty x0.6", {"context_weight": 0.6}),
        ("novelty x1", {"context_weight": 1.0}),
        ("8 bands", {"levels": 8}),
        ("12 bands", {"levels": 12}),
        ("mean of 8", {"short": 8}),
        ("mean of 12", {"short": 12}),
    ),
}
"""Per detector, the alternatives to its defaults that the leave-one-family-out
figure chooses among on the other families (the first is the defaults):
each default that was chosen on NAB, beside the values it was chosen over,
so that no choice made with a family's files scores that family."""

PUBLISHED = Path(__file__).with_name("nab_published.csv")
"""NAB's published per-file scores of other detectors on this subset (see the module docstring)."""

PUBLISHED_DETECTORS = ("ARTime", "numenta", "contextOSE", "randomCutForest", "windowedGaussian")
"""The detectors in :data:`PUBLISHED`, in the order they are printed."""


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


def run_detector(name: str, corpus: list[Series], **kwargs: Any) -> tuple[list[list[float]], float]:
    """Scores of every row of every file, and the detector's points per second.

    ``kwargs`` go to every file's detector; one in :data:`PROBATION_AWARE`
    also gets the file's ``probation``.
    """
    scores = []
    points = 0
    started = time.perf_counter()
    for series in corpus:
        told = {"probation": series.probation} if name in PROBATION_AWARE else {}
        detector = make_detector(name, **kwargs, **told)
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
    rows.sort(key=lambda r: -r[0])
    earliest: dict[int, tuple[int, float]] = {}
    total = -fn_w * n_windows  # every window missed
    best, best_threshold = total, math.inf
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
    return normalised(best, n_windows, profile), best_threshold


def normalised(raw: float, n_windows: int, profile: tuple[float, float, float]) -> float:
    """NAB's normalisation of a raw score over files with ``n_windows`` windows in all.

    ``100 (raw - null) / (perfect - null)``: the null detector (every window
    missed, ``-fn_w`` each) scores 0, a perfect one (``tp_w`` each) 100.
    """
    tp_w, fn_w, _ = profile
    return 100.0 * (raw + fn_w * n_windows) / ((tp_w + fn_w) * n_windows)


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

    Returns the left-out raw scores summed and normalised over the whole
    corpus (as :func:`score_profile` normalises), and each family's own
    normalised score at its left-out threshold (its raw score if it has no
    window, as ``artificialNoAnomaly``).
    """
    combined, per_family, _ = leave_one_family_out_of(corpus, [scores], profile)
    return combined, per_family


def leave_one_family_out_of(
    corpus: list[Series],
    candidates: Sequence[list[list[float]]],
    profile: tuple[float, float, float],
) -> tuple[float, dict[str, float], dict[str, int]]:
    """Each family scored with the candidate *and* threshold best for the other families.

    ``candidates`` are the scores of the same corpus under alternative
    settings of a detector. For each family, the candidate and threshold
    that maximise the other families' score are chosen (the first candidate
    on ties), and the family is scored with them. Returns the left-out raw
    scores summed and normalised over the whole corpus, each family's
    normalised score (its raw score if it has no window) and the index of
    the candidate chosen for it.
    """
    if not candidates:
        raise ValueError("no candidate scores")
    families = sorted({s.family for s in corpus})
    total = 0.0
    per_family: dict[str, float] = {}
    chosen: dict[str, int] = {}
    for family in families:
        rest = [s for s in corpus if s.family != family]
        own = [s for s in corpus if s.family == family]
        best = (-math.inf, 0, math.inf)
        for index, scores in enumerate(candidates):
            rest_scores = [f for s, f in zip(corpus, scores, strict=True) if s.family != family]
            score, threshold = score_profile(rest, rest_scores, profile)
            if score > best[0]:
                best = (score, index, threshold)
        _, index, threshold = best
        own_scores = [
            f for s, f in zip(corpus, candidates[index], strict=True) if s.family == family
        ]
        raw = raw_at(own, own_scores, profile, threshold)
        total += raw
        n = sum(len(s.windows) for s in own)
        per_family[family] = normalised(raw, n, profile) if n else raw
        chosen[family] = index
    return normalised(total, sum(len(s.windows) for s in corpus), profile), per_family, chosen


@dataclass(frozen=True)
class PublishedFile:
    """One row of :data:`PUBLISHED`: a file's raw score at the detector's threshold."""

    threshold: float
    score: float
    tp: int
    fp: int
    fn: int


def load_published(path: Path) -> dict[str, dict[str, dict[str, PublishedFile]]]:
    """Detector → profile → ``family/file.csv`` → its published row."""
    table: dict[str, dict[str, dict[str, PublishedFile]]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            table.setdefault(row["detector"], {}).setdefault(row["profile"], {})[row["file"]] = (
                PublishedFile(
                    float(row["threshold"]),
                    float(row["score"]),
                    int(row["tp"]),
                    int(row["fp"]),
                    int(row["fn"]),
                )
            )
    return table


def subset_score(
    corpus: list[Series], raw: Mapping[str, float], profile: tuple[float, float, float]
) -> float:
    """The per-file raw scores ``raw`` (by file key) summed over ``corpus`` and normalised."""
    total = sum(raw[series.key] for series in corpus)
    return normalised(total, sum(len(series.windows) for series in corpus), profile)


def raw_by_file(
    corpus: list[Series],
    scores: list[list[float]],
    profile: tuple[float, float, float],
    threshold: float,
) -> dict[str, float]:
    """Each file's raw score with detections at ``score >= threshold``."""
    return {
        series.key: raw_at([series], [file_scores], profile, threshold)
        for series, file_scores in zip(corpus, scores, strict=True)
    }


def row_counts(series: Series, file_scores: list[float], threshold: float) -> tuple[int, int, int]:
    """NAB's row counts ``TP``, ``FP``, ``FN`` of a file (rows after probation only)."""
    inside = [False] * len(series.values)
    for lo, hi in series.windows:
        for i in range(lo, hi + 1):
            inside[i] = True
    tp = fp = fn = 0
    for i in range(series.probation, len(series.values)):
        hit = file_scores[i] >= threshold
        tp += hit and inside[i]
        fp += hit and not inside[i]
        fn += inside[i] and not hit
    return tp, fp, fn


def nab_rounded(scores: list[list[float]]) -> list[list[float]]:
    """Scores rounded to 12 significant digits, as NAB's Python 2 results files store them."""
    return [[float(f"{s:.12g}") for s in file_scores] for file_scores in scores]


def print_published(
    corpus: list[Series],
    published: dict[str, dict[str, dict[str, PublishedFile]]],
    name: str,
    scores: list[list[float]],
    results: Mapping[str, tuple[float, float]],
    gaussian: list[list[float]] | None,
) -> None:
    """The published detectors on this corpus beside ``name``, and the windowed-Gaussian control."""
    keys = [s.key for s in corpus]
    print(
        f"published results at their full-corpus threshold, on this subset ({len(corpus)} files; "
        f"this harness's per-file null and perfect; a lower bound of a subset-chosen threshold):"
    )
    for detector in PUBLISHED_DETECTORS:
        profiles = published.get(detector, {})
        missing = [k for k in keys if any(k not in profiles.get(p, {}) for p in PROFILES)]
        if missing:
            print(f"  {detector}: {len(missing)} files not in the published table, skipped")
            continue
        line = " ".join(
            f"{p}={subset_score(corpus, {k: profiles[p][k].score for k in keys}, w):.1f}"
            for p, w in PROFILES.items()
        )
        print(f"  {detector:<17} {line}")
    ours = " ".join(
        f"{p}={subset_score(corpus, raw_by_file(corpus, scores, w, results[p][1]), w):.1f}"
        for p, w in PROFILES.items()
    )
    print(f"  {name:<17} {ours} (per-file raw at its own best threshold, same normalisation)")
    reference = published.get("windowedGaussian", {})
    if gaussian is None or any(k not in reference.get(p, {}) for p in PROFILES for k in keys):
        return
    rounded = nab_rounded(gaussian)
    threshold = reference["standard"][keys[0]].threshold
    differ: set[str] = set()
    for p, weights in PROFILES.items():
        raw = raw_by_file(corpus, rounded, weights, threshold)
        differ |= {k for k in keys if not math.isclose(raw[k], reference[p][k].score, abs_tol=1e-9)}
    for series, file_scores in zip(corpus, rounded, strict=True):
        row = reference["standard"][series.key]
        if row_counts(series, file_scores, threshold) != (row.tp, row.fp, row.fn):
            differ.add(series.key)
    names = ", ".join(Path(k).stem for k in keys if k in differ) or "none"
    print(
        f"control: windowed_gaussian (scores rounded to 12 digits, as NAB's files) at {threshold:g}"
        f" has the published windowedGaussian raw scores (3 profiles) and tp/fp/fn rows on "
        f"{len(keys) - len(differ)}/{len(keys)} files; differ: {names}"
    )


def print_lofo(
    corpus: list[Series], name: str, scores: list[list[float]], *, variants: bool
) -> None:
    """The leave-one-family-out lines of ``name``: threshold only, then (``variants``) all of it.

    The second line chooses, per left-out family, among :data:`VARIANTS` of
    the detector (each run over the whole corpus once more) and their
    thresholds on the other families.
    """
    for p, weights in PROFILES.items():
        combined, per_family = leave_one_family_out(corpus, scores, weights)
        families = " ".join(f"{f}={v:.1f}" for f, v in per_family.items())
        print(f"lofo threshold {p}={combined:.1f} ({families})")
    alternatives = VARIANTS.get(name, ())
    if not variants or len(alternatives) < 2:
        return
    candidates = [scores] + [run_detector(name, corpus, **kw)[0] for _, kw in alternatives[1:]]
    parts = []
    for p, weights in PROFILES.items():
        combined, per_family, chosen = leave_one_family_out_of(corpus, candidates, weights)
        picks = ", ".join(f"{f}: {alternatives[i][0]}" for f, i in chosen.items())
        families = " ".join(f"{f}={v:.1f}" for f, v in per_family.items())
        print(f"lofo defaults and threshold {p}={combined:.1f} ({families}; chose {picks})")
        parts.append(f"{p}={combined:.1f}")
    print(
        f"lofo (defaults among {len(alternatives)} variants and threshold chosen on the other "
        f"families): {' '.join(parts)}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--data", type=Path, default=NAB_DIR / "data", help="NAB data folder (%(default)s)"
    )
    parser.add_argument(
        "--windows",
        type=Path,
        default=NAB_DIR / "combined_windows.json",
        help="combined_windows.json (%(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "riffle-nab",
        help="results folder (%(default)s)",
    )
    parser.add_argument("--detector", choices=sorted(DETECTORS), help="one detector only")
    parser.add_argument(
        "--lofo",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="print the leave-one-family-out scores (default: on)",
    )
    parser.add_argument(
        "--published",
        type=Path,
        default=PUBLISHED,
        help="published NAB per-file scores to compare with (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data, args.windows)
    n_points = sum(len(s.values) for s in corpus)
    n_windows = sum(len(s.windows) for s in corpus)
    print(f"{len(corpus)} files, {n_points} points, {n_windows} windows")
    names = [args.detector] if args.detector else list(ORDER)
    published = load_published(args.published) if args.published.exists() else {}
    gaussian: list[list[float]] | None = None
    for name in names:
        scores, rate = run_detector(name, corpus)
        if name == "windowed_gaussian":
            gaussian = scores
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
        print(f"== {name}: {rate:,.0f} points/s; in-sample thresholds {thresholds}")
        if args.lofo:
            print_lofo(corpus, name, scores, variants=name == names[-1])
        if published and name == names[-1]:
            print_published(corpus, published, name, scores, results, gaussian)
        print(" ".join(f"{p}={s:.1f}" for p, (s, _) in results.items()), flush=True)


if __name__ == "__main__":
    main()
