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


def _rerun_rows(exp, keep):
    trials = pd.read_parquet(exp / "trials.parquet")
    trials[(trials["phase"] != "seeds") | keep(trials)].to_parquet(exp / "trials.parquet", index=False)


def test_a_preset_at_other_seeds_is_refused_under_sampled_negatives_and_told_what_to_train(tmp_path, capsys):
    # the preset at seeds 0, 1 against reruns at 0, 1, 2: under pop100 the users met other negatives
    search, preset = _search(tmp_path), _preset(tmp_path, seeds=(0, 1))
    assert main([str(search), str(preset), "--metric", "ndcg@10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different negatives" in err[0]
    assert "--test" not in err[0] and "train the preset at the seeds of the search's reruns" in err[0]


def test_under_full_ranking_other_seeds_and_a_single_seed_are_compared(tmp_path):
    # full ranking has no negatives to match: the preset at 0, 1 stands; a found configuration left with
    # one seed has no Welch test (shown as -) but its paired test over users
    def full(exp):
        trials = pd.read_parquet(exp / "trials.parquet").assign(eval_mode="full", negative_seed=None)
        trials.to_parquet(exp / "trials.parquet", index=False)
        return exp

    search = full(_search(tmp_path))
    _rerun_rows(search, lambda t: (t["config/hidden_size"] == 32) | (t["seed"] == 0))
    table = preset_comparison(collect([str(search), str(full(_preset(tmp_path, seeds=(0, 1))))]), "tpe", "preset")
    f = table.frame.set_index("settings")
    one = f.loc[[s for s in f.index if s.startswith("hidden_size=128")][0]]
    assert one["seeds"] == 1 and np.isnan(one["p_welch_holm/ndcg@10"]) and one["p_holm/ndcg@10"] < 1
    assert table.frame.loc[0, "seeds"] == 2
    row = [line for line in table.to_markdown().splitlines() if "hidden_size=128" in line][0].split(" | ")
    assert row[1] == "1" and row[-5] == "-"


def test_the_verdict_holds_the_search_choice_by_validation_not_the_best_test(tmp_path):
    # d=32 wins on test by far, but its validation is the lower: the search would choose d=128
    search = _search(tmp_path)
    trials = pd.read_parquet(search / "trials.parquet")
    narrow = (trials["phase"] == "seeds") & (trials["config/hidden_size"] == 32)
    trials.loc[narrow, "valid/ndcg@10"] = 0.01
    trials.to_parquet(search / "trials.parquet", index=False)
    table = preset_comparison(collect([str(search), str(_preset(tmp_path))]), "tpe", "preset", ["ndcg@10"])
    f = table.frame.set_index("value")
    assert f.loc["found 1", "settings"].startswith("hidden_size=128")
    assert f.loc["found 2", "gain/ndcg@10"] > GOAL_GAIN > f.loc["found 1", "gain/ndcg@10"]
    verdict = table.verdict()
    assert verdict.startswith("the search's choice (found 1") and "is not met" in verdict
    assert f"{f.loc['found 1', 'gain/ndcg@10']:+.2%}" in verdict


def test_an_unrecorded_budget_is_warned_of_and_one_exceeded_is_refused(tmp_path, capsys):
    search, preset = _search(tmp_path), _preset(tmp_path)
    meta = json.loads((preset / "experiment.json").read_text())
    del meta["settings"]
    (preset / "experiment.json").write_text(json.dumps(meta))
    assert main([str(search), str(preset), "--metric", "ndcg@10"]) == 0
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        f"warning: {preset} records no epoch budget (settings.max_epochs of experiment.json): it is compared "
        f"with the 60 epochs of {search} unchecked"
    ]
    assert f"up to 60 epochs each ({preset}: budget not recorded)" in out
    # its trials ran 70 epochs: more than the search's 60, so not the same budget
    trials = pd.read_parquet(preset / "trials.parquet").assign(epochs=70)
    trials.to_parquet(preset / "trials.parquet", index=False)
    assert main([str(search), str(preset), "--metric", "ndcg@10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{preset} records no epoch budget, but its trials ran 70 epochs" in err[0]


def test_preset_runs_of_two_budgets_are_named_as_such(tmp_path, capsys):
    search = _search(tmp_path, max_epochs=20)
    meta = json.loads((search / "experiment.json").read_text())
    del meta["settings"]
    (search / "experiment.json").write_text(json.dumps(meta))
    runs = [
        fakes.write_run(tmp_path / f"preset-s{t.seed}", t) for t in fakes.make_trials({"glintru": 0.5}, {"beauty": 400})
    ]
    config = json.loads((runs[2] / "config.json").read_text())
    config["train_config"]["epochs"] = 30
    (runs[2] / "config.json").write_text(json.dumps(config))
    assert main([str(search), *map(str, runs), "--metric", "ndcg@10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: the preset's runs trained under different epoch budgets")
    assert "preset-s2: 30" in err[0]


def test_outputs_never_overwrite_an_input(tmp_path, capsys):
    search, preset = _search(tmp_path), _preset(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    cases = [
        (
            ["--json", str(search / "trials.parquet")],
            f"--json {search / 'trials.parquet'} is inside the input {search}",
        ),
        (
            ["--out", str(search / "experiment.json")],
            f"--out {search / 'experiment.json'} is inside the input {search}",
        ),
        (["--out", str(preset / "users" / "new.md")], f"is inside the input {preset}"),
        (["--out", str(tmp_path)], f"--out {tmp_path} is a directory; give a file name such as compare.md"),
        (["--out", str(tmp_path / "a"), "--json", str(tmp_path / "a")], "--out and --json name one file"),
    ]
    for flags, message in cases:
        assert main([str(search), str(preset), "--metric", "ndcg@10", *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_an_input_given_twice_under_another_spelling_is_refused(tmp_path, capsys):
    search, preset = _search(tmp_path), _preset(tmp_path)
    (tmp_path / "link").symlink_to(preset)
    for again in (str(preset) + "/", str(tmp_path / "link")):
        assert main([str(search), str(preset), again, "--metric", "ndcg@10"]) == 2
        assert f"{again} is given twice" in capsys.readouterr().err


def test_a_seed_given_twice_in_the_preset_is_refused(tmp_path):
    # two experiments of the preset at the same seeds: six runs are not six seeds
    search, preset = _search(tmp_path), _preset(tmp_path)
    again = _preset(tmp_path, name="again")
    results = collect([str(search), str(preset), str(again)])
    with pytest.raises(ValueError, match=r"the preset holds seed 0 twice \(.*preset trial .* and .*again trial"):
        preset_comparison(results, "tpe", ["preset", "again"], ["ndcg@10"])


def test_no_metric_or_an_unknown_one_is_one_error_line(tmp_path, capsys):
    search, preset = _search(tmp_path, n_users=50), _preset(tmp_path, n_users=50)
    assert main([str(search), str(preset), "--metric", ","]) == 2
    assert capsys.readouterr().err.strip() == "error: --metric names no metric; e.g. --metric recall@10,mrr@10,ndcg@10"
    assert main([str(search), str(preset), "--metric", "valid/ndcg@10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown metric(s) valid/ndcg@10" in err[0] and "hit@10" in err[0]


def test_a_paired_test_that_cannot_pair_the_users_is_refused(tmp_path):
    # a preset recorded without a fingerprint, on other test users: a table without paired p would say nothing
    trials = fakes.make_trials({"glintru": 0.5}, {"beauty": 300}, SEEDS, rng_seed=1)
    preset = _with_budget(fakes.write_experiment(tmp_path / "preset", trials, legacy=True), 60)
    results = collect([str(_search(tmp_path)), str(preset)])
    with pytest.raises(SignificanceError, match="needs the same test users on both sides"):
        preset_comparison(results, "tpe", "preset", ["ndcg@10"])
