"""Results are compared only where they rest on the same data (fingerprint), split and protocol, and
every input given is in the table or named with the reason it is not."""

import importlib.util

import numpy as np
import pytest
from conftest import REPO

from glintru.analysis import SignificanceError, collect, efficiency_table, performance_table
from glintru.analysis.comparability import ComparabilityError

import analysis_fakes as fakes

BASE = 0.3 + 0.2 * np.sin(np.arange(40))
OTHER_DATA = "91c0" + "0" * 60  # another dataset that is also called "beauty"


def significance(argv: list[str]) -> int:
    spec = importlib.util.spec_from_file_location("significance_cli", REPO / "analysis" / "significance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(argv)


def trial(model: str, shift: float, seed: int = 0, **fields) -> fakes.FakeTrial:
    t = fakes.explicit_trial(model, "beauty", seed, {"ndcg@10": BASE + shift})
    for key, value in fields.items():
        setattr(t, key, value)
    return t


def ours() -> str:
    return fakes.fake_fingerprint("beauty")[:8]


def test_runs_of_different_data_under_one_name_are_refused(tmp_path, capsys):
    # before: a paired t-test between the two, marked significant
    a = fakes.write_run(tmp_path / "runs" / "a", trial("glintru", 0.1))
    b = fakes.write_run(tmp_path / "runs" / "b", trial("sasrec", 0.0, fingerprint=OTHER_DATA))
    assert significance([str(a), str(b), "--metric", "ndcg@10"]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"error: {a} (dataset beauty fingerprint {ours()}) and {b} (dataset beauty fingerprint 91c00000) "
        "were trained on different data; compare runs of one dataset\n"
    )


def test_a_run_beside_an_experiment_is_a_row_of_the_table(tmp_path, capsys):
    # before: the run's model vanished from the table without a word
    exp = fakes.write_experiment(tmp_path / "exp", [trial("sasrec", 0.0), trial("gru4rec", -0.1)])
    run = fakes.write_run(tmp_path / "run", trial("glintru", 0.1))
    assert significance([str(exp), str(run), "--metric", "ndcg@10"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [r.split(" | ")[0] for r in rows[2:]] == ["| GRU4Rec", "| SASRec", "| GLINT-RU", "| Improv."]
    assert rows[4] == f"| GLINT-RU | **{(BASE + 0.1).mean():.4f}**\\* |"


def test_an_input_with_nothing_to_tabulate_is_an_error_naming_it(tmp_path, capsys):
    good = fakes.write_experiment(tmp_path / "good", [trial("sasrec", 0.0), trial("gru4rec", -0.1)])
    failed, stopped = trial("glintru", 0.1), trial("glintru", 0.2, seed=1)
    failed.status, failed.error, stopped.completed = "ERROR", "RuntimeError: loss is NaN", False
    bad = fakes.write_experiment(tmp_path / "bad", [failed, stopped])
    assert significance([str(good), str(bad), "--metric", "ndcg@10"]) == 2
    assert capsys.readouterr().err == (
        f"error: {bad}: nothing to tabulate: none of its 2 trial(s) was trained to its end, tested and "
        "scored (1 ERROR, 1 stopped before the end of training, so never tested)\n"
    )


def test_an_input_that_lost_the_selection_is_named_in_the_notes(tmp_path):
    exp = fakes.write_experiment(tmp_path / "exp", [trial("glintru", 0.1, config={"kernel_size": 3})])
    worse = fakes.write_run(tmp_path / "run", trial("glintru", 0.0, config={"kernel_size": 5}))
    for table in (performance_table(collect([exp, worse]), ["ndcg@10"]), efficiency_table(collect([exp, worse]))):
        assert (
            f"Not shown: {worse} (the configuration chosen on valid/ndcg@10 for each of its models and datasets "
            "is another input's)."
        ) in table.to_markdown()


def test_datasets_that_share_a_name_are_told_apart_in_every_table(tmp_path):
    runs = [
        fakes.write_run(tmp_path / f"{t.model}-{i}", t)
        for i, fingerprint in enumerate((None, OTHER_DATA))
        for t in (trial("glintru", 0.1, fingerprint=fingerprint), trial("sasrec", 0.0, fingerprint=fingerprint))
    ]
    results = collect(runs)
    assert set(results.trials["dataset"]) == {f"beauty ({ours()})", "beauty (91c00000)"}
    assert set(results.trials["dataset_name"]) == {"beauty"}
    efficiency = efficiency_table(results).to_markdown()
    assert f"| Amazon Beauty ({ours()}) | SASRec |" in efficiency
    assert "| Amazon Beauty (91c00000) | SASRec |" in efficiency
    table = performance_table(results, ["ndcg@10"], test=None)
    first, second = sorted([f"Amazon Beauty ({ours()})", "Amazon Beauty (91c00000)"])  # datasets in name order
    assert f"| Model | {first} NDCG@10 | {second} NDCG@10 |" in table.to_markdown()
    # a report's table (strict=False) tests each dataset within itself; a significance table refuses
    lenient = performance_table(results, ["ndcg@10"], strict=False)
    assert sorted(lenient.comparisons["dataset"]) == sorted(results.trials["dataset"].unique())
    assert set(lenient.comparisons["other"]) == {"sasrec"} and lenient.star.to_numpy().sum() == 2
    with pytest.raises(ComparabilityError, match="were trained on different data; compare runs of one dataset"):
        performance_table(results, ["ndcg@10"])


@pytest.mark.parametrize("test", ["paired", "welch", None])
def test_pop100_beside_full_ranking_is_refused(tmp_path, capsys, test):
    a = fakes.write_run(tmp_path / "a", trial("glintru", 0.1))
    b = fakes.write_run(tmp_path / "b", trial("sasrec", 0.0, eval_mode="full"))
    with pytest.raises(ComparabilityError) as refused:
        performance_table(collect([a, b]), ["ndcg@10"], test=test, strict=False)
    assert str(refused.value) == (
        f"{a} (protocol pop100, negative seed 0) and {b} (protocol full) were evaluated under different "
        "protocols; compare runs of one protocol (glintru evaluate --run RUN --eval-mode MODE evaluates a run "
        "under another)"
    )
    assert significance([str(a), str(b), "--metric", "ndcg@10"]) == 2
    assert capsys.readouterr().err == f"error: {refused.value}\n"


def test_pop100_with_other_negatives_is_refused_for_a_test_over_users(tmp_path, capsys):
    a = fakes.write_run(tmp_path / "a", trial("glintru", 0.1, seed=0))
    b = fakes.write_run(tmp_path / "b", trial("sasrec", 0.0, seed=1))
    message = (
        f"{a} (GLINT-RU on Amazon Beauty: pop100, negative seed 0) and {b} (SASRec on Amazon Beauty: pop100, "
        "negative seed 1) were ranked against different negatives; a test over users pairs them on the same "
        "candidates: run both sides with the same seeds, or compare over seeds with --test welch"
    )
    for test in ("paired", "wilcoxon"):
        assert significance([str(a), str(b), "--metric", "ndcg@10", "--test", test]) == 2
        assert capsys.readouterr().err == f"error: {message}\n"
    # a report's table keeps the means and says why it has no marks
    table = performance_table(collect([a, b]), ["ndcg@10"], strict=False)
    assert table.note == message and not table.star.to_numpy().any()
    # under full ranking there are no negatives to match
    full = [fakes.write_run(tmp_path / f"full-{t.model}", t) for t in (trial("glintru", 0.1, eval_mode="full"),)]
    full.append(fakes.write_run(tmp_path / "full-sasrec", trial("sasrec", 0.0, seed=1, eval_mode="full")))
    assert performance_table(collect(full), ["ndcg@10"]).star.to_numpy().sum() == 1


def test_seeds_that_match_on_both_sides_are_paired(tmp_path):
    runs = [
        fakes.write_run(tmp_path / f"{m}-{s}", trial(m, shift + 0.01 * s, seed=s))
        for m, shift in (("glintru", 0.1), ("sasrec", 0.0))
        for s in (0, 1)
    ]
    table = performance_table(collect(runs), ["ndcg@10"])
    assert table.star.to_numpy().sum() == 1 and table.comparisons["n_a"].tolist() == [40]
    with pytest.raises(SignificanceError, match=r"negative seeds 0, 1\) and .*negative seed 0\) were ranked"):
        performance_table(collect(runs[:3]), ["ndcg@10"])


def test_results_from_before_fingerprints_are_compared_with_a_warning(tmp_path, capsys):
    a = fakes.write_run(tmp_path / "a", trial("glintru", 0.1), legacy=True)
    b = fakes.write_run(tmp_path / "b", trial("sasrec", 0.0), legacy=True)
    assert significance([str(a), str(b), "--metric", "ndcg@10"]) == 0
    out = capsys.readouterr()
    assert "**\\*" in out.out
    assert out.err.splitlines() == [
        f"warning: {run} records no dataset fingerprint (made before runs recorded one): it is compared with "
        "the other inputs on beauty by the dataset's name alone"
        for run in (a, b)
    ]


def test_collect_reads_what_the_results_rest_on(tmp_path):
    new = fakes.write_run(tmp_path / "new", trial("glintru", 0.1, seed=2))
    old = fakes.write_run(tmp_path / "old", trial("sasrec", 0.0, seed=3), legacy=True)
    full = fakes.write_run(tmp_path / "full", trial("gru4rec", 0.0, eval_mode="full"))
    exp = fakes.write_experiment(tmp_path / "exp", [trial("linrec", 0.0, seed=4)])
    old_exp = fakes.write_experiment(tmp_path / "old_exp", [trial("bert4rec", 0.0, seed=5)], legacy=True)
    t = collect([new, old, full, exp, old_exp]).trials.set_index("model")
    columns = ["dataset_fingerprint", "split", "eval_mode", "negative_seed", "source"]
    fp = fakes.fake_fingerprint("beauty")
    assert t.loc["glintru", columns].tolist() == [fp, "leave-one-out", "pop100", 2, str(new)]
    # an earlier version's run: no fingerprint; it split leave-one-out and drew with the training seed
    assert t.loc["sasrec", columns].tolist() == [None, "leave-one-out", "pop100", 3, str(old)]
    assert t.loc["gru4rec", columns].tolist() == [fp, "leave-one-out", "full", None, str(full)]
    assert t.loc["linrec", columns].tolist() == [fp, "leave-one-out", "pop100", 4, f"{exp} trial exp_00000"]
    assert t.loc["bert4rec", columns].tolist() == [None, "leave-one-out", "pop100", 5, f"{old_exp} trial old_exp_00000"]
    assert (t["dataset"] == "beauty").all()
