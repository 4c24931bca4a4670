"""ARTime, Mark Hampton's adaptive-resonance anomaly detector, as a candidate member for ``riffle``.

    python -m benchmarks.artime [--grid file|probation] [--data D] [--windows F] [--published P]

The algorithm's source is ARTimeNAB.jl (github.com/markNZed/ARTimeNAB.jl,
``src/ARTime.jl`` and ``src/AdaptiveResonanceCompact.jl``, AGPL-3.0), the
version NAB runs as its ``ARTime`` detector; its ART module is derived
from AdaptiveResonance.jl (MIT). This is an independent Python
implementation of that published algorithm, written from its description
in those files; no code is copied. In outline, per series:

* **Steps.** The probation ``p`` (NAB's, made even) sets the step
  ``sstep = max(1, p // (8 x 13))`` (8-point windows, 13 windows per
  probation) and the trend window ``p // sstep`` steps. Every ``sstep``-th
  value closes a step: the step's extreme value (the max, or the min when
  it is farther from a moving average of the step means), or its mean when
  the extreme is within 10 % of the mean.
* **Levels.** The step value is normalised on ``[lo, hi]``, rounded to one
  of 81 levels (0..80; ties to even, as Julia's ``round(Int, x)``), and
  snapped to an approximate running median of the levels when within
  0.075 of it ("chomp").
* **Features.** Once 8 steps are seen: the orthonormal Haar DWT of the
  last 8 step values min-max normalised (full 3-level transform, ordered
  approximation then details coarse to fine, detail = (second - first) /
  √2 as Wavelets.jl computes it), itself min-max normalised, followed by
  the 8 step values: 16 values in [0, 1].
* **DVFA.** A distributed dual-vigilance fuzzy ART on the complement-coded
  features (32 values): a category's activation is ``feature_similarity ** 3
  x energy_similarity ** 2`` (``|x ∧ w| / |w|``, and the same over the
  newest step value and its complement); every category at or above
  ``rho_ub`` learns by fast commit (``w = x ∧ w``); else a best one at or
  above ``rho_lb`` makes the sample a new category of its cluster; else the
  sample makes a new cluster (``cat = -1``), the anomaly candidate.
* **Probation.** The trend window's features are batch-processed at its
  end: the initial ``rho`` is the mean best activation (from the middle of
  the window on) of a DVFA at vigilance 0.80 trained on them sorted by
  their summed cosine similarity to the others; then the detector replays
  them with that ``rho``.
* **Detection.** After the trend window, a new cluster scores
  ``confidence`` — ``0.35 ub + 0.65 lb + 1.5 (1 - energy_similarity)``, with
  ``ub``/``lb`` the share of ``1 - similarity`` beyond each vigilance, capped
  at 1, rounded to 6 digits — unless masked (12 steps after an anomaly or
  after any new cluster or rho update, until 12 steps pass without one),
  when it must also be 10 % (30 % unmasked) below the last anomaly's
  similarity. Every half trend window, and 12 steps after an anomaly,
  ``rho_ub`` becomes the running mean of the best activations (at most
  0.97) and ``rho_lb`` moves towards the trend window's least similarity.

``update`` returns ARTime's score for each value: 0 for the values that
close no step and for the probation.

**Two range modes.** NAB gives ARTime each file's minimum and maximum
before its first value (``init(dmin, dmax, dlength)``), a look-ahead no
stream has. ``ARTime(probation=p, lo=min, hi=max)`` (``grid="file"`` in
the benchmarks) is that, kept to check the port against NAB's published
ARTime scores. Without ``lo``/``hi`` (``grid="probation"``, the causal
mode) the range is that of the series' first ``probation`` values: they
are held (they score 0: NAB does not score the probation, and ARTime
batch-processes its probation at its end anyway), then processed in order
once the range is known. A later value beyond that range normalises
outside [0, 1]; its level is **clipped** into 0..80 (the edge level),
which keeps the complement coding of the ART in [0, 1].

The memory grows: every step that resonates with no category above
``rho_ub`` adds one (32 floats). :attr:`ARTime.categories` counts them.
"""

from __future__ import annotations

import argparse
import math
import pickle
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.nab import (
    NAB_DIR,
    PROFILES,
    PUBLISHED,
    Series,
    leave_one_family_out,
    load_corpus,
    load_published,
    nab_rounded,
    raw_by_file,
    row_counts,
    score_profile,
    subset_score,
)

Vector = npt.NDArray[np.float64]

_HAAR = 1.0 / math.sqrt(2.0)
"""The orthonormal Haar filter's tap, as Wavelets.jl normalises ``[1, 1]``."""


def haar_dwt(x: list[float]) -> list[float]:
    """The full periodic orthonormal Haar DWT of ``x`` (length a power of 2), as Wavelets.jl's.

    Returns ``[approximation; details coarse → fine]``; each level's
    approximation is ``(a + b) / √2`` and its detail ``(b - a) / √2`` for
    consecutive pairs ``(a, b)`` (the sign Wavelets.jl's mirror filter gives).
    """
    out = list(x)
    n = len(out)
    if n & (n - 1):
        raise ValueError("length must be a power of 2")
    s = out
    while n > 1:
        half = n // 2
        approx = [_HAAR * s[2 * k] + _HAAR * s[2 * k + 1] for k in range(half)]
        detail = [-_HAAR * s[2 * k] + _HAAR * s[2 * k + 1] for k in range(half)]
        out[half:n] = detail
        out[:half] = approx
        s = approx
        n = half
    return out


def _minmax(x: list[float]) -> list[float]:
    """``x - min(x)``, divided by its maximum unless that is 0."""
    low = min(x)
    shifted = [v - low for v in x]
    top = max(shifted)
    return [v / top for v in shifted] if top != 0 else shifted


class DVFA:
    """Distributed dual-vigilance fuzzy ART as ARTime compacts it (complement coding, fast commit).

    ``train`` takes one feature vector (values in [0, 1]) and returns
    ``(new_cluster, best activation, its energy similarity)``: ARTime's
    ``cat == -1``, ``A[i]`` and ``Ae[i]``. The first sample ever seen only
    creates the all-ones category (activation 0), as the original does.
    """

    __slots__ = ("_n", "_w", "dim", "rho_lb", "rho_ub")

    def __init__(self, dim: int, rho: float = 0.0) -> None:
        self.dim = dim
        self.rho_lb = rho
        self.rho_ub = rho
        self._w: Vector = np.empty((0, 2 * dim))
        self._n = 0

    def __getstate__(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "rho_lb": self.rho_lb,
            "rho_ub": self.rho_ub,
            "_w": self._w[: self._n].copy(),
            "_n": self._n,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)

    @property
    def categories(self) -> int:
        return self._n

    def _append(self, x: Vector) -> None:
        if self._n == len(self._w):
            grown = np.empty((max(16, 2 * self._n), 2 * self.dim))
            grown[: self._n] = self._w[: self._n]
            self._w = grown
        self._w[self._n] = x
        self._n += 1

    def train(self, f: Vector, learning: bool = True) -> tuple[bool, float, float]:
        """One sample; see the class docstring."""
        x = np.concatenate((f, 1.0 - f))
        if self._n == 0:
            self._append(np.ones(2 * self.dim))
            return False, 0.0, 0.0
        w = self._w[: self._n]
        em = np.minimum(w, x)
        norm_w = w.sum(axis=1)
        norm_w[norm_w == 0] = 0.001
        fs = em.sum(axis=1) / norm_w
        e, last = self.dim - 1, 2 * self.dim - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            es = (em[:, e] + em[:, last]) / (w[:, e] + w[:, last])
        m = fs * fs * fs * (es * es)
        nan = np.isnan(m)
        if nan.any():
            if learning:
                # Julia's descending sort puts NaN first; it fails every test: a mismatch.
                self._append(x)
                return True, 0.0, 0.0
            m = np.where(nan, -np.inf, m)
        best = int(np.argmax(m))  # the first of equals, as the stable descending order
        top = float(m[best])
        a, ae = (top, float(es[best])) if top > 0.0 else (0.0, 0.0)
        if not learning:
            return True, a, ae
        if top >= self.rho_ub:
            resonant = m >= self.rho_ub
            w[resonant] = em[resonant]
            return False, a, ae
        self._append(x)
        # At or above rho_lb: a new category of the best one's cluster; else a new cluster.
        return not top >= self.rho_lb, a, ae


def similarity(a: Vector, b: Vector) -> float:
    """ARTime's near-cosine similarity (``1 - |other|`` when one vector is 0)."""
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0:
        return 1.0 - nb
    if nb == 0.0:
        return 1.0 - na
    return float(np.dot(a, b)) / (na * nb)


def similarity_matrix(x: Vector) -> Vector:
    """:func:`similarity` of every pair of rows (1 on the diagonal)."""
    norms = np.sqrt((x * x).sum(axis=1))
    zero = norms == 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        sim = (x @ x.T) / np.outer(norms, norms)
    sim[zero, :] = (1.0 - norms)[None, :].repeat(int(zero.sum()), axis=0)
    sim[:, zero] = (1.0 - norms)[:, None].repeat(int(zero.sum()), axis=1)
    np.fill_diagonal(sim, 1.0)
    return sim


class ARTime:
    """ARTime's score for one series (see the module docstring).

    ``probation`` is NAB's probationary period of the series (ARTime makes
    it even); ``lo``/``hi`` the range to normalise on (NAB's look-ahead:
    the file's min and max). Without them the range is the probation's,
    whose values are held until it ends, and later levels are clipped.
    """

    window = 8
    windows_per_pb = 13
    nlevels = 80
    chomp = 0.075
    initial_rho = 0.80

    def __init__(
        self, *, probation: int = 750, lo: float | None = None, hi: float | None = None
    ) -> None:
        pb = probation - probation % 2
        self.probation = probation
        self.pb = pb
        self.sstep = max(1, pb // (self.window * self.windows_per_pb))
        self.trend_window = pb // self.sstep
        self.mask = int(self.window * 1.5)
        self.lo = 0.0
        self.hi = 0.0
        self._held: list[float] | None = []
        if lo is not None and hi is not None:
            self.lo, self.hi = float(lo), float(hi)
            self._held = None
        self._i = 1
        self._ds_window = [0.0] * self.sstep
        self._ds_average = 0.0
        self._medbin = [0] * (self.nlevels + 1)
        self._medlevel = 0
        self._below = 0
        self._above = 0
        self._f_window = [0.0] * self.window
        self._dsi = 1
        self._trend_f: list[Vector] = []
        # detect! state
        self.art = DVFA(2 * self.window)
        self._last_anomaly_i = 0
        self._last_anomaly_sim = 0.0
        self._last_rho_update_i = 0
        self._mask_after_cat = False
        self._no_new_cat = 0
        self._anomaly_sims: list[float] = []
        self._sim_diff = [0.0] * (self.trend_window + 1)
        self._sim_window = [1.0] * (self.trend_window // 2 + 1)
        self._ub_mean = 0.0
        self._ub_n = 0

    @property
    def categories(self) -> int:
        """How many ART categories the memory holds."""
        return self.art.categories

    def update(self, x: float) -> float:
        """ARTime's score of ``x`` (0 for values closing no step and during the probation)."""
        held = self._held
        if held is not None:
            held.append(float(x))
            if len(held) < self.probation:
                return 0.0
            self.lo, self.hi = min(held), max(held)
            self._held = None
            for value in held:
                self._sample(value)
            return 0.0
        return self._sample(float(x))

    def _sample(self, di: float) -> float:
        i = self._i
        self._i += 1
        self._ds_window.append(di)
        del self._ds_window[0]
        if i % self.sstep:
            return 0.0
        ds = self._downsample()
        features = self._features(ds)
        dsi = self._dsi
        self._dsi += 1
        if dsi <= self.trend_window:
            self._trend_f.append(features)
            if dsi == self.trend_window:
                self._batch()
            return 0.0
        return self._detect(features, dsi)

    def _downsample(self) -> float:
        win = self._ds_window
        mean = sum(win) / len(win)
        top, bottom = max(win), min(win)
        if self._dsi == 1:
            self._ds_average = mean
        self._ds_average = (self._ds_average + mean) / 2
        ds = top
        if abs(top - self._ds_average) < abs(bottom - self._ds_average):
            ds = bottom  # a spike below the mean
        if abs(ds - mean) < 0.1 * mean:  # a spike must be at least 10 %
            ds = mean
        ds -= self.lo
        if self.hi - self.lo != 0:
            ds /= self.hi - self.lo
        level = min(max(round(ds * self.nlevels), 0), self.nlevels)  # clipped (causal mode)
        ds = level / self.nlevels
        # An approximate running median of the levels.
        medbin = self._medbin
        medbin[level] += 1
        medpos = self._dsi // 2
        if self._dsi == 1:
            self._medlevel = level
        if self._medlevel > level:
            self._below += 1
        elif self._medlevel < level:
            self._above += 1
        if medpos < self._above:
            self._below += medbin[self._medlevel]
            self._medlevel += 1
            while medbin[self._medlevel] == 0:
                self._medlevel += 1
            self._above -= medbin[self._medlevel]
        elif medpos < self._below:
            self._above += medbin[self._medlevel]
            self._medlevel -= 1
            while medbin[self._medlevel] == 0:
                self._medlevel -= 1
            self._below -= medbin[self._medlevel]
        med = self._medlevel / self.nlevels
        if abs(ds - med) < self.chomp:
            ds = med
        return ds

    def _features(self, ds: float) -> Vector:
        self._f_window.append(ds)
        del self._f_window[0]
        if self._dsi < self.window:
            return np.zeros(2 * self.window)
        wavelet = _minmax(haar_dwt(_minmax(self._f_window)))
        return np.array(wavelet + self._f_window)

    def _batch(self) -> None:
        """The probation's features: the initial rho, then each replayed through detection."""
        features = np.array(self._trend_f)
        self._trend_f = []
        rho = self._init_rho(features[self.window - 1 :])
        self.art.rho_lb = self.art.rho_ub = rho
        for index, f in enumerate(features, start=1):
            self._detect(f, index)

    def _init_rho(self, x: Vector) -> float:
        sums = similarity_matrix(x).sum(axis=0)
        order = np.argsort(sums, kind="stable")
        art = DVFA(2 * self.window, self.initial_rho)
        best = [art.train(f)[1] for f in x[order]]
        tail = best[self.trend_window // 2 - 1 :]
        return sum(tail) / len(tail)

    def _detect(self, f: Vector, i: int) -> float:
        mask = self.mask
        since = i - self._last_anomaly_i
        rho_after_anomaly = since == mask
        rho_for_trend = i - self._last_rho_update_i >= self.trend_window // 2
        mask_after_anomaly = since <= mask
        if i > self.trend_window + mask and self._mask_after_cat and self._no_new_cat >= mask:
            self._mask_after_cat = False
        art = self.art
        if i < self.window:
            # No complete feature window yet: not learned, but it counts (a new cluster).
            _, a, ae = art.train(f, learning=False)
            new_cluster = True
        else:
            new_cluster, a, ae = art.train(f)
        self._no_new_cat = 0 if new_cluster else self._no_new_cat + 1
        self._ub_n += 1
        self._ub_mean += (1.0 / self._ub_n) * (a - self._ub_mean)
        self._sim_window.append(a)
        del self._sim_window[0]
        self._sim_diff.append(art.rho_ub - a)
        del self._sim_diff[0]
        if since < mask and self._anomaly_sims and a < self._anomaly_sims[-1]:
            self._anomaly_sims[-1] = a
        masking = self._mask_after_cat or mask_after_anomaly
        below_last = a < self._last_anomaly_sim * (0.90 if mask_after_anomaly else 0.70)
        anomaly = 0.0
        if i > self.trend_window and new_cluster and (not masking or below_last):
            anomaly = self._confidence(a, ae)
            self._anomaly_sims.append(a)
            self._last_anomaly_sim = a
            self._last_anomaly_i = i
        self._mask_after_cat = new_cluster or self._mask_after_cat
        if i > self.trend_window and (rho_after_anomaly or rho_for_trend):
            self._update_rho(i)
        return anomaly

    def _update_rho(self, i: int) -> None:
        art = self.art
        least = min(self._sim_window)
        new_ub = min(0.97, self._ub_mean)
        prev_lb = art.rho_lb
        if prev_lb <= least:
            new_lb = prev_lb + (least - prev_lb) * 0.19
        else:
            decr = 0.0
            if i > self.trend_window * 2:
                below = [min(0.37, d) for d in self._sim_diff if d > 0.05]
                if below:
                    decr = sum(below) / len(below)
            decr = max(0.01, decr)
            new_lb = prev_lb - decr / 2
            if self._anomaly_sims:
                new_lb = max(sum(self._anomaly_sims) / len(self._anomaly_sims), new_lb)
        art.rho_lb = min(new_ub, new_lb)
        art.rho_ub = new_ub
        self._last_rho_update_i = i
        self._mask_after_cat = True

    def _confidence(self, features_sim: float, energy_sim: float) -> float:
        fs = min(0.999, features_sim)
        ub = ((1 - fs) - (1 - self.art.rho_ub)) / (1 - fs)
        lb = ((1 - fs) - (1 - self.art.rho_lb)) / (1 - fs)
        s = min(1.0, (ub * 0.35 + lb * 0.65) + (1.0 - energy_sim) * 1.5)
        return float(np.rint(s * 1e6) / 1e6)


def make_artime(series: Series, grid: str) -> ARTime:
    """A detector for ``series``: told its range (``grid="file"``, NAB's look-ahead) or not."""
    if grid == "file":
        return ARTime(probation=series.probation, lo=min(series.values), hi=max(series.values))
    return ARTime(probation=series.probation)


def run_artime(
    corpus: list[Series], grid: str
) -> tuple[list[list[float]], float, list[int], list[int]]:
    """Scores of every row, points per CPU-second, and each file's categories and pickle bytes.

    The rate counts the detector's CPU time only (not the pickling).
    """
    scores = []
    categories = []
    sizes = []
    points = 0
    elapsed = 0.0
    for series in corpus:
        started = time.process_time()
        detector = make_artime(series, grid)
        scores.append([detector.update(v) for v in series.values])
        elapsed += time.process_time() - started
        points += len(series.values)
        categories.append(detector.categories)
        sizes.append(len(pickle.dumps(detector)))
    return scores, points / max(elapsed, 1e-9), categories, sizes


def footprint(rate: float, categories: list[int], sizes: list[int]) -> str:
    """The speed and memory line of a :func:`run_artime` run: largest and median file."""
    return (
        f"{rate:,.0f} points per CPU-second; largest memory {max(categories):,} categories, "
        f"pickle {max(sizes):,} bytes; median {statistics.median(categories):,.0f} categories, "
        f"{statistics.median(sizes):,.0f} bytes"
    )


def compare_published(
    corpus: list[Series], scores: list[list[float]], published_csv: Path, *, per_file: bool = True
) -> None:
    """The port beside NAB's published ARTime rows, at ARTime's published thresholds.

    With ``per_file``, each file whose row counts or raw score differ from
    the published ones is listed.
    """
    table = load_published(published_csv).get("ARTime", {})
    keys = [s.key for s in corpus]
    if any(k not in table.get(p, {}) for p in PROFILES for k in keys):
        print("published ARTime rows missing: no comparison")
        return
    rounded = nab_rounded(scores)
    parts = []
    differs = []
    same = 0
    for p, weights in PROFILES.items():
        threshold = table[p][keys[0]].threshold
        raw = raw_by_file(corpus, rounded, weights, threshold)
        ours = subset_score(corpus, raw, weights)
        theirs = subset_score(corpus, {k: table[p][k].score for k in keys}, weights)
        parts.append(f"{p}@{threshold:g} port={ours:.1f} published={theirs:.1f}")
        for series, file_scores in zip(corpus, rounded, strict=True):
            row = table[p][series.key]
            counts = row_counts(series, file_scores, threshold)
            if counts == (row.tp, row.fp, row.fn) and math.isclose(
                raw[series.key], row.score, abs_tol=1e-9
            ):
                same += p == "standard"
            elif per_file:
                differs.append(
                    f"  differs {p} {series.key}: port tp/fp/fn {counts} raw "
                    f"{raw[series.key]:.4f}; published {(row.tp, row.fp, row.fn)} "
                    f"raw {row.score:.4f}"
                )
    print("at ARTime's published full-corpus thresholds: " + "; ".join(parts))
    for line in differs:
        print(line)
    print(f"standard: {same}/{len(keys)} files with the published tp/fp/fn and raw score")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--grid", choices=("file", "probation"), default="file")
    parser.add_argument("--data", type=Path, default=NAB_DIR / "data")
    parser.add_argument("--windows", type=Path, default=NAB_DIR / "combined_windows.json")
    parser.add_argument("--published", type=Path, default=PUBLISHED)
    args = parser.parse_args(argv)
    corpus = load_corpus(args.data, args.windows)
    scores, rate, categories, sizes = run_artime(corpus, args.grid)
    print(f"== ARTime (grid: {args.grid}): {footprint(rate, categories, sizes)}")
    for p, weights in PROFILES.items():
        score, threshold = score_profile(corpus, scores, weights)
        lofo, per_family = leave_one_family_out(corpus, scores, weights)
        families = " ".join(f"{f}={v:.1f}" for f, v in per_family.items())
        print(f"{p}={score:.1f} @{threshold:.6f}; lofo threshold {lofo:.1f} ({families})")
    if args.published.exists():
        compare_published(corpus, scores, args.published, per_file=args.grid == "file")


if __name__ == "__main__":
    main()
