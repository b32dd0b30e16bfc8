"""flarelens.metrics: the cases mutation testing found unguarded (see docs/mutation.md).

Degenerate cases take the defined values of the module's docstring without warning; the
block AUC equals the AUC of the instances the block weights stand for (brute force here);
single positives or negatives, blocks without one class, custom thresholds and the
error messages a user reads.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest

from flarelens import metrics
from flarelens.metrics import Counts


def brute_auc(y, p):
    """P(p_pos > p_neg) + 1/2 P(p_pos = p_neg) over every (positive, negative) pair."""
    pos = [a for a, t in zip(p, y) if t == 1]
    neg = [a for a, t in zip(p, y) if t == 0]
    if not pos or not neg:
        return None
    return sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg)) / (len(pos) * len(neg))


@pytest.fixture
def strict():
    """Degenerate cases must not warn: turn every warning into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_zero_denominator_rates_are_zero(strict):
    no_positives = Counts(tp=0, fp=3, tn=5, fn=0)
    assert no_positives.score("pod") == 0.0
    no_yes_forecasts = Counts(tp=0, fp=0, tn=5, fn=2)
    assert no_yes_forecasts.score("far") == 0.0
    assert Counts(tp=2, fp=0, tn=0, fn=1).score("pofd") == 0.0
    assert no_positives.scores(["pod", "far"]) == {"pod": 0.0, "far": pytest.approx(1.0)}


def test_bss_of_a_single_instance_and_undefined_without_reference_error():
    # One instance, y = 1, p = 0.8, climatology 0.5: BSS = 1 - 0.2² / 0.5² = 0.84.
    c = metrics.counts([1], [0.8], reference=0.5)
    assert c.n == 1 and c.score("bss") == pytest.approx(1 - 0.04 / 0.25)
    assert metrics.counts([1, 0], [0.8, 0.1]).score("bss") is None  # no reference: Brier_clim 0


def test_forecasts_given_are_counted_instead_of_the_threshold():
    c = metrics.counts([1, 0, 1, 0], [0.9, 0.9, 0.1, 0.1], forecast=[True, True, True, True])
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 2, 0, 0)
    assert metrics.skill_scores([1, 0], [0.9, 0.7], threshold=0.8) == (1.0, 1.0)


def test_error_messages_name_the_problem():
    with pytest.raises(ValueError, match="y_true has 3 values but prob has 2"):
        metrics.counts([1, 0, 1], [0.5, 0.5])
    with pytest.raises(ValueError, match=r"^2 probabilities are not finite"):
        metrics.counts([1, 0, 1], [np.nan, 0.5, np.inf])
    with pytest.raises(ValueError, match="non-negative integers, got -1"):
        Counts.from_sequence([-1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"expected 7 sums \(tp, fp, tn, fn, sq_err, ref_sq_err, prob_sum\), got 3"):
        Counts.from_sequence([1, 2, 3])


@pytest.mark.parametrize("y, p", [
    ([1, 0], [0.9, 0.1]),                      # one positive, one negative
    ([1, 0, 0], [0.2, 0.1, 0.3]),              # one positive
    ([1, 1, 0], [0.2, 0.4, 0.3]),              # one negative
    ([0, 1, 0, 1, 1], [0.3, 0.3, 0.1, 0.5, 0.0]),  # ties
])
def test_auc_with_few_instances_of_a_class(y, p):
    assert metrics.auc(y, p) == pytest.approx(brute_auc(y, p))


def test_block_auc_equals_the_auc_of_the_resampled_instances(strict):
    # Block 0: positives only; block 1: one negative and one positive; block 2: negatives
    # only; block 3: one negative. Weights repeat whole blocks, as the bootstrap does.
    y = np.array([1, 1, 0, 1, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.5, 0.6, 0.3, 0.6, 0.1])
    blocks = np.array([0, 0, 1, 1, 2, 2, 3])
    terms = metrics.auc_terms(y, p, blocks=blocks.astype(float))  # float block numbers from a table
    S, P, N = terms
    assert S.shape == (4, 4) and P.tolist() == [2, 1, 0, 0] and N.tolist() == [0, 1, 2, 1]
    weights = np.array([[1, 1, 1, 1], [2, 0, 1, 3], [0, 1, 0, 0], [1, 0, 0, 2], [0, 0, 2, 1]])
    got = metrics.auc_of_terms(terms, weights)
    for w, value in zip(weights, got):
        yy = np.concatenate([y[blocks == b] for b in range(4) for _ in range(w[b])])
        pp = np.concatenate([p[blocks == b] for b in range(4) for _ in range(w[b])])
        expected = brute_auc(yy, pp)
        if expected is None:
            assert np.isnan(value)
        else:
            assert value == pytest.approx(expected)
    one = metrics.auc_of_terms(terms, weights[1])
    assert isinstance(one, float) and one == pytest.approx(got[1])
    assert metrics.auc_of_terms(terms) == pytest.approx(brute_auc(y, p))


def test_auc_terms_block_count_given_and_empty():
    S, P, N = metrics.auc_terms([1, 0], [0.7, 0.2], blocks=[0, 0], n_blocks=3)
    assert S.shape == (3, 3) and P.tolist() == [1, 0, 0] and N.tolist() == [1, 0, 0]
    S, P, N = metrics.auc_terms([], [])
    assert S.shape == (1, 1) and P.tolist() == [0] and N.tolist() == [0]
    assert metrics.auc([], []) is None
    assert metrics.auc([0, 0], [0.1, 0.2]) is None and metrics.auc([1, 1], [0.1, 0.2]) is None


def test_roc_curve_ends_and_thinning(strict):
    rng = np.random.default_rng(0)
    p = np.round(rng.uniform(0, 1, 1000), 6)
    p[:3] = 0.0
    y = (rng.uniform(0, 1, 1000) < p).astype(int)
    roc = metrics.roc_curve(y, p)
    assert len(roc["threshold"]) == 201 == len(roc["pod"])
    assert roc["threshold"][0] == 0.0 and roc["threshold"][1] > 0 and roc["threshold"][-1] is None
    assert all(isinstance(t, float) for t in roc["threshold"][:-1])
    assert (roc["pofd"][0], roc["pod"][0]) == (1.0, 1.0) and (roc["pofd"][-1], roc["pod"][-1]) == (0.0, 0.0)
    small = metrics.roc_curve([1, 0, 0], [0.0, 0.4, 0.4])
    assert small["threshold"] == [0.0, 0.4, None]
    one_class = metrics.roc_curve([0, 0], [0.2, 0.7])
    assert one_class["pod"] == [0.0] * 4 and one_class["pofd"] == [1.0, 1.0, 0.5, 0.0]
    assert metrics.roc_curve([1, 1], [0.2, 0.7])["pofd"] == [0.0, 0.0, 0.0, 0.0]


def test_best_threshold_is_chosen_from_the_thresholds_given():
    y, p = [1, 1, 0, 0], [0.8, 0.75, 0.2, 0.7]
    assert metrics.best_threshold(y, p, thresholds=[0.3, 0.72]) == 0.72
    curve = metrics.threshold_curve(y, p, thresholds=[0.3, 0.72])
    assert curve["threshold"] == [0.3, 0.72] and curve["tss"] == [0.5, 1.0]


def test_reliability_bin_edges():
    rel = metrics.reliability([0, 1, 1], [0.05, 0.95, 1.0], bins=4)
    assert rel["bin_low"] == [0.0, 0.25, 0.5, 0.75] and rel["bin_high"] == [0.25, 0.5, 0.75, 1.0]
    assert rel["count"] == [1, 0, 0, 2] and rel["observed"] == [0.0, None, None, 1.0]
    low = metrics.reliability([1], [0.05], bins=4)  # the top bins empty: still 4 bins
    assert low["count"] == [1, 0, 0, 0] and low["mean_prob"] == [0.05, None, None, None]
    assert low["observed"] == [1.0, None, None, None]
