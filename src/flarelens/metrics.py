"""Confusion counts and the skill scores of binary flare forecasts: TSS, HSS, and their
aggregation over cross-validation folds.

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
    the same length (empty is fine: all counts 0).
    """
    y = np.asarray(y_true).astype(bool).ravel()
    p = np.asarray(prob, dtype=float).ravel()
    if y.shape != p.shape:
        raise ValueError(f"y_true has {y.size} values but prob has {p.size}")
    forecast = p >= threshold
    tp = int(np.count_nonzero(forecast & y))
    fp = int(np.count_nonzero(forecast & ~y))
    fn = int(np.count_nonzero(~forecast & y))
    tn = int(y.size - tp - fp - fn)
    return Confusion(tp=tp, fp=fp, tn=tn, fn=fn)


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
