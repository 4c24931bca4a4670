"""Riffle's online anomaly detector: robust residuals, seasonality, likelihood.

Each value is compared with two cheap predictions — the recent level and
the value usual at this time of day — and its *surprise* is the normalised
error of the better one: a point is only unusual if no plausible model of
the series explains it. Surprises are not comparable
across series (noise, spikiness and scale differ), so they are turned into
a score with an anomaly likelihood in the spirit of Numenta's: the mean of
the last few surprises is compared with the long-run distribution of that
mean (and a single surprise with the wider of two distributions of single
surprises: the series' on the same side of the prediction, above or below
it, and its time of day's), and the Gaussian tail probability
is log-scaled into [0, 1]. A second score, in the spirit of CAD-OSE, is the
share of the value's quantised contexts never seen before; it is trusted by
degrees as the series outlives its probation. The series calibrates
itself; nothing is tuned per series.

The state is a few dozen floats, a few small lists per seasonal bin and two
bitmaps of seen contexts, so a snapshot stays under 4 KB.
"""

from __future__ import annotations

import math

from riffle.operators.models.base import AnomalyScore, Label, ModelError, label_for

DAY_MS = 86_400_000
_SQRT2 = math.sqrt(2.0)


class SeasonalLikelihoodDetector:
    """The production detector (``riffle``); see the module docstring.

    ``bins`` splits a ``period_ms`` (a day) into slots with their own typical
    value; ``short`` is how many recent surprises the likelihood averages;
    ``long_alpha`` the weight of one point in the long-run distribution.
    ``point`` weighs the single-surprise evidence against the mean's.
    ``warning``/``anomaly`` are the score levels of the labels.
    ``shape`` is how many preceding bands the novelty's shape fact spans
    (0: no shape fact; at most 3 and at most ``context``).
    ``probation`` is the series' probationary period in points (NAB tells
    each detector its file's, ``min(15 % of the rows, 750)``); after a score
    reaches ``anomaly`` the next ``rest * probation`` scores are 0, as
    CAD-OSE rests for a fifth of the probation: one alert per incident. The
    novelty weighs nothing during the probation and its full
    ``context_weight`` ``mature`` probations later. The default 500 keeps
    the dataflow's rest at the 100 points it had.
    """

    name = "riffle"

    __slots__ = (
        "_ctx_hi",
        "_ctx_hist",
        "_ctx_lo",
        "_ctx_seen",
        "_dev",
        "_level",
        "_mu",
        "_mu1",
        "_mu1_below",
        "_n",
        "_n1_above",
        "_n1_below",
        "_peak",
        "_quiet_left",
        "_recent",
        "_seas",
        "_seas_dev",
        "_seas_err",
        "_seas_n",
        "_shape_seen",
        "_signed",
        "_slot_mu1",
        "_slot_var1",
        "_var",
        "_var1",
        "_var1_below",
        "alpha",
        "anomaly",
        "bins",
        "cap",
        "context",
        "context_weight",
        "damp",
        "decay",
        "half",
        "levels",
        "long_alpha",
        "mature",
        "period_ms",
        "point",
        "probation",
        "quiet",
        "rest",
        "settle",
        "shape",
        "short",
        "use_seas",
        "warmup",
        "warning",
    )

    def __init__(
        self,
        *,
        bins: int = 48,
        period_ms: int = DAY_MS,
        alpha: float = 0.02,
        short: int = 10,
        long_alpha: float = 0.001,
        warmup: int = 100,
        point: float = 0.5,
        half: float = 10.0,
        decay: float = 0.999,
        damp: float = 0.5,
        use_seas: bool = True,
        settle: int = 20,
        cap: float = 20.0,
        warning: float = 0.33,
        anomaly: float = 0.36,
        levels: int = 10,
        context: int = 6,
        context_weight: float = 0.8,
        probation: int = 500,
        rest: float = 0.2,
        mature: float = 1.0,
        shape: int = 2,
    ) -> None:
        if not 0 <= shape <= min(3, context):
            raise ModelError(f"shape must be within 0..{min(3, context)}, got {shape}")
        if probation < 1 or mature < 0:
            raise ModelError(f"probation must be >= 1 and mature >= 0, got {probation}, {mature}")
        self.levels = levels
        self.context = context
        self.context_weight = context_weight
        self.probation = probation
        self.rest = rest
        self.mature = mature
        self.quiet = round(rest * probation)
        self._quiet_left = 0
        self._ctx_lo = math.inf
        self._ctx_hi = -math.inf
        self._ctx_hist: list[int] = []
        # One "seen" flag per fact: a level, or (lag, level then, level now).
        width = levels + 2
        self._ctx_seen = bytearray(width + context * width * width)
        # One bit per shape: (band ``shape`` back, ..., band one back, band now).
        self.shape = shape
        self._shape_seen = bytearray((width ** (shape + 1) + 7) // 8 if shape else 0)
        self.bins = bins
        self.period_ms = period_ms
        self.alpha = alpha
        self.short = short
        self.long_alpha = long_alpha
        self.warmup = warmup
        self.point = point
        # The single surprises of values at or above the prediction, and of
        # those below it: their counts, means and variances.
        self._signed = True
        self._n1_above = self._n1_below = 0
        self._mu1 = self._mu1_below = 0.0
        self._var1 = self._var1_below = 0.0
        # The single surprises of each seasonal slot: their mean and variance.
        self._slot_mu1 = [0.0] * bins
        self._slot_var1 = [0.0] * bins
        self.half = half
        self.decay = decay
        self.damp = damp
        self._peak = 0.0
        self._seas_err = math.inf
        self.use_seas = use_seas
        self.settle = settle
        self.cap = cap
        self.warning = warning
        self.anomaly = anomaly
        self._n = 0
        self._level = 0.0
        self._dev = 0.0
        self._seas = [0.0] * bins
        self._seas_dev = [0.0] * bins
        self._seas_n = [0] * bins
        self._recent: list[float] = []
        self._mu = 0.0
        self._var = 0.0

    def __getstate__(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state: dict[str, object]) -> None:
        # Fields a snapshot from an older version lacks start at their defaults;
        # fields this version dropped (``huber``, ``use_diff``, ``quiet_factor``
        # and their state) are ignored.
        fresh = SeasonalLikelihoodDetector()
        for key in self.__slots__:
            setattr(self, key, getattr(fresh, key))
        for key, value in state.items():
            if key in self.__slots__:
                setattr(self, key, value)
        if "shape" not in state:
            # A snapshot from before the shape fact keeps scoring without it.
            self.shape = 0
        if "_signed" not in state:
            # One from before the signed single surprises keeps one
            # distribution for both sides (and its own point weight).
            self._signed = False

    def _novelty(self, x: float) -> float:
        """The share of ``x``'s facts never seen before, then learn them.

        ``x`` is quantised to ``levels`` bands of the range seen so far (with
        one band below and one above it, for values at least a band width
        beyond the range: a record by less, as pure noise keeps setting, is
        the edge band and no new level); its facts are its band and, for each
        of the last ``context`` bands, the pair (lag, that band, this band) —
        in the spirit of CAD-OSE's contexts, in a fixed-size bitmap — and the
        *shape*: the last ``shape`` bands and this one together, a quantised
        window of recent values (a bit each, in a second bitmap).
        """
        lo, hi, levels = self._ctx_lo, self._ctx_hi, self.levels
        if hi > lo:
            # Beyond the range by a band width or more: the outer bands.
            scaled = (x - lo) / (hi - lo) * levels  # inf when the range is subnormal
            pos = (
                math.floor(scaled) if math.isfinite(scaled) else (levels + 1 if scaled > 0 else -2)
            )
            inner = min(max(pos, 0), levels - 1)
            band = (-1 if pos < -1 else levels if pos > levels else inner) + 1
        else:
            band = 1 if x == lo or math.isinf(lo) else (0 if x < lo else levels + 1)
        width = levels + 2
        seen = self._ctx_seen
        hist = self._ctx_hist
        facts = [band] + [
            width + ((lag - 1) * width + hist[-lag]) * width + band
            for lag in range(1, len(hist) + 1)
        ]
        new = 0
        for fact in facts:
            if not seen[fact]:
                new += 1
                seen[fact] = 1
        count = len(facts)
        if self.shape and len(hist) >= self.shape:
            shape = 0
            for previous in hist[-self.shape :]:
                shape = shape * width + previous
            byte, bit = divmod(shape * width + band, 8)
            count += 1
            if not self._shape_seen[byte] >> bit & 1:
                self._shape_seen[byte] |= 1 << bit
                new += 1
        hist.append(band)
        if len(hist) > self.context:
            del hist[0]
        self._ctx_lo = min(lo, x)
        self._ctx_hi = max(hi, x)
        return new / count

    def update(self, ts: int, value: float) -> AnomalyScore:
        x = float(value)
        if not math.isfinite(x):
            return AnomalyScore(ts, x, 0.0, "learning", None, None, None, 0.0, "not a number")
        n = self._n
        slot = (ts % self.period_ms) * self.bins // self.period_ms
        if n == 0:
            self._level = x
            self._seas[slot] = x
            self._seas_n[slot] = 1
            self._n = 1
            self._novelty(x)
            return AnomalyScore(ts, x, 0.0, "learning", None, None, None, 0.0, "first value")
        floor = 1e-9 + 1e-6 * abs(self._level)
        # Two predictions and their typical absolute errors.
        z_level = abs(x - self._level) / (self._dev + floor)
        best, expected, scale = z_level, self._level, self._dev + floor
        seasonal = self.use_seas and self._seas_n[slot] >= 3
        if seasonal:
            s_scale = self._seas_dev[slot] + floor
            z_seas = abs(x - self._seas[slot]) / s_scale
            # The seasonal profile takes over once it predicts better than the level.
            if self._seas_err < self._dev or z_seas < best:
                best, expected, scale = z_seas, self._seas[slot], s_scale
        surprise = min(best, self.cap)
        below = self._signed and x < expected
        # Likelihood of the recent mean surprise under its long-run distribution.
        recent = self._recent
        recent.append(surprise)
        if len(recent) > self.short:
            del recent[0]
        mean = sum(recent) / len(recent)
        score = 0.0
        if n > self.warmup and self._var > 0.0:
            z = (mean - self._mu) / math.sqrt(self._var)
            # -log10 of the upper tail, squashed into [0, 1) without ties at the top.
            evidence = -math.log10(max(0.5 * math.erfc(z / _SQRT2), 1e-300))
            # A single outlier is diluted in the mean: its own likelihood counts
            # too, against the series' single surprises of the same side of the
            # prediction (the two tails of a skewed series differ: routine
            # bursts up say nothing of a dip) or, if they are larger, this time
            # of day's (a spike that recurs at this hour is no news).
            mu1, var1 = self._mu1, self._var1
            if below and self._var1_below > 0.0:
                mu1, var1 = self._mu1_below, self._var1_below
            if self.point and var1 > 0.0:
                if seasonal:
                    mu1, var1 = max(mu1, self._slot_mu1[slot]), max(var1, self._slot_var1[slot])
                z1 = (surprise - mu1) / math.sqrt(var1)
                point = -math.log10(max(0.5 * math.erfc(z1 / _SQRT2), 1e-300))
                evidence = max(evidence, self.point * point)
            score = evidence / (evidence + self.half)
            # An episode alerts once: only a new high of the recent scores counts in full.
            peak = self._peak
            self._peak = max(score, peak * self.decay)
            if score <= peak:
                score *= self.damp
        # Contextual novelty: a level, or a level after the recent ones, never seen before.
        novelty = self._novelty(x)
        if n > self.warmup:
            # The fact memory is trusted by degrees: no weight during the
            # probation, full weight ``mature`` probations later (new facts are
            # common while it fills, and most of them are not incidents).
            ramp = self.mature * self.probation
            maturity = min(1.0, max(0.0, (n - self.probation) / ramp)) if ramp else 1.0
            score = max(score, self.context_weight * maturity * novelty)
            # After an alert the series rests: one alert per incident.
            if self._quiet_left > 0:
                self._quiet_left -= 1
                score = 0.0
            elif score >= self.anomaly:
                self._quiet_left = self.quiet
        # Long-run distribution of the recent mean, once the predictions have settled.
        m = n - self.settle
        if m >= 0:
            la = 1.0 / (m + 1) if m < 1.0 / self.long_alpha else self.long_alpha
            delta = mean - self._mu
            self._mu += la * delta
            self._var = (1 - la) * (self._var + la * delta * delta)
            # Each side's single surprises: a running mean of its own, then
            # the same memory (``long_alpha`` per surprise of that side).
            if below:
                self._n1_below += 1
                la = max(1.0 / self._n1_below, self.long_alpha)
                delta = surprise - self._mu1_below
                self._mu1_below += la * delta
                self._var1_below = (1 - la) * (self._var1_below + la * delta * delta)
            else:
                if self._signed:
                    self._n1_above += 1
                    la = max(1.0 / self._n1_above, self.long_alpha)
                delta = surprise - self._mu1
                self._mu1 += la * delta
                self._var1 = (1 - la) * (self._var1 + la * delta * delta)
            # A slot sees one point in ``bins``: the same memory in time.
            rate = max(1.0 / (self._seas_n[slot] + 1), min(1.0, self.bins * self.long_alpha))
            delta = surprise - self._slot_mu1[slot]
            self._slot_mu1[slot] += rate * delta
            self._slot_var1[slot] = (1 - rate) * (self._slot_var1[slot] + rate * delta * delta)
        # Learn the value.
        a = 1.0 / (n + 1) if n < 1.0 / self.alpha else self.alpha
        r = x - self._level
        self._dev += a * (abs(r) - self._dev)
        self._level += a * r
        k = self._seas_n[slot]
        if seasonal:
            err = abs(x - self._seas[slot])
            if math.isinf(self._seas_err):
                self._seas_err = err
            else:
                self._seas_err += a * (err - self._seas_err)
        sa = 1.0 / (k + 1) if k < 10 else 0.1
        r = x - self._seas[slot]
        if k:
            self._seas_dev[slot] += sa * (abs(r) - self._seas_dev[slot])
        self._seas[slot] += sa * r
        self._seas_n[slot] = k + 1
        self._n = n + 1
        label: Label = (
            "learning" if n <= self.warmup else label_for(score, self.warning, self.anomaly)
        )
        k_range = 3.0
        low, high = expected - k_range * scale, expected + k_range * scale
        out = max(0.0, surprise - k_range)
        return AnomalyScore(
            ts,
            x,
            score,
            label,
            expected,
            low,
            high,
            out,
            f"expected {low:.4g}..{high:.4g}, got {x:.4g} ({surprise:.1f} typical errors away)",
        )
