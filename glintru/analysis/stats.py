"""Significance tests for model comparisons: paired t over users, Welch t over seeds, Wilcoxon, Holm.

Conventions (all tests two-sided, difference = a - b):
- paired t-test over users (scipy.stats.ttest_rel): effect size Cohen's d_z = mean(d) / sd(d), ddof=1;
  95% CI of the mean difference from the t distribution with n-1 degrees of freedom.
- Welch's t-test over seeds (scipy.stats.ttest_ind, equal_var=False): effect size Hedges' g, i.e.
  Cohen's d with the pooled sd, times the small-sample correction 1 - 3 / (4 (n_a + n_b) - 9);
  95% CI of the difference of means with the Welch-Satterthwaite degrees of freedom.
- Wilcoxon signed-rank over users (scipy.stats.wilcoxon, zero differences dropped): effect size the
  matched-pairs rank-biserial correlation; the CI is the paired t CI of the mean difference.
- Differences with zero variance: p = 1 when every difference is 0, p = 0 when all are the same
  non-zero value (the t statistic grows without bound).
- Holm-Bonferroni: step-down adjustment over one family; NaN p-values are not part of the family.
- Parameter importances: a study is rebuilt from the trials and scored by Optuna's fANOVA (when
  scikit-learn is installed) or PED-ANOVA (Optuna's own, no scikit-learn); without optuna, the
  absolute Spearman correlation (numeric) or correlation ratio (categorical) between each
  parameter and the objective, normalised to sum to 1 (it sees monotone effects of numeric
  parameters only: an optimum in the middle of a range scores low).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

TESTS = ("paired", "welch", "wilcoxon")
TEST_NAMES = {
    "paired": "paired t-test over users",
    "welch": "Welch's t-test over seeds",
    "wilcoxon": "Wilcoxon signed-rank test over users",
}


class SignificanceError(ValueError):
    """A comparison that cannot be tested honestly (too few seeds, mismatched users)."""


@dataclass
class Comparison:
    """The outcome of testing a against b (difference = a - b)."""

    test: str
    a: str
    b: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    statistic: float
    p: float
    effect: float
    effect_name: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_user_series(x: Any, name: str) -> pd.Series:
    if isinstance(x, pd.Series):
        s = x.astype(float)
    else:
        s = pd.Series(np.asarray(x, dtype=float))
    if s.index.has_duplicates:
        raise SignificanceError(f"{name}: users appear more than once; pass one value per user")
    if s.isna().any():
        raise SignificanceError(f"{name}: {int(s.isna().sum())} user value(s) are NaN")
    return s


def align_users(a: Any, b: Any, a_name: str = "a", b_name: str = "b") -> tuple[np.ndarray, np.ndarray]:
    """Values of a and b in one user order; refuses unless both cover exactly the same users.

    Series are matched by their index (the user id); plain arrays by position.
    """
    sa, sb = _as_user_series(a, a_name), _as_user_series(b, b_name)
    only_a = sa.index.difference(sb.index)
    only_b = sb.index.difference(sa.index)
    if len(only_a) or len(only_b):

        def some(idx: pd.Index) -> str:
            return ", ".join(str(u) for u in list(idx[:5])) + (", ..." if len(idx) > 5 else "")

        raise SignificanceError(
            f"paired comparison needs the same test users on both sides: {a_name} has {len(sa)} users, "
            f"{b_name} has {len(sb)}; {len(only_a)} only in {a_name}"
            + (f" (e.g. {some(only_a)})" if len(only_a) else "")
            + f", {len(only_b)} only in {b_name}"
            + (f" (e.g. {some(only_b)})" if len(only_b) else "")
            + ". Evaluate both on the same prepared dataset and split."
        )
    return sa.to_numpy(), sb.reindex(sa.index).to_numpy()


def _constant(x: np.ndarray) -> bool:
    """All values equal up to rounding (metrics live in [0, 1], so an absolute tolerance works)."""
    return bool(np.ptp(x) <= 1e-12)


def _paired_ci(d: np.ndarray, confidence: float) -> tuple[float, float]:
    n = len(d)
    half = sps.t.ppf(0.5 + confidence / 2, n - 1) * d.std(ddof=1) / np.sqrt(n)
    return float(d.mean() - half), float(d.mean() + half)


def _over_users(
    test: str,
    a_name: str,
    b_name: str,
    xa: np.ndarray,
    xb: np.ndarray,
    stat: float,
    p: float,
    effect: float,
    effect_name: str,
    confidence: float,
) -> Comparison:
    """A comparison of two aligned per-user vectors, with the paired confidence interval of the mean
    difference (a point where the difference is constant)."""
    d = xa - xb
    lo, hi = (float(d.mean()), float(d.mean())) if _constant(d) else _paired_ci(d, confidence)
    n = len(xa)
    return Comparison(
        test,
        a_name,
        b_name,
        n,
        n,
        float(xa.mean()),
        float(xb.mean()),
        float(d.mean()),
        lo,
        hi,
        stat,
        p,
        effect,
        effect_name,
    )


def paired_ttest(a: Any, b: Any, a_name: str = "a", b_name: str = "b", confidence: float = 0.95) -> Comparison:
    """Two-sided paired t-test over users (the same users on both sides)."""
    xa, xb = align_users(a, b, a_name, b_name)
    n = len(xa)
    if n < 2:
        raise SignificanceError(f"paired t-test needs at least 2 users; {a_name} vs {b_name} has {n}")
    d = xa - xb
    sd = d.std(ddof=1)
    if _constant(d):
        stat = 0.0 if d.mean() == 0 else float(np.sign(d.mean()) * np.inf)
        p = 1.0 if d.mean() == 0 else 0.0
        effect = 0.0 if d.mean() == 0 else stat
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            res = sps.ttest_rel(xa, xb)
        stat, p, effect = float(res.statistic), float(res.pvalue), float(d.mean() / sd)
    return _over_users("paired", a_name, b_name, xa, xb, stat, p, effect, "cohen_dz", confidence)


def wilcoxon_test(a: Any, b: Any, a_name: str = "a", b_name: str = "b", confidence: float = 0.95) -> Comparison:
    """Two-sided Wilcoxon signed-rank test over users, the non-parametric check of the paired t-test."""
    xa, xb = align_users(a, b, a_name, b_name)
    n = len(xa)
    if n < 2:
        raise SignificanceError(f"Wilcoxon test needs at least 2 users; {a_name} vs {b_name} has {n}")
    d = xa - xb
    nz = d[d != 0]
    if len(nz) == 0:
        stat, p, effect = 0.0, 1.0, 0.0
    else:
        res = sps.wilcoxon(d, zero_method="wilcox", alternative="two-sided")
        stat, p = float(res.statistic), float(res.pvalue)
        ranks = sps.rankdata(np.abs(nz))
        r_plus, r_minus = ranks[nz > 0].sum(), ranks[nz < 0].sum()
        effect = float((r_plus - r_minus) / (r_plus + r_minus))
    return _over_users("wilcoxon", a_name, b_name, xa, xb, stat, p, effect, "rank_biserial", confidence)


def welch_ttest(
    a: Sequence[float], b: Sequence[float], a_name: str = "a", b_name: str = "b", confidence: float = 0.95
) -> Comparison:
    """Two-sided Welch's t-test over seeds (one value per seed and side)."""
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    xa, xb = xa[~np.isnan(xa)], xb[~np.isnan(xb)]
    na, nb = len(xa), len(xb)
    if na < 2 or nb < 2:
        raise SignificanceError(
            f"Welch's t-test over seeds needs at least 2 seeds on each side: {a_name} has {na}, {b_name} has {nb}. "
            f"Rerun the chosen configurations with several seeds (tune/search.py --seeds 0,1,2,3,4) "
            f"or use the paired test over users."
        )
    va, vb = xa.var(ddof=1) / na, xb.var(ddof=1) / nb
    diff = float(xa.mean() - xb.mean())
    if _constant(xa) and _constant(xb):
        stat = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
        p = 1.0 if diff == 0 else 0.0
        lo = hi = diff
    else:
        with warnings.catch_warnings():
            # scipy flags near-constant samples; the exactly constant case is handled above.
            warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
            res = sps.ttest_ind(xa, xb, equal_var=False)
        stat, p = float(res.statistic), float(res.pvalue)
        df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
        half = sps.t.ppf(0.5 + confidence / 2, df) * np.sqrt(va + vb)
        lo, hi = diff - half, diff + half
    pooled = np.sqrt(((na - 1) * xa.var(ddof=1) + (nb - 1) * xb.var(ddof=1)) / (na + nb - 2))
    if not (_constant(xa) and _constant(xb)):
        effect = diff / pooled * (1 - 3 / (4 * (na + nb) - 9))
    else:
        effect = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
    return Comparison(
        "welch",
        a_name,
        b_name,
        na,
        nb,
        float(xa.mean()),
        float(xb.mean()),
        diff,
        float(lo),
        float(hi),
        stat,
        p,
        float(effect),
        "hedges_g",
    )


def compare(test: str, a: Any, b: Any, a_name: str = "a", b_name: str = "b", confidence: float = 0.95) -> Comparison:
    """Dispatch on `test` in TESTS: per-user vectors for paired/wilcoxon, per-seed values for welch."""
    fn = {"paired": paired_ttest, "welch": welch_ttest, "wilcoxon": wilcoxon_test}.get(test)
    if fn is None:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    return fn(a, b, a_name, b_name, confidence)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    order = np.argsort(p[ok], kind="stable")
    scaled = (m - np.arange(m)) * p[ok][order]
    adjusted = np.minimum(1.0, np.maximum.accumulate(scaled))
    inner = np.empty(m)
    inner[order] = adjusted
    out[ok] = inner
    return out


def comparisons_frame(comparisons: Sequence[Comparison], keys: Sequence[dict[str, Any]] | None = None) -> pd.DataFrame:
    """Comparisons as a DataFrame with Holm-adjusted p-values over all of them (one family)."""
    rows = []
    for i, c in enumerate(comparisons):
        row = dict(keys[i]) if keys is not None else {}
        row.update(c.as_dict())
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["p_holm"] = holm(frame["p"].to_numpy())
    return frame


def _correlation_importance(params: pd.DataFrame, y: np.ndarray) -> dict[str, float]:
    scores = {}
    for name in params.columns:
        x = params[name]
        keep = x.notna().to_numpy()
        xv, yv = x[keep], y[keep]
        if xv.nunique() < 2:
            continue
        if pd.api.types.is_numeric_dtype(xv) and not pd.api.types.is_bool_dtype(xv):
            rho = sps.spearmanr(xv.to_numpy(dtype=float), yv).statistic
            scores[name] = 0.0 if np.isnan(rho) else abs(float(rho))
        else:
            groups = pd.Series(yv).groupby(xv.astype(str).to_numpy())
            total = ((yv - yv.mean()) ** 2).sum()
            between = sum(len(g) * (g.mean() - yv.mean()) ** 2 for _, g in groups)
            scores[name] = float(np.sqrt(between / total)) if total > 0 else 0.0
    return scores


def _optuna_importance(params: pd.DataFrame, y: np.ndarray, maximize: bool, seed: int) -> tuple[dict[str, float], str]:
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, BaseDistribution] = {}
    for name in params.columns:
        x = params[name].dropna()
        if x.nunique() < 2:
            continue
        # A numeric parameter with a handful of values is a choice (as searched), not a range.
        if pd.api.types.is_bool_dtype(x) or not pd.api.types.is_numeric_dtype(x) or x.nunique() <= 8:
            dists[name] = CategoricalDistribution(sorted({_py(v) for v in x}, key=str))
        elif np.all(np.mod(x.to_numpy(dtype=float), 1) == 0):
            dists[name] = IntDistribution(int(x.min()), int(x.max()))
        else:
            dists[name] = FloatDistribution(float(x.min()), float(x.max()))
    trials = []
    for i in range(len(params)):
        values = {}
        for name, dist in dists.items():
            v = params[name].iloc[i]
            if pd.isna(v):
                continue
            v = _py(v)
            values[name] = (
                int(v)
                if isinstance(dist, IntDistribution)
                else (float(v) if isinstance(dist, FloatDistribution) else v)
            )
        trials.append(
            optuna.trial.create_trial(params=values, distributions={k: dists[k] for k in values}, value=float(y[i]))
        )
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    study.add_trials(trials)
    evaluator: optuna.importance.BaseImportanceEvaluator
    try:
        import sklearn  # noqa: F401  (optuna's fANOVA fits sklearn random forests)

        evaluator, name = optuna.importance.FanovaImportanceEvaluator(seed=seed), "optuna fANOVA"
    except ImportError:
        # PED-ANOVA wants several trials above the target quantile; small searches get a wider one.
        quantile = min(0.5, max(0.1, 5 / len(trials)))
        evaluator, name = optuna.importance.PedAnovaImportanceEvaluator(target_quantile=quantile), "optuna PED-ANOVA"
    scores = optuna.importance.get_param_importances(study, evaluator=evaluator, normalize=True)
    return dict(scores), name


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def param_importances(
    trials: pd.DataFrame,
    metric: str = "valid/ndcg@10",
    params: Sequence[str] | None = None,
    method: str = "auto",
    maximize: bool = True,
    seed: int = 0,
) -> tuple[pd.DataFrame, str]:
    """Importance of each varying config parameter for `metric` over finished search trials.

    Reruns of a "seeds" phase repeat chosen configurations and are left out.

    method: "optuna" (fANOVA or PED-ANOVA on a rebuilt study), "correlation" (see module docstring),
    or "auto"
    (optuna when importable). Returns (DataFrame param/importance sorted descending, method used).
    """
    t = trials
    if "status" in t.columns:
        t = t[t["status"] == "TERMINATED"]
    if "phase" in t.columns:
        t = t[t["phase"] != "seeds"]
    t = t[t[metric].notna()]
    if params is None:
        params = [c for c in t.columns if c.startswith("config/") and c != "config/seed"]
    varying = [c for c in params if t[c].dropna().nunique() >= 2]
    if len(t) < 3 or not varying:
        raise ValueError(
            f"parameter importances need at least 3 finished trials with a varying parameter; "
            f"got {len(t)} trial(s) and {len(varying)} varying parameter(s)"
        )
    frame = t[varying].rename(columns=lambda c: c.removeprefix("config/")).reset_index(drop=True)
    y = t[metric].to_numpy(dtype=float)
    if method == "auto":
        try:
            import optuna  # noqa: F401

            method = "optuna"
        except ImportError:
            method = "correlation"
    if method == "optuna":
        scores, used = _optuna_importance(frame, y, maximize, seed)
    elif method == "correlation":
        raw = _correlation_importance(frame, y)
        total = sum(raw.values())
        scores = {k: (v / total if total > 0 else 0.0) for k, v in raw.items()}
        used = "rank correlation"
    else:
        raise ValueError(f"unknown importance method {method!r}; choose auto, optuna or correlation")
    out = pd.DataFrame({"param": list(scores), "importance": [float(v) for v in scores.values()]})
    return out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True), used
