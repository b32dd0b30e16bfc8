"""Confusion counts, TSS, HSS and their aggregation over folds, on hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from flarelens import metrics
from flarelens.metrics import Confusion, aggregate, confusion, hss, skill_scores, tss


@pytest.mark.parametrize(
    "tp, fp, tn, fn, want_tss, want_hss",
    [
        # TSS = 3/4 - 1/2; HSS = 2(3·1 - 1·1) / (4·2 + 4·2)
        (3, 1, 1, 1, 0.25, 4 / 16),
        # TSS = 2/3 - 3/7; HSS = 2(2·4 - 1·3) / (3·5 + 5·7)
        (2, 3, 4, 1, 2 / 3 - 3 / 7, 10 / 50),
        # perfect forecast
        (2, 0, 3, 0, 1.0, 1.0),
        # every forecast wrong: TSS = 0 - 1; HSS = 2(0 - 2·3) / (2·2 + 3·3)
        (0, 3, 0, 2, -1.0, -12 / 13),
        # no skill: hit rate equals false-alarm rate
        (1, 2, 2, 1, 0.0, 0.0),
    ],
)
def test_tss_hss_hand_computed(tp, fp, tn, fn, want_tss, want_hss):
    assert tss(tp, fp, tn, fn) == pytest.approx(want_tss, abs=1e-15)
    assert hss(tp, fp, tn, fn) == pytest.approx(want_hss, abs=1e-15)
    c = Confusion(tp, fp, tn, fn)
    assert (c.tss, c.hss) == (tss(tp, fp, tn, fn), hss(tp, fp, tn, fn))
    assert c.n == tp + fp + tn + fn


@pytest.mark.parametrize(
    "tp, fp, tn, fn, want_tss, want_hss",
    [
        # no positives: hit rate counts as 0, so TSS = -FP/(FP+TN); HSS numerator 0
        (0, 2, 3, 0, -0.4, 0.0),
        # nothing forecast positive: TSS = 0 - 0; HSS = 2(0 - 0)/(2·7 + 0)
        (0, 0, 5, 2, 0.0, 0.0),
        # no positives and nothing forecast positive: HSS denominator 0 -> 0
        (0, 0, 5, 0, 0.0, 0.0),
        # no negatives: false-alarm rate counts as 0
        (3, 0, 0, 1, 0.75, 0.0),
        # all positive, all forecast positive: HSS denominator 0 -> 0
        (4, 0, 0, 0, 1.0, 0.0),
        # no instances at all
        (0, 0, 0, 0, 0.0, 0.0),
    ],
)
def test_degenerate_cases_have_defined_values_without_warnings(tp, fp, tn, fn, want_tss, want_hss):
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        assert tss(tp, fp, tn, fn) == pytest.approx(want_tss, abs=1e-15)
        assert hss(tp, fp, tn, fn) == pytest.approx(want_hss, abs=1e-15)
        y = [1] * (tp + fn) + [0] * (fp + tn)
        p = [0.9] * tp + [0.1] * fn + [0.9] * fp + [0.1] * tn
        assert skill_scores(y, p) == (pytest.approx(want_tss, abs=1e-15), pytest.approx(want_hss, abs=1e-15))


def test_reproduces_the_studys_printed_fold_scores():
    # Counts and scores as printed by the original study's result notebook (VGG16, four folds);
    # the mean over folds is the published TSS 0.51 and HSS 0.35.
    folds = [
        ((1777, 2319, 10135, 557), 0.5751486636202545, 0.44014573119868605),
        ((1237, 3278, 10577, 375), 0.5307764394253492, 0.295586748222468),
        ((1335, 2581, 11727, 1029), 0.3843322183890593, 0.30166847919515566),
        ((2073, 3373, 10659, 617), 0.530252836850873, 0.3749851523238552),
    ]
    for counts, want_tss, want_hss in folds:
        assert tss(*counts) == pytest.approx(want_tss, rel=1e-12)
        assert hss(*counts) == pytest.approx(want_hss, rel=1e-12)
    mean_tss, _ = aggregate(tss(*c) for c, _, _ in folds)
    mean_hss, _ = aggregate(hss(*c) for c, _, _ in folds)
    assert round(mean_tss, 2) == 0.51 and round(mean_hss, 2) == 0.35


def test_confusion_threshold_is_inclusive():
    y = [1, 1, 0, 0, 1, 0]
    p = [0.5, 0.49999, 0.5, 0.1, 0.8, 0.7]
    assert confusion(y, p) == Confusion(tp=2, fp=2, tn=1, fn=1)
    assert confusion(y, p, threshold=0.75) == Confusion(tp=1, fp=0, tn=3, fn=2)
    # threshold 0: everything is forecast positive
    assert confusion(y, p, threshold=0.0) == Confusion(tp=3, fp=3, tn=0, fn=0)


def test_confusion_accepts_empty_and_rejects_mismatched_lengths():
    assert confusion([], []) == Confusion(0, 0, 0, 0)
    with pytest.raises(ValueError):
        confusion([1, 0], [0.3])


def test_counts_must_be_non_negative_integers():
    with pytest.raises(ValueError):
        tss(-1, 0, 0, 0)
    with pytest.raises(ValueError):
        hss(1.5, 0, 0, 0)


def test_hss_exact_for_huge_counts():
    big = 10**12
    assert hss(big, 0, big, 0) == 1.0
    assert hss(big, big, big, big) == 0.0


def test_pooling_and_dict():
    a, b = Confusion(1, 2, 3, 4), Confusion(10, 20, 30, 40)
    assert a + b == Confusion(11, 22, 33, 44)
    d = a.as_dict()
    assert list(d) == ["tp", "fp", "tn", "fn", "tss", "hss"]
    assert d["tss"] == pytest.approx(1 / 5 - 2 / 5)
    assert all(type(d[k]) is int for k in ("tp", "fp", "tn", "fn"))


def test_aggregate_population_and_sample_std():
    mean, std = aggregate([0.2, 0.4])
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1)
    mean, std = aggregate([0.2, 0.4], ddof=1)
    assert std == pytest.approx(math.sqrt(0.02))
    assert metrics.STD_DDOF == 0 and metrics.STD_KIND == "population"
    assert aggregate([0.7]) == (0.7, 0.0)
    assert aggregate([0.7], ddof=1) == (0.7, 0.0)
    assert aggregate([]) == (0.0, 0.0)
    assert aggregate([0.1, 0.1, 0.1])[1] == 0.0
