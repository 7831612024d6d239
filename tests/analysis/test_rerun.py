"""A search's seed reruns against a preset at the same seeds: the numbers, and every refusal."""

import json

import numpy as np
import pandas as pd
import pytest

from glintru.analysis import collect
from glintru.analysis.comparability import ComparabilityError
from glintru.analysis.rerun import GOAL_GAIN, main, preset_comparison
from glintru.analysis.stats import SignificanceError, holm, paired_ttest, welch_ttest

import analysis_fakes as fakes

SEEDS = (0, 1, 2)
WIDE, NARROW = {"hidden_size": 128}, {"hidden_size": 32}


def _with_budget(exp, max_epochs):
    meta = json.loads((exp / "experiment.json").read_text())
    meta["settings"] = {"max_epochs": max_epochs}
    (exp / "experiment.json").write_text(json.dumps(meta))
    return exp


def _search(root, max_epochs=60, n_users=400):
    # the search's reruns: d=32 much better than the preset, d=128 as good as it; a search-phase trial aside
    reruns = fakes.make_trials(
        {"glintru": 0.5},
        {"beauty": n_users},
        SEEDS,
        configs={"glintru": [WIDE, NARROW]},
        effect=lambda model, cfg: 0.6 if cfg["hidden_size"] == 32 else 0.0,
    )
    for t in reruns:
        t.phase = "seeds"
    searched = fakes.make_trials({"glintru": 0.9}, {"beauty": n_users}, (0,), rng_seed=5)
    return _with_budget(fakes.write_experiment(root / "tpe", searched + reruns), max_epochs)


def _preset(root, name="preset", seeds=SEEDS, dataset="beauty", configs=None, max_epochs=60, n_users=400):
    trials = fakes.make_trials({"glintru": 0.5}, {dataset: n_users}, seeds, configs=configs, rng_seed=1)
    for t in trials:
        t.phase = "grid"
    return _with_budget(fakes.write_experiment(root / name, trials), max_epochs)


def test_found_configurations_against_the_preset(tmp_path):
    results = collect([str(_search(tmp_path)), str(_preset(tmp_path))])
    table = preset_comparison(results, "tpe", "preset", ["ndcg@10"])
    f = table.frame.set_index("value")
    assert f.index.tolist() == ["preset", "found 1", "found 2"]
    t = results.trials
    reruns = t[(t["experiment"] == "tpe") & (t["phase"] == "seeds")]
    by_width = {w: reruns[reruns["config/hidden_size"] == w] for w in (32, 128)}
    # found 1 is the configuration with the best mean validation over its seeds
    means = {w: g["valid/ndcg@10"].mean() for w, g in by_width.items()}
    first = max(means, key=means.get)
    assert f.loc["found 1", "settings"].startswith(f"hidden_size={first}")
    base = t[t["experiment"] == "preset"]
    assert f.loc["preset", "test/ndcg@10"] == pytest.approx(base["test/ndcg@10"].mean())
    users = {
        w: pd.concat([results.users(r).set_index("user")["ndcg@10"] for r in g.to_dict("records")], axis=1)
        for w, g in {**by_width, 0: base}.items()
    }
    p, welch = [], []
    for label in ("found 1", "found 2"):
        w = first if label == "found 1" else ({32, 128} - {first}).pop()
        g = by_width[w]
        assert f.loc[label, "test/ndcg@10"] == pytest.approx(g["test/ndcg@10"].mean())
        assert f.loc[label, "gain/ndcg@10"] == pytest.approx(g["test/ndcg@10"].mean() / base["test/ndcg@10"].mean() - 1)
        assert f.loc[label, "sd/ndcg@10"] == pytest.approx(g["test/ndcg@10"].std(ddof=1))
        p.append(paired_ttest(users[w].mean(axis=1), users[0].mean(axis=1)).p)
        welch.append(welch_ttest(g["test/ndcg@10"], base["test/ndcg@10"]).p)
    assert f.loc[["found 1", "found 2"], "p_holm/ndcg@10"].tolist() == pytest.approx(holm(p).tolist())
    assert f.loc[["found 1", "found 2"], "p_welch_holm/ndcg@10"].tolist() == pytest.approx(holm(welch).tolist())
    assert np.isnan(f.loc["preset", "p_holm/ndcg@10"]) and f.loc["preset", "gain/ndcg@10"] == 0.0
    # d=32 is far better (effect 0.6 on 400 users): the goal is met, and the table says so
    best = f.loc[["found 1", "found 2"], "gain/ndcg@10"].max()
    assert best > GOAL_GAIN
    assert "is met" in table.verdict() and f"{best:+.2%}" in table.verdict()
    md = table.to_markdown()
    assert "| preset | 3 |" in md and "up to 60 epochs each" in md


def test_the_goal_is_not_met_when_no_configuration_is_better(tmp_path):
    search = _search(tmp_path)
    trials = pd.read_parquet(search / "trials.parquet")
    keep = trials[(trials["phase"] == "search") | (trials["config/hidden_size"] == 128)]
    keep.to_parquet(search / "trials.parquet", index=False)
    table = preset_comparison(collect([str(search), str(_preset(tmp_path))]), "tpe", "preset", ["ndcg@10"])
    assert table.frame["value"].tolist() == ["preset", "found 1"]
    assert "is not met" in table.verdict()


@pytest.mark.parametrize(
    "preset_kwargs, error, message",
    [
        ({"max_epochs": 40}, ValueError, "different epoch budgets"),
        ({"configs": {"glintru": [WIDE, NARROW]}}, ValueError, "holds 2 configurations; the preset is one"),
        ({"dataset": "ml-1m"}, ComparabilityError, "were trained on different data"),
        ({"seeds": (3, 4, 5)}, SignificanceError, "different negatives"),
    ],
)
def test_what_cannot_be_compared_is_refused(tmp_path, preset_kwargs, error, message):
    results = collect([str(_search(tmp_path)), str(_preset(tmp_path, **preset_kwargs))])
    with pytest.raises(error, match=message):
        preset_comparison(results, "tpe", "preset", ["ndcg@10"])


def test_a_search_without_reruns_and_unknown_inputs_are_refused(tmp_path):
    searched = fakes.make_trials({"glintru": 0.9}, {"beauty": 50}, (0,))
    bare = _with_budget(fakes.write_experiment(tmp_path / "bare", searched), 60)
    results = collect([str(bare), str(_preset(tmp_path, n_users=50))])
    with pytest.raises(ValueError, match="holds no tested seed reruns .*--seeds 0,1,2 --top-k 2"):
        preset_comparison(results, "bare", "preset")
    with pytest.raises(ValueError, match="no input named 'tpe'"):
        preset_comparison(results, "tpe", "preset")
    with pytest.raises(ValueError, match="are one input"):
        preset_comparison(results, "preset", "preset")


def test_the_preset_as_train_runs_and_the_command(tmp_path, capsys):
    search = _search(tmp_path, max_epochs=20)
    presets = fakes.make_trials({"glintru": 0.5}, {"beauty": 400}, SEEDS, rng_seed=1)
    runs = [str(fakes.write_run(tmp_path / f"preset-s{t.seed}", t)) for t in presets]
    out = tmp_path / "cmp" / "table.json"
    assert main([str(search), *runs, "--metric", "ndcg@10", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| preset | 3 |" in printed and "up to 20 epochs each" in printed
    rows = json.loads(out.read_text())["rows"]
    assert [r["value"] for r in rows] == ["preset", "found 1", "found 2"]
    assert rows[0]["test/ndcg@10"] == pytest.approx(np.mean([t.test["ndcg@10"] for t in presets]))
    # the runs trained up to 20 epochs: against a search of 60 they are refused, in one error line
    _with_budget(search, 60)
    assert main([str(search), *runs, "--metric", "ndcg@10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "different epoch budgets" in err[0]
    assert "preset-s0: 20" in err[0] and "tpe: 60" in err[0]


def test_the_search_given_as_its_own_preset_is_refused(tmp_path, capsys):
    search = str(_search(tmp_path))
    for argv in ([search, search], [search, str(_preset(tmp_path)), str(tmp_path / "preset")]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "is given twice" in err
