"""The Pareto front of a multi-objective search: which trials it holds, and its figure."""

from __future__ import annotations

import pandas as pd

from glintru.analysis.plots import pareto_plot
from glintru.search.objectives import pareto_mask, parse_objectives


def _trials() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "trial_id": ["fast", "accurate", "dominated", "tie", "stopped", "no_cost"],
            "completed": [True, True, True, True, False, True],
            "valid/ndcg@10": [0.10, 0.30, 0.09, 0.10, 0.99, 0.50],
            "infer_ms_per_batch": [1.0, 5.0, 2.0, 1.0, 0.1, None],
        }
    )


def test_the_front_holds_the_undominated_finished_trials():
    df = _trials()
    mask = pareto_mask(df, parse_objectives("ndcg@10,infer_ms"))
    # equal trials do not dominate each other; a stopped trial or one without a cost is no candidate
    assert list(df.loc[mask, "trial_id"]) == ["fast", "accurate", "tie"]
    # the direction matters: maximising the cost keeps the slow one
    slow = pareto_mask(df, parse_objectives("ndcg@10,infer_ms:max"))
    assert list(df.loc[slow, "trial_id"]) == ["accurate"]
    # one objective: the best finished trial
    assert list(df.loc[pareto_mask(df, parse_objectives("ndcg@10")), "trial_id"]) == ["no_cost"]


def test_the_front_figure(tmp_path):
    df = _trials()
    df["pareto"] = pareto_mask(df, parse_objectives("ndcg@10,infer_ms"))
    fig = pareto_plot(df, "valid/ndcg@10", "infer_ms_per_batch")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "inference (ms/batch)" and "Pareto front (3)" in [
        t.get_text() for t in ax.get_legend().get_texts()
    ]
    fig.savefig(tmp_path / "front.png")
    assert (tmp_path / "front.png").stat().st_size > 0
