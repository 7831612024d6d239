"""Figures: the right data on the right axes, written as non-empty PNG and PDF."""

import numpy as np
import pandas as pd
import pytest

from glintru.analysis import collect, param_importances
from glintru.analysis.plots import (
    cost_vs_param,
    importance_plot,
    metric_vs_param,
    optimisation_history,
    save_figure,
    study_plot,
    sweep,
)
from glintru.analysis.studies import StudyTable
from glintru.search.studies import get_study

import analysis_fakes as fakes


@pytest.fixture(scope="module")
def paper(paper_exp):
    return collect(paper_exp).finished()


def test_metric_vs_kernel_size(paper, tmp_path):
    fig = metric_vs_param(paper, "config/kernel_size", dataset="ml-1m")
    axes = fig.get_axes()
    assert [ax.get_xlabel() for ax in axes] == ["kernel size k"] * 3
    assert [ax.get_ylabel() for ax in axes] == ["test Recall@10", "test MRR@10", "test NDCG@10"]
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert labels == ["Mamba4Rec", "GLINT-RU"]  # models without a kernel size have no line
    line = axes[2].containers[1].lines[0]  # the GLINT-RU errorbar data line
    data = sweep(paper, "config/kernel_size", "test/ndcg@10", dataset="ml-1m")
    g = data[data["model"] == "glintru"]
    assert list(line.get_xdata()) == [1.0, 3.0, 5.0]
    assert list(line.get_ydata()) == pytest.approx(g["mean"].tolist())
    assert g["seeds"].tolist() == [3, 3, 3]
    for path in save_figure(fig, tmp_path, "metric_k"):
        assert path.exists() and path.stat().st_size > 1000
    assert (tmp_path / "metric_k.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "metric_k.pdf").read_bytes()[:4] == b"%PDF"


def test_cost_vs_kernel_size(paper):
    fig = cost_vs_param(paper, "config/kernel_size", dataset="beauty")
    axes = fig.get_axes()
    assert [ax.get_ylabel() for ax in axes] == ["inference (ms/batch)", "training (s/epoch)", "peak memory (MB)"]
    assert {ax.get_xlabel() for ax in axes} == {"kernel size k"}
    # the fixture's cost rises by 3% per kernel step
    y = axes[1].containers[1].lines[0].get_ydata()
    assert y[0] < y[1] < y[2]


def test_metric_vs_param_needs_one_dataset(paper):
    with pytest.raises(ValueError, match="cover 2 datasets"):
        metric_vs_param(paper, "config/kernel_size")
    with pytest.raises(KeyError, match="config/num_heads"):
        sweep(paper, "config/num_heads", "test/ndcg@10", dataset="beauty")


def test_optimisation_history_is_best_so_far(search_exp):
    trials = collect(search_exp).trials
    fig = optimisation_history(trials, "valid/ndcg@10")
    ax = fig.get_axes()[0]
    assert ax.get_xlabel() == "trial (start order)" and ax.get_ylabel() == "validation NDCG@10"
    # the search phase only (ASHA-stopped trials included: they have a validation score); no seeds reruns
    finished = trials[(trials["status"] == "TERMINATED") & (trials["phase"] == "search")]
    assert len(finished) == 11
    step = ax.get_lines()[0]
    assert list(step.get_ydata()) == pytest.approx(finished["valid/ndcg@10"].cummax().tolist())
    assert 5 not in list(step.get_xdata())  # trial 5 errored and has no point
    assert len(ax.collections[0].get_offsets()) == len(finished)


def test_importance_plot(search_exp, tmp_path):
    imp, method = param_importances(collect(search_exp).trials, method="correlation")
    fig = importance_plot(imp, method)
    ax = fig.get_axes()[0]
    assert ax.get_ylabel() == "parameter"
    assert ax.get_xlabel() == "importance for validation NDCG@10 (rank correlation)"
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(ticks) == sorted(["kernel size k", "hidden size d", "learning rate", "gate_activation"])
    assert [p.get_width() for p in ax.patches] == pytest.approx(imp["importance"].iloc[::-1].tolist())
    assert all(p.stat().st_size > 0 for p in save_figure(fig, tmp_path, "imp"))


def test_hidden_size_layers_and_sequence_length(tmp_path):
    configs = {
        m: [{"hidden_size": d, "num_layers": n, "max_length": L} for d in (32, 64) for n in (1, 2) for L in (50, 100)]
        for m in ("glintru", "sasrec")
    }
    trials = fakes.make_trials({"glintru": 0.6, "sasrec": 0.3}, {"beauty": 60}, seeds=(0,), configs=configs)
    t = collect(fakes.write_experiment(tmp_path / "sweep", trials)).finished()
    for param, label in (("config/hidden_size", "hidden size d"), ("config/num_layers", "layers L")):
        fig = metric_vs_param(t, param, ["test/ndcg@10"])
        ax = fig.get_axes()[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == (label, "test NDCG@10")
        assert [tl.get_text() for tl in ax.get_legend().get_texts()] == ["SASRec", "GLINT-RU"]
    fig = cost_vs_param(t, "config/max_length", costs=["seconds_per_epoch", "peak_memory_mb"])
    ax = fig.get_axes()[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("max sequence length N", "training (s/epoch)")
    for container in ax.containers:
        x, y = container.lines[0].get_xdata(), container.lines[0].get_ydata()
        assert list(x) == [50.0, 100.0] and y[1] > y[0]  # the fixture's cost grows with the length


def test_study_plot_shows_means_paper_figures_marks_and_costs():
    study = get_study("activations")
    frame = pd.DataFrame(
        {
            "value": ["silu", "relu"],
            "seeds": [3, 3],
            "test/ndcg@10": [0.25, 0.24],
            "sd/ndcg@10": [0.002, 0.001],
            "paper/ndcg@10": [0.2964, 0.2770],
            "p_holm/ndcg@10": [np.nan, 0.01],
            "seconds_per_epoch": [22.0, 21.0],
            "infer_ms_per_batch": [5.0, 4.5],
        }
    )
    fig = study_plot(StudyTable(study, frame, ("ndcg@10",), "Amazon Beauty"))
    acc, train, infer = fig.get_axes()
    ours, paper = acc.collections[-2], acc.collections[-1]
    assert ours.get_offsets()[:, 1].tolist() == [0.25, 0.24]
    assert paper.get_offsets()[:, 1].tolist() == [0.2964, 0.2770]
    assert [t.get_text() for t in acc.texts] == ["*"]  # relu differs from the reference silu after Holm
    assert [t.get_text() for t in acc.get_xticklabels()] == ["silu", "relu"]
    assert [round(b.get_height(), 1) for b in train.patches] == [22.0, 21.0]
    assert [round(b.get_height(), 1) for b in infer.patches] == [5.0, 4.5]
    assert (train.get_ylabel(), infer.get_ylabel()) == ("training (s/epoch)", "inference (ms/batch)")
    with pytest.raises(ValueError, match="no tested row"):
        study_plot(StudyTable(study, frame.iloc[0:0], ("ndcg@10",), "Amazon Beauty"))
