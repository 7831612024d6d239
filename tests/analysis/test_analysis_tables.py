"""Table 2/3/4 layouts (golden files), the `*` marking rule, the Improv. row and refusals."""

import os

import numpy as np
import pandas as pd
import pytest
from conftest import GOLDEN
from scipy import stats as sps

from glintru.analysis import SignificanceError, ablation_table, collect, efficiency_table, holm, performance_table

import analysis_fakes as fakes

GATE_LABELS = {"silu": "Default (SiLU)", "relu": "ReLU", "sigmoid": "Sigmoid", "elu": "ELU"}


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("GLINTRU_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; create it with GLINTRU_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file"


@pytest.fixture(scope="module")
def golden_tables(golden_exp, ablation_exp):
    r = collect(golden_exp)
    return {
        "table2": performance_table(r),
        "table3": efficiency_table(r, reference="glintru"),
        "ablation_gate": ablation_table(
            collect(ablation_exp),
            "config/gate_activation",
            labels=GATE_LABELS,
            order=["silu", "relu", "sigmoid", "elu"],
        ),
    }


@pytest.mark.parametrize("name", ["table2", "table3", "ablation_gate"])
@pytest.mark.parametrize("fmt,ext", [("md", "md"), ("latex", "tex"), ("csv", "csv")])
def test_layouts_match_golden_files(golden_tables, name, fmt, ext):
    check_golden(f"{name}.{ext}", golden_tables[name].render(fmt))


def test_html_rendering_marks(golden_tables):
    html = golden_tables["table2"].to_html()
    assert '<th colspan="3">ML-1M</th>' in html
    assert "<td><b>0.8333</b><sup>*</sup></td>" in html and "<td><u>0.4167</u></td>" in html


def test_table2_values_marks_and_improv(golden_exp, golden_tables):
    r = collect(golden_exp)
    table = golden_tables["table2"]
    t = r.finished()
    # a cell is the mean over seeds of the trials' test metric
    g = t[(t["model"] == "glintru") & (t["dataset"] == "ml-1m")]
    assert table.means.at["glintru", ("ml-1m", "ndcg@10")] == pytest.approx(g["test/ndcg@10"].mean())
    assert table.seeds.at["glintru", ("ml-1m", "ndcg@10")] == 2
    assert table.ranks.at["glintru", ("ml-1m", "recall@10")] == 1
    assert table.ranks.at["mamba4rec", ("ml-1m", "recall@10")] == 2
    # Improv. = (best - second) / second
    for col in table.means.columns:
        best, second = sorted(table.means[col], reverse=True)[:2]
        assert table.improv[col] == pytest.approx((best - second) / second * 100)
    # 3 datasets x metrics x 3 other models = one Holm family of 18
    c = table.comparisons
    assert len(c) == 18 and set(c["best"]) == {"glintru"}
    np.testing.assert_allclose(c["p_holm"], holm(c["p"]))
    # On Beauty recall@10 the raw p against Mamba4Rec is < 0.05 but Holm lifts it above: no mark.
    row = c[(c["dataset"] == "beauty") & (c["metric"] == "recall@10") & (c["other"] == "mamba4rec")].iloc[0]
    assert row["p"] < 0.05 < row["p_holm"]
    assert not table.star.at["glintru", ("beauty", "recall@10")]
    assert table.star.at["glintru", ("ml-1m", "recall@10")]
    assert table.star.sum().sum() == 3  # the three ML-1M columns only
    long = table.to_long()
    assert len(long) == 4 * 6 and long["star"].sum() == 3


def _users(n: int = 30) -> np.ndarray:
    u = np.arange(n)
    return 0.3 + 0.2 * np.sin(u)


def _table(tmp_path, values: dict[str, np.ndarray], test: str = "paired", seeds=(0,)) -> pd.DataFrame:
    trials = [
        fakes.explicit_trial(m, "beauty", s, {"ndcg@10": v + 0.001 * s}) for m, v in values.items() for s in seeds
    ]
    return performance_table(collect(fakes.write_experiment(tmp_path / "exp", trials)), ["ndcg@10"], test=test)


def test_star_when_best_beats_every_other(tmp_path):
    base, u = _users(), np.arange(30)
    table = _table(tmp_path, {"glintru": base + 0.10 + 0.02 * np.cos(u), "sasrec": base, "gru4rec": base - 0.05})
    assert table.star.at["glintru", ("beauty", "ndcg@10")]
    assert table.star.to_numpy().sum() == 1
    assert "**0.4" in table.to_markdown() and "\\*" in table.to_markdown()


def test_no_star_when_one_comparison_fails(tmp_path):
    base, u = _users(), np.arange(30)
    best = base + 0.10 + 0.02 * np.cos(u)
    table = _table(
        tmp_path, {"glintru": best, "sasrec": base, "mamba4rec": best - 0.002 + 0.03 * np.sin(3 * u)}
    )  # a near tie
    c = table.comparisons.set_index("other")
    assert c.at["sasrec", "p_holm"] < 1e-6 and c.at["mamba4rec", "p_holm"] > 0.05
    assert table.ranks.at["glintru", ("beauty", "ndcg@10")] == 1
    assert table.ranks.at["mamba4rec", ("beauty", "ndcg@10")] == 2
    assert not table.star.to_numpy().any()
    md = table.to_markdown()
    assert "\\*" not in md.split("\n\n")[1]  # the table body carries no mark
    assert "<u>" in md


def test_holm_removes_a_mark_that_raw_p_values_would_give(tmp_path):
    base, u = _users(), np.arange(30)
    wiggle = 0.1 * (-1.0) ** u
    best = base + 0.2
    values = {
        "glintru": best,
        "sasrec": best - 0.042 - wiggle,
        "linrec": best - 0.043 - wiggle[::-1],
        "gru4rec": best - 0.3 - 0.05 * np.cos(u),
    }
    raw = [sps.ttest_rel(best, values[m]).pvalue for m in ("sasrec", "linrec", "gru4rec")]
    assert max(raw) < 0.05 and sorted(raw)[1] * 2 > 0.05  # raw all significant, Holm not
    table = _table(tmp_path, values)
    assert not table.star.to_numpy().any()
    np.testing.assert_allclose(sorted(table.comparisons["p"]), sorted(raw))


def test_improv_reference_shows_a_dash_when_the_reference_is_not_best(golden_exp):
    r = collect(golden_exp)
    assert not performance_table(r, reference="sasrec", test=None).improv.notna().any()
    assert performance_table(r, reference="glintru", test=None).improv.notna().all()
    md = performance_table(r, reference="sasrec", test=None).to_markdown()
    assert "| Improv. | - | - | - | - | - | - |" in md


def test_welch_refuses_one_seed_and_paired_refuses_other_users(tmp_path):
    base = _users()
    one_seed = [
        fakes.explicit_trial(m, "beauty", 0, {"ndcg@10": base + d}) for m, d in (("glintru", 0.1), ("sasrec", 0))
    ]
    r = collect(fakes.write_experiment(tmp_path / "one", one_seed))
    with pytest.raises(
        SignificanceError,
        match="Welch's t-test over seeds needs at least 2 seeds on each side: "
        "GLINT-RU on Amazon Beauty has 1, SASRec on Amazon Beauty has 1",
    ):
        performance_table(r, ["ndcg@10"], test="welch")
    assert performance_table(r, ["ndcg@10"], test="paired").star.to_numpy().any()

    other = [
        fakes.explicit_trial("glintru", "beauty", 0, {"ndcg@10": base + 0.1}),
        fakes.explicit_trial("sasrec", "beauty", 0, {"ndcg@10": base[:-1]}, users=range(1, 30)),
    ]
    r = collect(fakes.write_experiment(tmp_path / "other", other))
    with pytest.raises(
        SignificanceError, match="GLINT-RU on Amazon Beauty has 30 users, SASRec on Amazon Beauty has 29"
    ):
        performance_table(r, ["ndcg@10"])
    lenient = performance_table(r, ["ndcg@10"], strict=False)
    assert not lenient.star.to_numpy().any() and "same test users" in lenient.note
    assert "Significance not tested: paired comparison needs the same test users" in lenient.to_markdown()


def test_seeds_on_different_users_are_refused(tmp_path):
    base = _users()
    trials = [
        fakes.explicit_trial("glintru", "beauty", 0, {"ndcg@10": base}),
        fakes.explicit_trial("glintru", "beauty", 1, {"ndcg@10": base[:20]}),
        fakes.explicit_trial("sasrec", "beauty", 0, {"ndcg@10": base}),
    ]
    r = collect(fakes.write_experiment(tmp_path / "exp", trials))
    with pytest.raises(SignificanceError, match="seeds of GLINT-RU on Amazon Beauty were evaluated on different users"):
        performance_table(r, ["ndcg@10"])


def test_ablation_rows_follow_a_config_column(ablation_exp, golden_exp):
    r = collect([ablation_exp, golden_exp])
    table = ablation_table(r, "config/gate_activation", ["ndcg@10"])  # golden trials have no such column
    assert list(table.means.index) == ["silu", "relu", "sigmoid", "elu"]  # the paper's order and names
    assert table.row_names["silu"] == "Default (SiLU)"
    assert table.star.at["silu", ("beauty", "ndcg@10")]
    assert "Improv." not in table.to_markdown()
    by_size = ablation_table(r, "config/hidden_size", ["ndcg@10"], model="glintru", test=None)
    assert list(by_size.means.index) == [64] and by_size.row_names[64] == "hidden_size=64"
    with pytest.raises(KeyError, match="no column 'config/no_gru'"):
        ablation_table(r, "config/no_gru")


def test_component_ablation_names_follow_the_paper(tmp_path):
    base = 0.3 + 0.2 * np.sin(np.arange(30))
    drops = {"full": 0.0, "no_gru": 0.08, "no_attention": 0.03, "no_conv": 0.04, "no_gated_mlp": 0.02}
    trials = [
        fakes.explicit_trial(
            "glintru",
            "ml-1m",
            0,
            {"ndcg@10": base - d + 0.01 * np.cos(np.arange(30) * (i + 1))},
            config={"ablation": name},
        )
        for i, (name, d) in enumerate(drops.items())
    ]
    table = ablation_table(collect(fakes.write_experiment(tmp_path / "abl", trials)), "config/ablation", ["ndcg@10"])
    md = table.to_markdown()
    rows = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if line.startswith("| ")][2:]
    assert rows == ["Default", "w/o Gated MLP (Light GLINT-RU)", "w/o Attention", "w/o GRU", "w/o Temporal Conv1d"]
    assert table.star.at["full", ("ml-1m", "ndcg@10")]


def test_efficiency_table_values(golden_exp):
    table = efficiency_table(collect(golden_exp))
    v = table.values
    assert v.at[("ml-1m", "glintru"), "seconds_per_epoch"] == pytest.approx(2.05)  # mean of seeds 2.0 and 2.1
    assert table.ranks.at[("ml-1m", "glintru"), "infer_ms_per_batch"] == 1
    assert table.ranks.at[("ml-1m", "gru4rec"), "infer_ms_per_batch"] == 2
    assert table.improv.at["ml-1m", "infer_ms_per_batch"] == pytest.approx((33 - 30) / 33 * 100)
    assert table.devices == ["cpu"]


def test_tables_choose_on_the_metric_the_experiment_selected_by(tmp_path):
    # config a is the better one by validation NDCG@10, b by Recall@20, which the search optimised
    a = fakes.explicit_trial("glintru", "beauty", 0, {"ndcg@10": [0.5, 0.5], "recall@20": [0.6, 0.6]}, config={"lr": 1})
    b = fakes.explicit_trial("glintru", "beauty", 0, {"ndcg@10": [0.4, 0.4], "recall@20": [0.7, 0.7]}, config={"lr": 2})
    results = collect(fakes.write_experiment(tmp_path / "exp", [a, b], metric="valid/recall@20"))
    table = performance_table(results, ["ndcg@10"], test=None)
    assert table.means.loc["glintru", ("beauty", "ndcg@10")] == pytest.approx(0.4)
    assert efficiency_table(results).values.shape[0] == 1
    by_ndcg = performance_table(results, ["ndcg@10"], select="valid/ndcg@10", test=None)
    assert by_ndcg.means.loc["glintru", ("beauty", "ndcg@10")] == pytest.approx(0.5)
