"""Significance tests against scipy and against values worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from glintru.analysis.stats import (
    SignificanceError,
    compare,
    holm,
    paired_ttest,
    param_importances,
    welch_ttest,
    wilcoxon_test,
)

A = np.array([0.5, 0.3, 0.9, 0.2])
B = np.array([0.4, 0.1, 0.6, 0.2])


def t3_cdf(t: float) -> float:
    """CDF of Student's t with 3 degrees of freedom, in closed form."""
    x = t / math.sqrt(3)
    return 0.5 + (x / (1 + x * x) + math.atan(x)) / math.pi


def test_paired_ttest_by_hand():
    # d = [0.1, 0.2, 0.3, 0.0]: mean 0.15, sd sqrt(0.05 / 3), t = 0.15 / (sd / 2)
    sd = math.sqrt(0.05 / 3)
    t = 0.15 / (sd / 2)
    c = paired_ttest(A, B, "GLINT-RU", "SASRec")
    assert c.statistic == pytest.approx(t, rel=1e-12)
    assert c.p == pytest.approx(2 * (1 - t3_cdf(t)), rel=1e-9)
    assert c.diff == pytest.approx(0.15)
    assert c.effect == pytest.approx(0.15 / sd) and c.effect_name == "cohen_dz"
    half = 3.182446305284263 * sd / 2  # t_{0.975, 3}
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.15 - half), pytest.approx(0.15 + half))
    assert (c.a, c.b, c.n_a, c.n_b) == ("GLINT-RU", "SASRec", 4, 4)


def test_paired_ttest_matches_scipy_and_aligns_users_by_index():
    rng = np.random.default_rng(0)
    a = pd.Series(rng.random(50), index=np.arange(50))
    b = pd.Series(a.to_numpy() - 0.05 + 0.1 * rng.random(50), index=np.arange(50))
    shuffled = b.sample(frac=1.0, random_state=1)  # same users, another order
    c = paired_ttest(a, shuffled)
    ref = sps.ttest_rel(a.to_numpy(), b.to_numpy())
    assert c.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_paired_refuses_mismatched_users():
    a = pd.Series([0.1, 0.2, 0.3, 0.4], index=[1, 2, 3, 4])
    b = pd.Series([0.1, 0.2, 0.3], index=[1, 2, 9])
    with pytest.raises(SignificanceError) as err:
        paired_ttest(a, b, "GLINT-RU", "SASRec")
    msg = str(err.value)
    assert "same test users" in msg
    assert "GLINT-RU has 4 users, SASRec has 3" in msg
    assert "2 only in GLINT-RU (e.g. 3, 4)" in msg and "1 only in SASRec (e.g. 9)" in msg
    with pytest.raises(SignificanceError, match="same test users"):
        wilcoxon_test(a, b)


def test_paired_degenerate_differences():
    same = paired_ttest([0.2, 0.4, 0.6], [0.2, 0.4, 0.6])
    assert same.p == 1.0 and same.diff == 0.0
    shifted = paired_ttest([0.3, 0.5, 0.7], [0.2, 0.4, 0.6])
    assert shifted.p == 0.0 and shifted.diff == pytest.approx(0.1)


def test_welch_by_hand_and_scipy():
    a, b = [0.52, 0.50, 0.55], [0.47, 0.48, 0.44, 0.46]
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 4
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    c = welch_ttest(a, b)
    assert c.statistic == pytest.approx(t, rel=1e-12)
    assert c.p == pytest.approx(2 * sps.t.sf(abs(t), df), rel=1e-9)
    assert c.p == pytest.approx(sps.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-12)
    half = sps.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert c.ci_low == pytest.approx(c.diff - half) and c.ci_high == pytest.approx(c.diff + half)
    pooled = math.sqrt((2 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1)) / 5)
    assert c.effect == pytest.approx((np.mean(a) - np.mean(b)) / pooled * (1 - 3 / (4 * 7 - 9)))
    assert c.effect_name == "hedges_g"


def test_welch_refuses_a_single_seed():
    with pytest.raises(SignificanceError) as err:
        welch_ttest([0.5], [0.4, 0.41, 0.42], "GLINT-RU on ML-1M", "SASRec on ML-1M")
    msg = str(err.value)
    assert "at least 2 seeds on each side" in msg
    assert "GLINT-RU on ML-1M has 1" in msg and "SASRec on ML-1M has 3" in msg
    assert "--seeds" in msg


def test_wilcoxon_exact_by_hand_and_scipy():
    # five positive differences: W- = 0, exact two-sided p = 2 / 2^5
    c = wilcoxon_test([2, 3, 4, 5, 6], [1, 1, 1, 1, 1])
    assert c.p == pytest.approx(2 / 32)
    assert c.effect == pytest.approx(1.0) and c.effect_name == "rank_biserial"
    rng = np.random.default_rng(2)
    a, b = rng.random(40), rng.random(40)
    ref = sps.wilcoxon(a - b)
    c = wilcoxon_test(a, b)
    assert c.statistic == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert wilcoxon_test([1, 2], [1, 2]).p == 1.0


def test_compare_dispatch_and_unknown_test():
    assert compare("paired", A, B).p == paired_ttest(A, B).p
    assert compare("welch", A, B).test == "welch"
    with pytest.raises(ValueError, match="unknown test 'anova'"):
        compare("anova", A, B)


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.04*1, 0.06) = 0.06
    adj = holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    out = holm([0.01, np.nan, 0.02])  # NaN is not part of the family (m = 2)
    np.testing.assert_allclose(out[[0, 2]], [0.02, 0.02])
    assert np.isnan(out[1])
    assert holm([]).shape == (0,)


def _search_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    k = rng.integers(1, 8, n)
    act = rng.choice(["silu", "relu"], n)
    lr = rng.choice([0.001, 0.003], n)
    y = 0.3 + 0.02 * k + 0.002 * rng.standard_normal(n)  # monotone: the correlation fallback sees it too
    return pd.DataFrame(
        {
            "status": "TERMINATED",
            "config/kernel_size": k,
            "config/gate_activation": act,
            "config/lr": lr,
            "config/seed": rng.integers(0, 3, n),
            "valid/ndcg@10": y,
        }
    )


@pytest.mark.parametrize("method", ["correlation", "optuna"])
def test_param_importances_rank_the_parameter_that_matters(method):
    if method == "optuna":
        pytest.importorskip("optuna")
    frame = _search_frame()
    imp, used = param_importances(frame, method=method)
    assert set(imp["param"]) == {"kernel_size", "gate_activation", "lr"}  # the seed is no hyperparameter
    assert imp["param"].iloc[0] == "kernel_size"
    assert imp["importance"].sum() == pytest.approx(1.0)
    assert used.startswith("optuna") if method == "optuna" else used == "rank correlation"


def test_correlation_importance_by_hand():
    frame = pd.DataFrame(
        {"config/a": [1, 2, 3, 4], "config/b": ["x", "x", "y", "y"], "valid/ndcg@10": [0.1, 0.2, 0.3, 0.4]}
    )
    imp, _ = param_importances(frame, method="correlation")
    # |spearman(a, y)| = 1; correlation ratio of b: sqrt(SS_between / SS_total) = sqrt(0.04 / 0.05)
    eta = math.sqrt(0.04 / 0.05)
    expected = {"a": 1 / (1 + eta), "b": eta / (1 + eta)}
    assert dict(zip(imp["param"], imp["importance"])) == pytest.approx(expected)


def test_param_importances_need_a_search():
    frame = pd.DataFrame({"config/a": [1, 1, 1], "valid/ndcg@10": [0.1, 0.2, 0.3]})
    with pytest.raises(ValueError, match="at least 3 finished trials with a varying parameter"):
        param_importances(frame)
