"""Time to quality and the epochs early stopping saved, from Tune's per-trial result.json lines."""

import json

import pandas as pd
import pytest

from glintru.analysis import collect
from glintru.analysis.collect import open_experiment
from glintru.analysis.report import write_report
from glintru.analysis.timeline import epoch_budget, levelling, read_timeline, search_cost_table, time_to_quality

import analysis_fakes as fakes

T0 = 1_800_000_000.0


def _write_reports(exp_dir, trials, phase="search"):
    """trials: {trial_id: (start, [(seconds per epoch, valid ndcg@10), ...])}, as Tune writes them."""
    for trial_id, (start, epochs) in trials.items():
        folder = exp_dir / "tune" / phase / trial_id
        folder.mkdir(parents=True)
        total, lines = 0.0, []
        for epoch, (seconds, value) in enumerate(epochs, 1):
            total += seconds
            report = {"epoch": epoch, "valid/ndcg@10": value, "timestamp": T0 + start + total, "time_total_s": total}
            report.update(trial_id=trial_id, final=epoch == len(epochs))
            lines.append(json.dumps(report))
        (folder / "result.json").write_text("\n".join(lines) + "\n")


def _search(tmp_path, name, trials, sampler="tpe", max_epochs=4):
    exp = fakes.write_experiment(tmp_path / name, fakes.make_trials({"glintru": 0.5}, {"beauty": 30}, (0, 1)))
    meta = json.loads((exp / "experiment.json").read_text())
    meta.update(
        sampler=sampler,
        scheduler="asha",
        model="glintru",
        dataset="beauty",
        mode="max",
        settings={"max_epochs": max_epochs},
    )
    (exp / "experiment.json").write_text(json.dumps(meta))
    _write_reports(exp, trials)
    return exp


# two trials one after the other: a 2-epoch trial stopped early, then a 4-epoch one that wins
SERIAL = {"a": (0.0, [(10.0, 0.10), (10.0, 0.20)]), "b": (25.0, [(5.0, 0.15), (5.0, 0.25), (5.0, 0.30), (5.0, 0.29)])}


def test_reports_are_read_in_wall_clock_order(tmp_path):
    exp = open_experiment(str(_search(tmp_path, "tpe", SERIAL)))
    t = read_timeline(exp)
    assert t["trial_id"].tolist() == ["a", "a", "b", "b", "b", "b"]
    assert t["epoch"].tolist() == [1, 2, 1, 2, 3, 4]
    assert t["final"].tolist() == [False, True, False, False, False, True]


def test_best_so_far_against_trial_seconds_and_wall_time(tmp_path):
    curve = time_to_quality(read_timeline(open_experiment(str(_search(tmp_path, "tpe", SERIAL)))))
    assert curve["best"].tolist() == [0.10, 0.20, 0.20, 0.25, 0.30, 0.30]
    # trial a ran 20 s; b adds its own seconds; wall time counts the 5 s gap between them
    assert curve["trial_seconds"].tolist() == [10.0, 20.0, 25.0, 30.0, 35.0, 40.0]
    assert curve["wall_seconds"].tolist() == [10.0, 20.0, 30.0, 35.0, 40.0, 45.0]


def test_levelling_is_the_rise_of_each_trials_best_over_its_last_epochs(tmp_path):
    timeline = read_timeline(open_experiment(str(_search(tmp_path, "tpe", SERIAL))))
    two = levelling(timeline, window=2).set_index("trial_id")
    # b's best runs 0.15, 0.25, 0.30, 0.30: it rose 0.05 over its last 2 epochs
    assert two.loc["b", "epochs"] == 4 and two.loc["b", "best"] == pytest.approx(0.30)
    assert two.loc["b", "best_before"] == pytest.approx(0.25) and two.loc["b", "rise"] == pytest.approx(0.05)
    # a ran only 2 epochs: nothing 2 epochs earlier to compare with
    assert pd.isna(two.loc["a", "best_before"]) and pd.isna(two.loc["a", "rise"])
    one = levelling(timeline, window=1).set_index("trial_id")
    assert one.loc["b", "rise"] == 0.0  # its last epoch (0.29) found nothing better
    assert one.loc["a", "rise"] == pytest.approx(0.10)
    with pytest.raises(ValueError, match="window must be >= 1"):
        levelling(timeline, window=0)


def test_concurrent_trials_add_their_seconds(tmp_path):
    both = {"a": (0.0, [(10.0, 0.1), (10.0, 0.2)]), "b": (0.0, [(15.0, 0.3)])}
    curve = time_to_quality(read_timeline(open_experiment(str(_search(tmp_path, "tpe", both)))))
    assert curve["wall_seconds"].tolist() == [10.0, 15.0, 20.0]
    assert curve["trial_seconds"].tolist() == [10.0, 25.0, 35.0]


def test_a_half_written_last_line_is_skipped_and_an_earlier_one_is_an_error(tmp_path):
    exp_dir = _search(tmp_path, "tpe", SERIAL)
    path = exp_dir / "tune" / "search" / "b" / "result.json"
    path.write_text(path.read_text() + '{"epoch": 5, "valid/nd')
    assert len(read_timeline(open_experiment(str(exp_dir)))) == 6
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "{broken", *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match=r"b/result.json: line 2 is not JSON"):
        read_timeline(open_experiment(str(exp_dir)))


def test_epoch_budget_counts_what_early_stopping_saved(tmp_path):
    b = epoch_budget(read_timeline(open_experiment(str(_search(tmp_path, "tpe", SERIAL)))), max_epochs=4)
    assert (b.trials, b.epochs_run, b.budget) == (2, 6, 8)
    assert b.saved_fraction == pytest.approx(0.25)


def test_cost_table_measures_each_search_against_the_best_of_all(tmp_path):
    slow = {"r1": (0.0, [(20.0, 0.05), (20.0, 0.10)]), "r2": (41.0, [(20.0, 0.2), (20.0, 0.298), (20.0, 0.2999)])}
    exps = {
        "tpe": open_experiment(str(_search(tmp_path, "tpe", SERIAL))),
        "random": open_experiment(str(_search(tmp_path, "random", slow, sampler="random", max_epochs=3))),
    }
    table = search_cost_table(exps).set_index("search")
    # the best of both is 0.30 (tpe); within 1% is >= 0.297
    assert table.loc["tpe", "best"] == pytest.approx(0.30)
    assert table.loc["tpe", "trial_seconds_to_99pct"] == pytest.approx(35.0)
    assert table.loc["random", "trial_seconds_to_99pct"] == pytest.approx(80.0)
    assert table.loc["random", "wall_seconds_to_99pct"] == pytest.approx(81.0)
    assert table.loc["random", "saved"] == pytest.approx(1 - 5 / 6)
    assert table.loc["tpe", "sampler"] == "tpe"


def test_a_search_that_never_comes_close_has_no_time_to_quality(tmp_path):
    poor = {"x": (0.0, [(10.0, 0.1)])}
    exps = {n: open_experiment(str(_search(tmp_path, n, t))) for n, t in (("tpe", SERIAL), ("poor", poor))}
    table = search_cost_table(exps).set_index("search")
    assert pd.isna(table.loc["poor", "trial_seconds_to_99pct"])


def test_the_report_draws_time_to_quality_for_searches_of_one_model_and_dataset(tmp_path):
    a = _search(tmp_path, "tpe", SERIAL)
    b = _search(tmp_path, "random", SERIAL, sampler="random")
    write_report(collect([str(a), str(b)]), tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "## Search cost: GLINT-RU on Amazon Beauty" in text
    assert (tmp_path / "report" / "figures" / "time_to_quality_glintru_beauty.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_csv(tmp_path / "report" / "tables" / "search_cost_glintru_beauty.csv")
    assert sorted(table["search"]) == ["random", "tpe"]
