"""Verification scores of flare forecasts, each defined once over summable counts.

:class:`Counts` holds what a set of probabilistic forecasts sums to at one threshold —
TP, FP, TN, FN, the squared errors of the forecast and of the climatology, the sum of the
probabilities — so that counts of batches, of processes under DDP (all-reduce of
:func:`summands`), of days (the bootstrap) or of folds simply add, and every score in
:data:`SCORES` is computed from them the same way wherever they come from. Scores that need
the ranking of the probabilities (AUC, ROC) or their distribution (reliability, skill
against the threshold) take the probabilities themselves.

Definitions (docs/design.md, "Definitions that must stay exact"), with P = TP + FN positives
and N = FP + TN negatives::

    TSS = TP / (TP + FN) - FP / (FP + TN)
    HSS = 2 (TP·TN - FN·FP) / ((TP + FN)(FN + TN) + (TP + FP)(FP + TN))

An instance is forecast positive when its flare probability is >= the threshold (0.5
unless told otherwise).

Degenerate cases never raise and never warn; they have these defined values:

* a rate with a zero denominator counts as 0: with no positives (P = 0) the hit rate
  TP/(TP+FN) is 0, with no negatives (N = 0) the false-alarm rate FP/(FP+TN) is 0 — the
  convention of the original study's code, whose rates are 0 whenever their numerator is;
* HSS is 0 when its denominator is 0 (that happens exactly when every instance is of one
  class and forecast as that class, or when there are no instances);
* so an empty set of instances scores TSS = 0 and HSS = 0.

Probabilistic scores: Brier = mean (p - y)²; BSS = 1 - Brier / Brier_clim, Brier_clim =
mean (c - y)² of the climatology c (None when Brier_clim is 0 or there are no instances);
POD = TP/(TP+FN), FAR = FP/(TP+FP) (false-alarm ratio), POFD = FP/(FP+TN), 0 for a zero
denominator; AUC = P(p_pos > p_neg) + ½ P(p_pos = p_neg) (None without both classes).

Over folds (or any set of prediction files) the scores are summarised by their mean and
their **population** standard deviation (``ddof=0``, numpy's default): the spread of the
folds we have, which stays defined (0) for a single fold. Pass ``ddof=1`` for the sample
standard deviation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import numpy as np

from flarelens.errors import FlareLensError

#: Default probability threshold: probability >= THRESHOLD is a positive forecast.
THRESHOLD = 0.5

#: Which standard deviation :func:`aggregate` reports by default.
STD_DDOF = 0
STD_KIND = "population"


@dataclass(frozen=True)
class Confusion:
    """Counts of a binary forecast: true/false positives, true/false negatives."""

    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        """Number of instances."""
        return self.tp + self.fp + self.tn + self.fn

    @property
    def tss(self) -> float:
        """True skill statistic (see :func:`tss`)."""
        return tss(self.tp, self.fp, self.tn, self.fn)

    @property
    def hss(self) -> float:
        """Heidke skill score (see :func:`hss`)."""
        return hss(self.tp, self.fp, self.tn, self.fn)

    def __add__(self, other: "Confusion") -> "Confusion":
        """Pool the counts of two sets of instances."""
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.tn + other.tn, self.fn + other.fn)

    def as_dict(self) -> dict:
        """``{"tp", "fp", "tn", "fn", "tss", "hss"}`` with plain Python numbers."""
        return {**asdict(self), "tss": self.tss, "hss": self.hss}


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def tss(tp: int, fp: int, tn: int, fn: int) -> float:
    """True skill statistic TP/(TP+FN) - FP/(FP+TN), in [-1, 1].

    A rate whose denominator is 0 counts as 0 (no positives: hit rate 0; no negatives:
    false-alarm rate 0).
    """
    tp, fp, tn, fn = _counts(tp, fp, tn, fn)
    return _ratio(tp, tp + fn) - _ratio(fp, fp + tn)


def hss(tp: int, fp: int, tn: int, fn: int) -> float:
    """Heidke skill score 2(TP·TN - FN·FP) / ((TP+FN)(FN+TN) + (TP+FP)(FP+TN)), in [-1, 1].

    0 when the denominator is 0. Computed with Python integers, so no overflow however
    many instances.
    """
    tp, fp, tn, fn = _counts(tp, fp, tn, fn)
    return _ratio(2 * (tp * tn - fn * fp), (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


def _counts(*values) -> tuple[int, ...]:
    out = []
    for v in values:
        i = int(v)
        if i != v or i < 0:
            raise ValueError(f"confusion counts must be non-negative integers, got {v!r}")
        out.append(i)
    return tuple(out)


def confusion(y_true, prob, threshold: float = THRESHOLD) -> Confusion:
    """Confusion counts of probabilities ``prob`` against 0/1 targets ``y_true``.

    An instance is forecast positive when ``prob >= threshold``. Both are array-likes of
    the same length (empty is fine: all counts 0); non-finite probabilities raise
    ``ValueError``.
    """
    return counts(y_true, prob, threshold).confusion


def check_threshold(threshold) -> float:
    """``threshold`` as a float strictly between 0 and 1, or :class:`FlareLensError`.

    0 would forecast everything positive and 1 (almost) nothing: neither is a forecast.
    """
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise FlareLensError(f"threshold {threshold!r} is not a number; give a probability in (0, 1), e.g. 0.5") from None
    if not (0.0 < t < 1.0):
        raise FlareLensError(f"threshold {threshold!r} is not a probability strictly between 0 and 1, e.g. 0.5")
    return t


def skill_scores(y_true, prob, threshold: float = THRESHOLD) -> tuple[float, float]:
    """``(TSS, HSS)`` of probabilities against targets at ``threshold``."""
    c = confusion(y_true, prob, threshold)
    return c.tss, c.hss


def aggregate(values: Iterable[float], ddof: int = STD_DDOF) -> tuple[float, float]:
    """``(mean, standard deviation)`` of per-fold scores.

    Population standard deviation by default (``ddof=0``); ``ddof=1`` gives the sample
    standard deviation. An empty input gives ``(0.0, 0.0)``; a sample standard deviation
    of a single value is reported as 0.0 rather than undefined.
    """
    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        return 0.0, 0.0
    mean = float(v.mean())
    if v.size - ddof <= 0:
        return mean, 0.0
    std = float(v.std(ddof=ddof))
    # Equal values give a tiny non-zero spread from rounding; report it as exactly 0.
    return mean, 0.0 if math.isclose(std, 0.0, abs_tol=1e-15) else std


# --------------------------------------------------------------------------- summable counts


def _rate(num, den) -> float:
    return float(num) / float(den) if den else 0.0


@dataclass(frozen=True)
class Counts:
    """What a set of probabilistic forecasts sums to at one threshold; counts add up.

    ``tp, fp, tn, fn``: confusion counts at the threshold; ``sq_err``: Σ (p - y)²;
    ``ref_sq_err``: Σ (c - y)² of the reference (climatological) probability c of each
    instance (0 when none was given); ``prob_sum``: Σ p. Scores: :data:`SCORES`.
    """

    tp: int
    fp: int
    tn: int
    fn: int
    sq_err: float = 0.0
    ref_sq_err: float = 0.0
    prob_sum: float = 0.0

    #: Field order of :meth:`to_list`, :meth:`from_sequence` and :func:`summands`.
    FIELDS = ("tp", "fp", "tn", "fn", "sq_err", "ref_sq_err", "prob_sum")

    @property
    def n(self) -> int:
        """Number of instances."""
        return self.tp + self.fp + self.tn + self.fn

    @property
    def positives(self) -> int:
        """Instances that flared (target 1)."""
        return self.tp + self.fn

    @property
    def confusion(self) -> Confusion:
        """The confusion counts alone."""
        return Confusion(self.tp, self.fp, self.tn, self.fn)

    def __add__(self, other: "Counts") -> "Counts":
        """Pool the counts of two sets of instances."""
        return Counts.from_sequence([a + b for a, b in zip(self.to_list(), other.to_list())])

    def to_list(self) -> list:
        """The fields in :attr:`FIELDS` order (e.g. to all-reduce them as one tensor)."""
        return [getattr(self, f) for f in self.FIELDS]

    @classmethod
    def from_sequence(cls, values) -> "Counts":
        """Counts from :attr:`FIELDS`-ordered sums (floats from an all-reduce are rounded)."""
        values = [float(v) for v in values]
        if len(values) != len(cls.FIELDS):
            raise ValueError(f"expected {len(cls.FIELDS)} sums ({', '.join(cls.FIELDS)}), got {len(values)}")
        ints = _counts(*(round(v) for v in values[:4]))
        return cls(*ints, *values[4:])

    def score(self, name: str):
        """One score of :data:`SCORES` by name (a float, or None where undefined)."""
        return SCORES[name](self)

    def scores(self, names=None) -> dict:
        """``{name: score}`` for ``names`` (default: every score of :data:`SCORES`)."""
        return {name: self.score(name) for name in (names or SCORES)}


def _bss(c: Counts):
    if c.n == 0 or c.ref_sq_err <= 0:
        return None
    return 1.0 - c.sq_err / c.ref_sq_err


#: Every score of a :class:`Counts`, defined once: add a score here and it is reported,
#: pooled, bootstrapped and reduced under DDP like the others.
SCORES = {
    "tss": lambda c: tss(c.tp, c.fp, c.tn, c.fn),
    "hss": lambda c: hss(c.tp, c.fp, c.tn, c.fn),
    "pod": lambda c: _rate(c.tp, c.tp + c.fn),
    "far": lambda c: _rate(c.fp, c.tp + c.fp),
    "pofd": lambda c: _rate(c.fp, c.fp + c.tn),
    "brier": lambda c: c.sq_err / c.n if c.n else None,
    "bss": _bss,
    "base_rate": lambda c: c.positives / c.n if c.n else None,
    "mean_prob": lambda c: c.prob_sum / c.n if c.n else None,
}


def summands(prob, target, threshold: float = THRESHOLD, reference=None, forecast=None) -> list:
    """The sums of one batch in :attr:`Counts.FIELDS` order, as 0-d arrays or tensors.

    Works on numpy arrays and torch tensors alike (on any device), so that training can
    stack them into one tensor, add them up over batches, all-reduce it under DDP and read
    it back with :meth:`Counts.from_sequence`. ``target`` is 1 for a flare; ``reference``
    is the climatological probability (a number or one per instance; None: no reference).
    ``forecast``: yes/no forecasts (bool) to count instead of ``prob >= threshold`` (for a
    categorical forecast with a probabilistic version, such as persistence).
    """
    forecast = prob >= threshold if forecast is None else forecast
    positive = target == 1
    y = positive * 1.0
    ref = (y - y) if reference is None else (y - reference) ** 2
    return [
        (forecast & positive).sum(), (forecast & ~positive).sum(),
        (~forecast & ~positive).sum(), (~forecast & positive).sum(),
        ((prob - y) ** 2).sum(), ref.sum(), prob.sum(),
    ]


def _checked(y_true, prob) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    p = np.asarray(prob, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but prob has {p.size}")
    if not np.isfinite(p).all():
        raise ValueError(f"{int((~np.isfinite(p)).sum())} probabilities are not finite (NaN or infinite)")
    return y.astype(bool).astype(float), p


def counts(y_true, prob, threshold: float = THRESHOLD, reference=None, forecast=None) -> Counts:
    """:class:`Counts` of probabilities ``prob`` against 0/1 targets ``y_true``.

    ``reference``: climatological probability, a number or one per instance (for the BSS).
    ``forecast``: yes/no forecasts to count instead of ``prob >= threshold``.
    Raises ``ValueError`` for non-finite probabilities: they must never be scored.
    """
    y, p = _checked(y_true, prob)
    ref = None if reference is None else np.broadcast_to(np.asarray(reference, dtype=float), p.shape)
    yes = None if forecast is None else np.asarray(forecast, dtype=bool).ravel()
    return Counts.from_sequence(summands(p, y, threshold, ref, yes))


# --------------------------------------------------------------------------- ranking and distribution


def auc_terms(y_true, prob, blocks=None, n_blocks: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sums the AUC of any reweighting of whole blocks of instances is made of.

    ``S[b, c]`` = Σ over positives i of block b and negatives j of block c of
    [p_i > p_j] + ½ [p_i = p_j]; ``P[b]``, ``N[b]``: positives and negatives of block b.
    With block multiplicities m (the bootstrap's), AUC = m·S·m / ((m·P)(m·N)): exact, and
    cheap per resample. ``blocks`` (block of each instance, 0..n_blocks-1) None: one block.
    Hand-written because no library gives the AUC of resampled blocks without re-sorting.
    """
    y, p = _checked(y_true, prob)
    blocks = np.zeros(y.size, dtype=np.int64) if blocks is None else np.asarray(blocks, dtype=np.int64).ravel()
    n_blocks = (int(blocks.max()) + 1 if blocks.size else 1) if n_blocks is None else int(n_blocks)
    pos = y == 1
    p_pos, b_pos = p[pos], blocks[pos]
    neg_order = np.flatnonzero(~pos)
    neg_order = neg_order[np.lexsort((p[neg_order], blocks[neg_order]))]  # by block, then probability
    bounds = np.searchsorted(blocks[neg_order], np.arange(n_blocks + 1))
    S = np.zeros((n_blocks, n_blocks))
    for c in range(n_blocks):
        neg = p[neg_order[bounds[c]:bounds[c + 1]]]
        if neg.size == 0 or p_pos.size == 0:
            continue
        below = np.searchsorted(neg, p_pos, side="left")
        tied = np.searchsorted(neg, p_pos, side="right") - below
        S[:, c] = np.bincount(b_pos, weights=below + 0.5 * tied, minlength=n_blocks)
    P = np.bincount(b_pos, minlength=n_blocks).astype(float)
    N = np.bincount(blocks[~pos], minlength=n_blocks).astype(float)
    return S, P, N


def auc_of_terms(terms: tuple[np.ndarray, np.ndarray, np.ndarray], weights=None):
    """AUC from :func:`auc_terms` with block ``weights`` (multiplicities; default all 1);
    None without positives or without negatives. With 2-D ``weights`` (one row per
    resample) an array of AUCs, NaN where undefined."""
    S, P, N = terms
    m = np.ones((1, P.size)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    total_pos, total_neg = m @ P, m @ N
    defined = (total_pos > 0) & (total_neg > 0)
    # Only blocks with positives (rows) and with negatives (columns) contribute.
    rows, cols = P > 0, N > 0
    pairs = np.einsum("rb,rb->r", m[:, rows] @ S[np.ix_(rows, cols)], m[:, cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(defined, pairs / (total_pos * total_neg), np.nan)
    if weights is not None and np.ndim(weights) == 2:
        return values
    return float(values[0]) if defined[0] else None


def auc(y_true, prob):
    """Area under the ROC curve, P(p_pos > p_neg) + ½ P(p_pos = p_neg); None with one class only."""
    return auc_of_terms(auc_terms(y_true, prob))


def roc_curve(y_true, prob, max_points: int = 201) -> dict:
    """ROC points from (POFD, POD) = (1, 1) to (0, 0): ``{"threshold", "pofd", "pod"}`` lists.

    One point per distinct probability (forecast positive when ``prob >= threshold``),
    thinned evenly to at most ``max_points`` keeping both ends; the first threshold is 0.
    """
    y, p = _checked(y_true, prob)
    values = np.unique(p)
    pos = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    thresholds = np.concatenate([[0.0], values[values > 0], [np.inf]])
    if thresholds.size > max_points:
        keep = np.unique(np.rint(np.linspace(0, thresholds.size - 1, max_points)).astype(int))
        thresholds = thresholds[keep]
    tp = pos.size - np.searchsorted(pos, thresholds, side="left")
    fp = neg.size - np.searchsorted(neg, thresholds, side="left")
    pod = tp / pos.size if pos.size else np.zeros_like(thresholds)
    pofd = fp / neg.size if neg.size else np.zeros_like(thresholds)
    shown = [float(t) if np.isfinite(t) else None for t in thresholds]
    return {"threshold": shown, "pofd": [float(v) for v in pofd], "pod": [float(v) for v in pod]}


#: Thresholds of :func:`threshold_curve` and of :func:`best_threshold`: 0.01 ... 0.99.
THRESHOLD_GRID = tuple(round(k / 100, 2) for k in range(1, 100))

#: Scores of :func:`threshold_curve`.
CURVE_SCORES = ("tss", "hss", "pod", "far", "pofd")


def counts_at_thresholds(y_true, prob, thresholds=THRESHOLD_GRID) -> list[Counts]:
    """Confusion :class:`Counts` at each threshold (probability sums left 0)."""
    y, p = _checked(y_true, prob)
    pos = np.sort(p[y == 1])
    neg = np.sort(p[y == 0])
    t = np.asarray(thresholds, dtype=float)
    tp = pos.size - np.searchsorted(pos, t, side="left")
    fp = neg.size - np.searchsorted(neg, t, side="left")
    return [Counts(int(a), int(b), int(neg.size - b), int(pos.size - a)) for a, b in zip(tp, fp)]


def threshold_curve(y_true, prob, thresholds=THRESHOLD_GRID) -> dict:
    """TSS, HSS, POD, FAR and POFD against the threshold: ``{"threshold": [...], "tss": [...], ...}``."""
    table = counts_at_thresholds(y_true, prob, thresholds)
    curve = {"threshold": [float(t) for t in thresholds]}
    for name in CURVE_SCORES:
        curve[name] = [c.score(name) for c in table]
    return curve


def best_threshold(y_true, prob, thresholds=THRESHOLD_GRID) -> float:
    """The threshold of ``thresholds`` maximising TSS (ties: the nearest 0.5, then the lower).

    Choose it on rows that are not scored (the inner validation block), never on the
    held-out fold.
    """
    table = counts_at_thresholds(y_true, prob, thresholds)
    scores = [c.score("tss") for c in table]
    best = max(scores)
    candidates = [t for t, s in zip(thresholds, scores) if s == best]
    return float(min(candidates, key=lambda t: (abs(t - 0.5), t)))


def reliability(y_true, prob, bins: int = 10) -> dict:
    """Reliability diagram in ``bins`` equal bins of probability: [0, 1/bins), ..., [.., 1].

    Returns ``{"bin_low", "bin_high", "count", "mean_prob", "observed"}`` lists: the number of
    forecasts in each bin, their mean probability and the observed flaring frequency
    (None where a bin is empty).
    """
    y, p = _checked(y_true, prob)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    prob_sum = np.bincount(index, weights=p, minlength=bins)
    hits = np.bincount(index, weights=y, minlength=bins)
    return {
        "bin_low": [float(e) for e in edges[:-1]],
        "bin_high": [float(e) for e in edges[1:]],
        "count": [int(c) for c in count],
        "mean_prob": [float(s / c) if c else None for s, c in zip(prob_sum, count)],
        "observed": [float(h / c) if c else None for h, c in zip(hits, count)],
    }
