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


# ------------------------------------------------------------------ summable counts and probabilistic scores

# Six forecasts: targets and probabilities, and a training climatology of 0.25.
Y6 = [1, 1, 0, 0, 0, 1]
P6 = [0.9, 0.6, 0.2, 0.4, 0.1, 0.3]


def test_brier_and_bss_on_six_rows_by_hand():
    c = metrics.counts(Y6, P6, reference=0.25)
    # Brier = mean (p - y)^2 = (0.1² + 0.4² + 0.2² + 0.4² + 0.1² + 0.7²) / 6
    brier = (0.01 + 0.16 + 0.04 + 0.16 + 0.01 + 0.49) / 6
    # climatology 0.25: three flares miss by 0.75, three non-flares by 0.25
    brier_clim = (3 * 0.75**2 + 3 * 0.25**2) / 6
    assert c.score("brier") == pytest.approx(brier, abs=1e-15)
    assert c.score("bss") == pytest.approx(1 - brier / brier_clim, abs=1e-15)  # 0.536
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 0, 3, 1)
    assert c.score("pod") == pytest.approx(2 / 3) and c.score("far") == 0.0 and c.score("pofd") == 0.0
    assert c.score("base_rate") == 0.5 and c.score("mean_prob") == pytest.approx(2.5 / 6)
    # without a reference the BSS is undefined, never a made-up number
    assert metrics.counts(Y6, P6).score("bss") is None
    assert metrics.Counts(0, 0, 0, 0).score("brier") is None


def test_counts_add_up_like_the_whole_and_survive_a_round_trip():
    whole = metrics.counts(Y6, P6, reference=0.25)
    halves = metrics.counts(Y6[:2], P6[:2], reference=0.25) + metrics.counts(Y6[2:], P6[2:], reference=0.25)
    assert halves.to_list() == pytest.approx(whole.to_list(), abs=1e-15)
    assert metrics.Counts.from_sequence(np.array(whole.to_list(), dtype=float)) == whole
    assert whole.confusion == metrics.confusion(Y6, P6)
    with pytest.raises(ValueError, match="not finite"):
        metrics.counts([1, 0], [0.5, float("nan")])


def test_summands_of_torch_tensors_equal_numpy_counts():
    torch = pytest.importorskip("torch")
    prob = torch.tensor(P6, dtype=torch.float64)
    target = torch.tensor(Y6)
    sums = torch.stack([s.double() for s in metrics.summands(prob, target, 0.5, 0.25)])
    got, want = metrics.Counts.from_sequence(sums.tolist()), metrics.counts(Y6, P6, reference=0.25)
    assert got.confusion == want.confusion and got.to_list() == pytest.approx(want.to_list(), abs=1e-12)


def test_auc_equals_scikit_learn_on_random_data_with_ties():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for n in (7, 200, 3000):
        y = (rng.random(n) < 0.3).astype(int)
        y[:2] = [0, 1]
        p = np.round(rng.random(n), 2)  # ties on purpose
        assert metrics.auc(y, p) == pytest.approx(sklearn_metrics.roc_auc_score(y, p), abs=1e-12)
    assert metrics.auc([1, 1], [0.2, 0.3]) is None  # one class only: undefined


def test_block_weighted_auc_equals_the_auc_of_the_repeated_instances():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    n = 120
    y = (rng.random(n) < 0.4).astype(int)
    p = np.round(rng.random(n), 1)
    blocks = rng.integers(0, 6, n)
    weights = np.array([0, 2, 1, 3, 0, 1])
    terms = metrics.auc_terms(y, p, blocks, 6)
    repeat = weights[blocks]
    want = sklearn_metrics.roc_auc_score(np.repeat(y, repeat), np.repeat(p, repeat))
    assert metrics.auc_of_terms(terms, weights) == pytest.approx(want, abs=1e-12)
    both = metrics.auc_of_terms(terms, np.vstack([weights, np.ones(6)]))
    assert both[1] == pytest.approx(sklearn_metrics.roc_auc_score(y, p), abs=1e-12)


def test_roc_curve_runs_from_one_to_zero_and_its_area_is_the_auc():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.3).astype(int)
    p = np.round(rng.random(300), 2)
    roc = metrics.roc_curve(y, p, max_points=10_000)
    assert (roc["pofd"][0], roc["pod"][0]) == (1.0, 1.0) and (roc["pofd"][-1], roc["pod"][-1]) == (0.0, 0.0)
    x, h = np.array(roc["pofd"][::-1]), np.array(roc["pod"][::-1])
    assert float(np.sum(np.diff(x) * (h[1:] + h[:-1]) / 2)) == pytest.approx(metrics.auc(y, p), abs=1e-12)
    thin = metrics.roc_curve(y, p, max_points=11)
    assert len(thin["pod"]) <= 11 and thin["pod"][0] == 1.0 and thin["pod"][-1] == 0.0


def test_reliability_bins_by_hand():
    y = [0, 1, 0, 1, 1, 0]
    p = [0.05, 0.15, 0.15, 0.95, 1.0, 0.1]  # 0.1 opens bin 2; 1.0 belongs to the last bin
    r = metrics.reliability(y, p)
    assert r["bin_low"][1] == pytest.approx(0.1) and r["bin_high"][-1] == 1.0
    assert r["count"] == [1, 3, 0, 0, 0, 0, 0, 0, 0, 2]
    assert r["mean_prob"][1] == pytest.approx((0.15 + 0.15 + 0.1) / 3) and r["observed"][1] == pytest.approx(1 / 3)
    assert r["observed"][9] == 1.0 and r["mean_prob"][9] == pytest.approx(0.975)
    assert r["observed"][2] is None and r["mean_prob"][2] is None


def test_threshold_curve_is_the_confusion_at_each_threshold_and_the_best_tss():
    rng = np.random.default_rng(4)
    y = (rng.random(500) < 0.3).astype(int)
    p = np.clip(0.3 * y + 0.7 * rng.random(500), 0, 1)
    curve = metrics.threshold_curve(y, p)
    assert curve["threshold"][0] == 0.01 and curve["threshold"][-1] == 0.99 and len(curve["tss"]) == 99
    for i in (0, 30, 49, 98):
        c = metrics.confusion(y, p, curve["threshold"][i])
        assert curve["tss"][i] == c.tss and curve["hss"][i] == c.hss
        assert curve["pod"][i] == pytest.approx(c.tp / (c.tp + c.fn)) and curve["far"][i] == pytest.approx(c.fp / (c.tp + c.fp))
    best = metrics.best_threshold(y, p)
    assert metrics.confusion(y, p, best).tss == max(curve["tss"])
    # ties go to the threshold nearest 0.5: a perfect separation at 0.3-0.7 keeps 0.5
    assert metrics.best_threshold([0, 1], [0.2, 0.8]) == 0.5


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, float("nan"), "abc"])
def test_threshold_must_lie_strictly_between_0_and_1(bad):
    from flarelens.errors import FlareLensError

    with pytest.raises(FlareLensError, match="threshold"):
        metrics.check_threshold(bad)
    assert metrics.check_threshold("0.3") == 0.3
