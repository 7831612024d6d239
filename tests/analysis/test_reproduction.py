"""analysis/reproduction.py: Table 2 beside the paper from run directories, seeds summarised, paired
t-tests over users under both protocols."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from glintru.analysis.paper import TABLE2, TABLE3

from analysis_fakes import explicit_trial, fake_fingerprint, make_trials, write_run

SCRIPT = Path(__file__).resolve().parents[2] / "analysis" / "reproduction.py"
spec = importlib.util.spec_from_file_location("reproduction", SCRIPT)
reproduction = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reproduction)


def write_full(run: Path, trial) -> None:
    """What `glintru evaluate --eval-mode full` leaves in a run: a summary and per-user metrics."""
    worse = trial.users.copy()
    for c in worse.columns:
        if c != "user":
            worse[c] = worse[c] * 0.5
    worse.to_parquet(run / "eval-full-test_users.parquet", index=False)
    summary = {c: float(worse[c].mean()) for c in worse.columns if c != "user"}
    (run / "eval-full.json").write_text(json.dumps({"eval_mode": "full", "seed": trial.seed, "test": summary}))


BEAUTY_COUNTS = {"users": 22363, "items": 12101, "interactions": 198502}  # the paper's Table 1


def set_dataset_stats(run: Path, **stats) -> None:
    """The prepared dataset's counts, as glintru train records them in config.json."""
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["stats"] = stats
    (run / "config.json").write_text(json.dumps(config))


@pytest.fixture
def runs(tmp_path):
    trials = make_trials({"sasrec": 0.2, "glintru": 0.9}, {"beauty": 400}, seeds=(0, 1, 2))
    paths = []
    for t in trials:
        p = write_run(tmp_path / f"{t.model}-s{t.seed}", t)
        write_full(p, t)
        set_dataset_stats(p, **BEAUTY_COUNTS, avg_length=8.9)
        paths.append(p)
    return trials, paths


def test_the_papers_figures_go_only_beside_runs_measured_as_the_paper_did(runs, tmp_path, capsys):
    _, paths = runs
    argv = [*map(str, paths), "--paper", "beauty"]
    assert reproduction.main(argv) == 0
    assert "paper ndcg@10" in capsys.readouterr().out
    # another dataset under the same name: its counts are not the paper's Table 1 counts
    set_dataset_stats(paths[1], users=400, items=60, interactions=3000)
    assert reproduction.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: --paper beauty: {paths[1]} was trained on 'beauty' (400 users, 60 items, 3,000 interactions), "
        "not the paper's beauty (22,363 users, 12,101 items, 198,502 interactions, its Table 1); leave out --paper"
    ]
    set_dataset_stats(paths[1], **BEAUTY_COUNTS)
    # another protocol
    config = json.loads((paths[0] / "metrics.json").read_text())
    config["eval_mode"] = "pop50"
    (paths[0] / "metrics.json").write_text(json.dumps(config))
    assert reproduction.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--paper beauty: the paper's figures are measured under pop100, and {paths[0]} under pop50" in err
    # without --paper the runs are only refused for what makes them incomparable with each other
    assert reproduction.main(argv[:-2]) == 2
    assert "were evaluated under different protocols" in capsys.readouterr().err


def test_seeds_are_summarised_and_the_reference_is_tested_under_both_protocols(runs, tmp_path, capsys):
    trials, paths = runs
    out, js = tmp_path / "table.md", tmp_path / "table.json"
    assert reproduction.main([*map(str, paths), "--paper", "beauty", "--out", str(out), "--json", str(js)]) == 0
    summary = json.loads(js.read_text())
    glint = [t for t in trials if t.model == "glintru"]
    mean = np.mean([t.test["ndcg@10"] for t in glint])
    sd = np.std([t.test["ndcg@10"] for t in glint], ddof=1)
    assert summary["models"]["glintru"]["seeds"] == [0, 1, 2]
    assert summary["models"]["glintru"]["test"]["ndcg@10"] == pytest.approx([mean, sd])
    assert summary["models"]["glintru"]["full"]["ndcg@10"][0] == pytest.approx(mean * 0.5)
    tests = summary["tests"]
    assert {(t["protocol"], t["metric"]) for t in tests} == {
        (p, k) for p in ("pop100", "full") for k in ("recall@10", "mrr@10", "ndcg@10")
    }
    assert all(t["model"] == "sasrec" and t["diff"] > 0 and t["significant"] and t["n_users"] == 400 for t in tests)
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| GLINT-RU"))
    assert f"{mean:.4f}* ± {sd:.4f}" in row and f"{TABLE2['beauty']['glintru']['ndcg@10']:.4f}" in row
    assert "| SASRec | 3 |" in text and "*" not in next(ln for ln in text.splitlines() if ln.startswith("| SASRec"))


def test_no_mark_when_the_reference_does_not_win(tmp_path):
    same = {"recall@10": [1, 0] * 50, "mrr@10": [0.5, 0] * 50, "ndcg@10": [0.6, 0] * 50}
    paths = [write_run(tmp_path / m, explicit_trial(m, "beauty", 0, same)) for m in ("glintru", "gru4rec")]
    summary = reproduction.summarise([reproduction.read_run(p) for p in paths], "glintru")
    assert all(not t["significant"] and t["diff"] == 0 for t in summary["tests"])
    assert "*" not in reproduction.render(summary, "beauty").split("Paired")[0]


def test_mixed_protocols_and_unfinished_runs_are_refused(runs, tmp_path, capsys):
    _, paths = runs
    metrics = json.loads((paths[0] / "metrics.json").read_text())
    metrics.update(eval_mode="full", negative_seed=None)
    (paths[0] / "metrics.json").write_text(json.dumps(metrics))
    assert reproduction.main([str(p) for p in paths]) == 2
    assert capsys.readouterr().err == (
        f"error: {paths[0]} (protocol full) and {paths[1]} (protocol pop100, negative seed 1) were evaluated "
        "under different protocols; compare runs of one protocol (glintru evaluate --run RUN --eval-mode MODE "
        "evaluates a run under another)\n"
    )
    (tmp_path / "half").mkdir()
    assert reproduction.main([str(paths[1]), str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err
    assert f"no metrics.json): {tmp_path / 'half'}" in err


def test_paper_tables_cover_every_registered_model_and_dataset():
    from glintru.models import MODELS

    for ds in ("ml-1m", "beauty", "video-games"):
        assert set(TABLE2[ds]) == set(MODELS)
        assert set(TABLE3[ds]) == set(MODELS) - {"gru4rec"}  # Table 3 has no GRU4Rec row
    assert TABLE2["beauty"]["glintru"] == {"recall@10": 0.4472, "mrr@10": 0.2498, "ndcg@10": 0.2964}
    assert TABLE3["beauty"]["glintru"]["seconds_per_epoch"] == 3.8


def test_the_reference_variant_is_a_row_of_its_own_and_can_be_the_reference(tmp_path, capsys):
    better = {"recall@10": [1, 1] * 50, "mrr@10": [0.5, 0.4] * 50, "ndcg@10": [0.6, 0.5] * 50}
    worse = {"recall@10": [1, 0] * 50, "mrr@10": [0.5, 0] * 50, "ndcg@10": [0.6, 0] * 50}
    paths = [
        write_run(tmp_path / "masked", explicit_trial("glintru", "beauty", 0, better, config={"variant": "masked"})),
        write_run(tmp_path / "ref", explicit_trial("glintru", "beauty", 0, worse, config={"variant": "reference"})),
        write_run(tmp_path / "linrec", explicit_trial("linrec", "beauty", 0, worse, config={"variant": "reference"})),
    ]
    summary = reproduction.summarise([reproduction.read_run(p) for p in paths], "glintru")
    assert list(summary["models"]) == ["linrec:reference", "glintru", "glintru:reference"]
    ndcg = {t["model"]: t["diff"] for t in summary["tests"] if t["metric"] == "ndcg@10" and t["protocol"] == "pop100"}
    assert ndcg == {"linrec:reference": pytest.approx(0.25), "glintru:reference": pytest.approx(0.25)}
    text = reproduction.render(summary, "beauty")
    row = next(line for line in text.splitlines() if line.startswith("| GLINT-RU (reference)"))
    # the paper's number is the model's, beside either variant; valid NDCG@10 has its own column
    assert row.startswith("| GLINT-RU (reference) | 1 | 0.5000 | 0.2500 | 0.3000 | 0.3000 | 0.4472 |")
    assert "| pop100 | LinRec (reference) | ndcg@10 | +0.2500 |" in text
    # the reference variant as the tested row, by its key
    out = tmp_path / "t.json"
    assert reproduction.main([*map(str, paths[1:]), "--reference", "glintru:reference", "--json", str(out)]) == 0
    tests = json.loads(out.read_text())["tests"]
    assert {t["model"] for t in tests} == {"linrec:reference"} and all(t["diff"] == 0 for t in tests)
    assert "GLINT-RU (reference) minus each baseline" in capsys.readouterr().out


def _with_history(run: Path, valid_by_epoch: list[float]) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["history"] = [{"epoch": e + 1, "valid": {"ndcg@10": v}} for e, v in enumerate(valid_by_epoch)]
    (run / "metrics.json").write_text(json.dumps(metrics))


def test_learning_curves_are_averaged_over_seeds_up_to_the_shortest(tmp_path, capsys):
    same = {"recall@10": [1, 0] * 50, "mrr@10": [0.5, 0] * 50, "ndcg@10": [0.6, 0] * 50}
    runs = {
        "g0": ("glintru", 0, [0.1, 0.2, 0.3]),
        "g1": ("glintru", 1, [0.3, 0.4]),
        "s0": ("sasrec", 0, [0.05, 0.1, 0.15, 0.2]),
    }
    paths = []
    for name, (model, seed, curve) in runs.items():
        trial = explicit_trial(model, "beauty", seed, same)
        trial.eval_mode = "full"  # no negatives: the rows' seeds need not match for the paired test
        path = write_run(tmp_path / name, trial)
        _with_history(path, curve)
        paths.append(str(path))
    out = tmp_path / "t.json"
    assert reproduction.main([*paths, "--curve", "1,2,4", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "| GLINT-RU | 0.2000 | 0.3000 | - |" in text  # epoch 3: seed 1 stopped at 2
    assert "| SASRec | 0.0500 | 0.1000 | 0.2000 |" in text
    assert json.loads(out.read_text())["models"]["glintru"]["curve"] == {"1": 0.2, "2": pytest.approx(0.3)}
    for bad in ("0,4", "a"):
        assert reproduction.main([*paths, "--curve", bad]) == 2
        assert f"--curve takes epochs from 1 up, comma-separated (e.g. 1,4,8); got '{bad}'" in capsys.readouterr().err


def test_runs_of_one_model_with_other_settings_are_rows_named_by_what_differs(tmp_path):
    same = {"recall@10": [1, 0] * 50, "mrr@10": [0.5, 0] * 50, "ndcg@10": [0.6, 0] * 50}
    configs = [
        ("a", 0, {"num_layers": 1, "dropout": 0.5}),
        ("b", 1, {"num_layers": 1, "dropout": 0.5}),  # another seed of the same row
        ("c", 0, {"num_layers": 2, "dropout": 0.5}),
        ("d", 0, {"num_layers": 2, "dropout": 0.5, "variant": "reference"}),
        ("e", 0, {"num_layers": 1, "dropout": 0.2, "variant": "reference"}),
    ]
    trials = [explicit_trial("glintru", "beauty", seed, same, config=config) for _, seed, config in configs]
    for t in trials:
        t.eval_mode = "full"  # no negatives: the rows' seeds need not match for the paired test
    paths = [write_run(tmp_path / name, t) for (name, _, _), t in zip(configs, trials)]
    runs = reproduction.label_arms([reproduction.read_run(p) for p in paths])
    assert [r["model"] for r in runs] == [
        "glintru:num_layers=1",
        "glintru:num_layers=1",
        "glintru:num_layers=2",
        "glintru:reference,dropout=0.5,num_layers=2",
        "glintru:reference,dropout=0.2,num_layers=1",
    ]
    summary = reproduction.summarise(runs, "glintru:num_layers=1")
    assert summary["models"]["glintru:num_layers=1"]["seeds"] == [0, 1]
    assert {t["model"] for t in summary["tests"]} == {r["model"] for r in runs[2:]}
    text = reproduction.render(summary, None)
    assert "| GLINT-RU (reference, dropout=0.2, num_layers=1) | 1 |" in text
    assert "| GLINT-RU (num_layers=1) | 2 |" in text


def _two_runs(tmp_path, **kwargs):
    """GLINT-RU and SASRec on "beauty", the same users; kwargs set fields of the SASRec trial."""
    values = {"recall@10": [1, 0] * 50, "mrr@10": [0.5, 0] * 50, "ndcg@10": [0.6, 0] * 50}
    glint, sas = explicit_trial("glintru", "beauty", 0, values), explicit_trial("sasrec", "beauty", 0, values)
    for key, value in kwargs.items():
        setattr(sas, key, value)
    return write_run(tmp_path / "glintru", glint), write_run(tmp_path / "sasrec", sas)


def test_runs_of_different_data_under_one_name_are_refused(tmp_path, capsys):
    a, b = _two_runs(tmp_path, fingerprint="91c0" + "0" * 60)
    assert reproduction.main([str(a), str(b)]) == 2
    ours = fake_fingerprint("beauty")[:8]
    assert capsys.readouterr().err == (
        f"error: {a} (dataset beauty fingerprint {ours}) and {b} (dataset beauty fingerprint 91c00000) "
        "were trained on different data; compare runs of one dataset\n"
    )


def test_other_negatives_are_refused_for_the_paired_test(tmp_path, capsys):
    a, b = _two_runs(tmp_path, seed=1)
    assert reproduction.main([str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: {a} (GLINT-RU: pop100, negative seed 0) and {b} (SASRec: pop100, negative seed 1) were ranked "
        "against different negatives"
    )
    assert err.count("\n") == 1


def test_a_full_ranking_evaluation_of_other_data_is_refused(tmp_path, capsys):
    a, b = _two_runs(tmp_path)
    for run in (a, b):
        trial = explicit_trial(
            "x", "beauty", 0, {"recall@10": [1, 0] * 50, "mrr@10": [0.5, 0] * 50, "ndcg@10": [0.6, 0] * 50}
        )
        write_full(run, trial)
    assert reproduction.main([str(a), str(b)]) == 0  # evaluations of an earlier version: no fingerprint
    capsys.readouterr()
    evaluation = json.loads((b / "eval-full.json").read_text())
    evaluation.update(dataset_fingerprint="0" * 64, split="leave-one-out", negative_seed=None)
    (b / "eval-full.json").write_text(json.dumps(evaluation))
    assert reproduction.main([str(a), str(b)]) == 2
    assert capsys.readouterr().err == (
        f"error: {a} (dataset beauty fingerprint {fake_fingerprint('beauty')[:8]}) and {b / 'eval-full.json'} "
        "(dataset beauty fingerprint 00000000) were trained on different data; compare runs of one dataset\n"
    )


def test_runs_without_fingerprints_are_compared_with_a_warning(tmp_path, capsys):
    values = {"recall@10": [1, 0] * 50, "mrr@10": [0.5, 0] * 50, "ndcg@10": [0.6, 0] * 50}
    old = write_run(tmp_path / "old", explicit_trial("glintru", "beauty", 0, values), legacy=True)
    new = write_run(tmp_path / "new", explicit_trial("sasrec", "beauty", 0, values))
    assert reproduction.main([str(old), str(new)]) == 0
    out = capsys.readouterr()
    assert out.err == (
        f"warning: {old} records no dataset fingerprint (made before runs recorded one): it is compared with "
        "the other inputs on beauty by the dataset's name alone\n"
    )
    assert "| pop100 | SASRec | ndcg@10 | +0.0000 |" in out.out


def test_outputs_never_overwrite_a_run(runs, tmp_path, capsys):
    _, paths = runs
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    for flags in (
        ["--out", str(paths[0] / "metrics.json")],
        ["--json", str(paths[1] / "config.json")],
        ["--out", str(tmp_path / "t.md"), "--json", str(tmp_path / "t.md")],
        ["--out", str(tmp_path)],
    ):
        assert reproduction.main([*map(str, paths), *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --")
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()} == before


def test_runs_evaluated_under_full_ranking_get_each_column_once():
    ms = (0.1, 0.0)
    row = {
        "seeds": [0],
        "test": {k: ms for k in reproduction.METRICS},
        "valid": {"ndcg@10": ms},
        "best_epoch": (3.0, 0.0),
        "seconds_per_epoch": (1.5, 0.0),
    }
    text = reproduction.render({"protocol": "full", "reference": None, "models": {"sasrec": row}, "tests": []}, None)
    head = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    assert len(head) == len(set(head)) and "recall@10 (full)" in head
    assert len(text.splitlines()[2].strip("|").split("|")) == len(head)


@pytest.mark.parametrize(
    "name, damage, message",
    [
        ("metrics.json", lambda p: p.write_text("[]"), "holds a JSON list, not the object glintru writes there"),
        ("metrics.json", lambda p: p.write_text('{"valid": {}}'), "no 'test' object"),
        ("metrics.json", lambda p: p.write_text('{"valid": {'), "invalid JSON at line 1"),
        ("config.json", lambda p: p.write_text("[1]"), "holds a JSON list"),
        (
            "metrics.json",
            lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "best_epoch": None})),
            "no number for 'best_epoch'; it is not a file of a finished glintru run",
        ),
        (
            "test_users.parquet",
            lambda p: pd.read_parquet(p).drop(columns="mrr@10").to_parquet(p),
            "no mrr@10 column; per-user metrics have user, recall@10, mrr@10, ndcg@10",
        ),
        ("test_users.parquet", lambda p: p.write_bytes(p.read_bytes()[:40]), "not readable as per-user metrics"),
    ],
)
def test_a_damaged_run_file_is_one_error_line_naming_it(runs, capsys, name, damage, message):
    _, paths = runs
    damage(paths[2] / name)
    assert reproduction.main(list(map(str, paths))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {paths[2] / name}: ") and message in err[0], err
