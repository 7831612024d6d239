"""Reading experiment and run directories, from local paths and through pyarrow/fsspec filesystems."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glintru.analysis import best_configs, collect, config_columns, select_best

import analysis_fakes as fakes


def test_collect_experiment_dir(golden_exp):
    r = collect(str(golden_exp))
    t = r.trials
    assert list(r.experiments) == ["golden"]
    assert len(t) == 16 and set(t["experiment"]) == {"golden"}
    assert {
        "trial_id",
        "status",
        "model",
        "dataset",
        "seed",
        "valid/ndcg@10",
        "test/recall@10",
        "config/kernel_size",
        "seconds_per_epoch",
        "users_path",
    } <= set(t.columns)
    first = t.iloc[0]
    users = r.users(first)
    assert list(users.columns[:2]) == ["user", "recall@10"] and len(users) == 120
    # trials.parquet test means are the means of the per-user files
    assert users["ndcg@10"].mean() == pytest.approx(first["test/ndcg@10"])


def test_tidy_user_metrics_and_efficiency(golden_exp):
    r = collect([golden_exp])
    trials = r.finished().head(2)
    long = r.user_metrics(trials, metrics=["ndcg@10", "mrr@10"])
    assert list(long.columns) == ["experiment", "trial_id", "model", "dataset", "seed", "user", "metric", "value"]
    assert len(long) == 2 * 120 * 2
    assert set(long["metric"]) == {"ndcg@10", "mrr@10"}
    eff = r.efficiency()
    assert len(eff) == 16
    assert {"device", "config/hidden_size", "infer_ms_per_batch", "peak_memory_mb"} <= set(eff.columns)


def test_run_dirs_are_single_trials(tmp_path):
    trials = fakes.make_trials({"glintru": 0.5, "sasrec": 0.2}, {"beauty": 80}, seeds=(0, 1))
    runs = [fakes.write_run(tmp_path / f"run{i}", t) for i, t in enumerate(trials)]
    r = collect([str(p) for p in runs])
    t = r.trials
    assert len(t) == 4 and list(t["trial_id"]) == ["run0", "run1", "run2", "run3"]
    assert list(t["model"]) == ["glintru", "glintru", "sasrec", "sasrec"]
    assert list(t["seed"]) == [0, 1, 0, 1]
    assert set(t["dataset"]) == {"beauty"} and set(t["device"]) == {"cpu"}
    assert t["config/hidden_size"].tolist() == [64] * 4 and t["config/lr"].tolist() == [0.001] * 4
    assert t.iloc[0]["test/ndcg@10"] == pytest.approx(trials[0].test["ndcg@10"])
    assert len(r.users(t.iloc[2])) == 80
    # seeds of one configuration form one group
    chosen = select_best(t)
    assert len(chosen) == 4


def test_file_uri_and_fsspec_memory_filesystem(golden_exp):
    via_uri = collect(Path(golden_exp).resolve().as_uri())
    assert len(via_uri.trials) == 16
    assert len(via_uri.users(via_uri.trials.iloc[3])) == 120
    fsspec = pytest.importorskip("fsspec")
    mem = fsspec.filesystem("memory")
    for path in Path(golden_exp).rglob("*"):
        if path.is_file():
            with mem.open(f"/bucket/golden/{path.relative_to(golden_exp).as_posix()}", "wb") as f:
                f.write(path.read_bytes())
    r = collect("memory://bucket/golden")
    assert r.experiments["golden"].name == "golden" and len(r.trials) == 16
    pd.testing.assert_frame_equal(r.users(r.trials.iloc[5]), via_uri.users(via_uri.trials.iloc[5]))


def test_two_dirs_with_one_name_stay_apart(golden_exp, tmp_path):
    other = fakes.write_experiment(tmp_path / "copy", fakes.golden_trials(n_users=10, seeds=(0,)), name="golden")
    r = collect([golden_exp, other])
    assert list(r.experiments) == ["golden", "golden#2"]
    assert len(r.users(r.trials[r.trials["experiment"] == "golden#2"].iloc[0])) == 10


def test_clear_errors(tmp_path, golden_exp):
    with pytest.raises(FileNotFoundError, match="neither an experiment directory"):
        collect(str(tmp_path))
    running = tmp_path / "running"
    (running / "tune" / "search").mkdir(parents=True)
    (running / "experiment.json").write_text('{"name": "running"}')
    with pytest.raises(FileNotFoundError, match="a search experiment with no trials.parquet yet: it is still running"):
        collect(str(running))
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"trial_id": ["a"], "status": ["TERMINATED"]}).to_parquet(bad / "trials.parquet")
    with pytest.raises(ValueError, match=r"trials.parquet: missing column\(s\) model, dataset"):
        collect(str(bad))
    missing = fakes.write_experiment(tmp_path / "missing", fakes.golden_trials(n_users=5, seeds=(0,)), skip_users=[1])
    r = collect(missing)
    with pytest.raises(FileNotFoundError, match="no per-user metrics for trial missing_00001"):
        r.users(r.trials.iloc[1])


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("metrics.json", "[]", r"metrics.json: holds a JSON list, not the object glintru writes there"),
        ("metrics.json", '{"valid": {}, "test": null}', r"metrics.json: no 'test' object; it is not a file of a fini"),
        ("metrics.json", '{"valid": [], "test": {}}', r"metrics.json: a list as its 'valid' object"),
        ("metrics.json", '{"valid": {', r"metrics.json: invalid JSON at line 1"),
        ("config.json", "[1]", r"config.json: holds a JSON list"),
        ("config.json", '{"model": "gru4rec"}', r"config.json: no 'train_config' object"),
    ],
)
def test_a_damaged_run_file_is_one_error_naming_it(tmp_path, name, text, message):
    (trial,) = fakes.make_trials({"glintru": 0.5}, {"beauty": 20}, seeds=(0,))
    run = fakes.write_run(tmp_path / "run", trial)
    (run / name).write_text(text)
    with pytest.raises(ValueError, match=message) as e:
        collect(str(run))
    assert str(run / name) in str(e.value)


def test_one_directory_given_twice_is_refused(golden_exp, tmp_path):
    (trial,) = fakes.make_trials({"glintru": 0.5}, {"beauty": 20}, seeds=(0,))
    run = fakes.write_run(tmp_path / "run", trial)
    with pytest.raises(ValueError, match=r"are one directory given twice; give it once"):
        collect([str(run), str(tmp_path / "." / "run/")])
    with pytest.raises(ValueError, match=r"given twice"):
        collect([golden_exp, f"file://{golden_exp}"])
    assert len(collect([str(run), golden_exp]).trials) > 1


def test_a_damaged_experiment_json_is_one_error_naming_it(golden_exp, tmp_path):
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(golden_exp, exp)
    (exp / "experiment.json").write_text("[1]")
    with pytest.raises(ValueError, match=r"experiment.json: holds a JSON list"):
        collect(str(exp))


def _trial(model, seed, k, valid, test):
    t = fakes.explicit_trial(model, "beauty", seed, {"ndcg@10": [test, test]}, config={"kernel_size": k})
    t.valid = {"ndcg@10": valid}
    return t


def test_select_best_uses_validation_and_keeps_every_seed(tmp_path):
    trials = [
        _trial("glintru", 0, 3, 0.30, 0.20),
        _trial("glintru", 1, 3, 0.32, 0.21),  # best on validation
        _trial("glintru", 0, 5, 0.29, 0.50),
        _trial("glintru", 1, 5, 0.30, 0.50),  # best on test: never chosen
        _trial("sasrec", 0, 1, 0.10, 0.10),
    ]
    r = collect(fakes.write_experiment(tmp_path / "sel", trials))
    chosen = select_best(r.trials)
    g = chosen[chosen["model"] == "glintru"]
    assert sorted(g["seed"]) == [0, 1] and set(g["config/kernel_size"]) == {3}
    assert len(chosen[chosen["model"] == "sasrec"]) == 1
    best = best_configs(r.trials, top=2, tests=["ndcg@10"])
    top = best[best["model"] == "glintru"]
    assert top["kernel_size"].tolist() == [3, 5] and top["seeds"].tolist() == [2, 2]
    assert top["valid/ndcg@10"].tolist() == pytest.approx([0.31, 0.295])
    assert "test/ndcg@10" in best.columns and "config/kernel_size" not in best.columns


def test_select_best_skips_errors_and_merges_seed_reruns(tmp_path):
    search = [_trial("glintru", 0, 3, 0.30, 0.2), _trial("glintru", 0, 5, 0.40, 0.2)]
    search[1].status, search[1].error = "ERROR", "out of memory"
    rerun = [_trial("glintru", s, 3, 0.31, 0.25 + s / 100) for s in (0, 1, 2)]
    r = collect(
        [fakes.write_experiment(tmp_path / "search", search), fakes.write_experiment(tmp_path / "seeds", rerun)]
    )
    chosen = select_best(r.trials)
    # the errored trial is ignored; seed 0 appears in both dirs and the rerun (read last) wins
    assert sorted(chosen["seed"]) == [0, 1, 2]
    assert set(chosen["experiment"]) == {"seeds"}
    assert config_columns(r.trials) == ["config/kernel_size"]
    with pytest.raises(KeyError, match="no column 'valid/hit@50'"):
        select_best(r.trials, "valid/hit@50")


def test_search_and_seeds_phases_of_one_experiment(search_exp):
    r = collect(search_exp)
    t = r.trials
    assert set(t["phase"]) == {"search", "seeds"}
    chosen = select_best(t)
    # the chosen configuration is the one rerun with seeds, and only the rerun is returned
    assert set(chosen["phase"]) == {"seeds"} and sorted(chosen["seed"]) == [0, 1, 2]
    search = t[(t["phase"] == "search") & t["completed"]]
    best = search.loc[search["valid/ndcg@10"].idxmax()]
    for col in ("config/kernel_size", "config/hidden_size", "config/lr", "config/gate_activation"):
        assert set(chosen[col]) == {best[col]}
    # the ASHA-stopped trial has a validation score but no test and is never chosen
    stopped = t[(t["status"] == "TERMINATED") & ~t["completed"]]
    assert len(stopped) == 1 and stopped["test/ndcg@10"].isna().all()
    assert stopped["trial_id"].iloc[0] not in set(
        select_best(t, by=("model", "dataset", "config/kernel_size"))["trial_id"]
    )


def test_experiment_json_is_read(golden_exp):
    meta = collect(golden_exp).experiments["golden"].meta
    assert meta["metric"] == "valid/ndcg@10"
    assert json.loads((Path(golden_exp) / "experiment.json").read_text())["eval_mode"] == "pop100"
    assert np.all(collect(golden_exp).trials["status"] == "TERMINATED")


def test_the_selection_metric_is_the_one_the_inputs_recorded(tmp_path):
    trial = fakes.make_trials({"glintru": 0.5}, {"beauty": 40}, seeds=(0,))[0]
    old = fakes.write_run(tmp_path / "old", trial)  # written before runs recorded select_metric
    new = fakes.write_run(tmp_path / "new", trial)
    config = json.loads((new / "config.json").read_text())
    config["train_config"]["select_metric"] = "recall@20"
    (new / "config.json").write_text(json.dumps(config))
    exp = fakes.write_experiment(tmp_path / "exp", [trial], metric="valid/recall@20")
    assert collect([str(old)]).selection_metric() == "valid/ndcg@10"
    assert collect([str(new), str(exp)]).selection_metric() == "valid/recall@20"
    with pytest.raises(
        ValueError, match=r"different validation metrics \(.*old: valid/ndcg@10; .*new: valid/recall@20\)"
    ):
        collect([str(old), str(new)]).selection_metric()
