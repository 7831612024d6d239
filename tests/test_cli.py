"""`glintru` command line: synthetic -> stats -> train -> evaluate, and its error messages."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from glintru.cli import build_parser, main
from glintru.settings import parse_settings


def test_train_set_takes_pairs_repeated_or_several_per_flag():
    args = build_parser().parse_args(
        [
            "train",
            "--data",
            "d",
            "--model",
            "glintru",
            "--out",
            "r",
            "--set",
            "hidden_size=32",
            "gate_activation=relu",
            "--set",
            "ks=(5, 10)",
        ]
    )
    assert parse_settings(args.set) == {"hidden_size": 32, "gate_activation": "relu", "ks": (5, 10)}


def test_a_setting_given_twice_is_refused_not_dropped(tmp_path, capsys):
    code = main(
        [
            "train",
            "--data",
            str(tmp_path),
            "--model",
            "glintru",
            "--set",
            "lr=0.1",
            "--set",
            "lr=0.2",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert code == 2 and "--set sets 'lr' twice (0.1 and 0.2)" in capsys.readouterr().err


def test_end_to_end(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    assert main(["synthetic", "--out", str(data), "--users", "150", "--items", "60", "--avg-length", "12"]) == 0
    capsys.readouterr()
    assert main(["stats", str(data), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["users"] == 150 and stats["items"] <= 60
    assert {"interactions", "avg_length", "sparsity"} <= set(stats)

    args = [
        "train",
        "--data",
        str(data),
        "--model",
        "glintru",
        "--set",
        "hidden_size=16",
        "--set",
        "max_length=20",
        "--set",
        "batch_size=256",
        "--epochs",
        "2",
        "--eval-mode",
        "uni50",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(run),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "ndcg@10" in out and f"run: {run}" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_mode"] == "uni50"

    with pytest.raises(SystemExit, match="already holds a finished run"):
        main(args)

    assert main(["evaluate", "--run", str(run), "--eval-mode", "full", "--device", "cpu"]) == 0
    full = json.loads((run / "eval-full.json").read_text())
    assert full["eval_mode"] == "full"
    # re-evaluating under the run's own protocol reproduces its test metrics exactly
    assert main(["evaluate", "--run", str(run), "--device", "cpu"]) == 0
    again = json.loads((run / "eval-uni50.json").read_text())
    assert again["test"] == pytest.approx(metrics["test"])


def test_unknown_setting_is_one_clear_error(tmp_path, capsys):
    data = tmp_path / "data"
    main(["synthetic", "--out", str(data), "--users", "50", "--items", "30", "--avg-length", "8"])
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--model",
            "glintru",
            "--set",
            "hidden=16",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    assert code == 2
    assert "unknown setting(s) hidden" in capsys.readouterr().err


def test_missing_dataset_is_one_clear_error(tmp_path, capsys):
    code = main(
        ["train", "--data", str(tmp_path / "nope"), "--model", "glintru", "--out", str(tmp_path / "r"), "--quiet"]
    )
    assert code == 2
    assert "no such dataset directory" in capsys.readouterr().err


def test_module_entry_point_help():
    out = subprocess.run(
        [sys.executable, "-m", "glintru.cli", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--data",
        "--model",
        "--preset",
        "--set",
        "--epochs",
        "--patience",
        "--eval-mode",
        "--seed",
        "--device",
        "--out",
    ):
        assert flag in out
    assert "popN-recbole" in out


def test_resume_continues_an_interrupted_run_and_shows_each_epoch(tmp_path, capsys):
    data, run = tmp_path / "data", tmp_path / "run"
    main(["synthetic", "--out", str(data), "--users", "60", "--items", "30", "--avg-length", "8"])
    args = [
        "train",
        "--data",
        str(data),
        "--model",
        "gru4rec",
        "--set",
        "hidden_size=8 max_length=10",
        "--device",
        "cpu",
        "--eval-mode",
        "uni20",
        "--out",
        str(run),
    ]
    assert main([*args, "--epochs", "1"]) == 0
    assert "epoch   1  loss" in capsys.readouterr().err  # the library's log line, shown by the CLI
    (run / "metrics.json").unlink()  # as if stopped before the end: only the checkpoint is left
    with pytest.raises(SystemExit, match="holds an interrupted run; pass --resume"):
        main([*args, "--epochs", "2"])
    assert main([*args, "--epochs", "2", "--resume"]) == 0
    err = capsys.readouterr().err
    assert "epoch   2  loss" in err and "epoch   1  loss" not in err
    assert json.loads((run / "metrics.json").read_text())["epochs"] == 2


def _ratings_dat(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{u}::{i}::{1 + (u * i) % 5}::{100 * u + i}\n" for u in range(1, 7) for i in range(1, 7)))
    return path


def test_prepare_with_a_format_still_works(tmp_path, capsys):
    ratings = _ratings_dat(tmp_path / "toy" / "ratings.dat")
    assert (
        main(
            [
                "prepare",
                "--format",
                "movielens",
                "--input",
                str(ratings),
                "--min-rating",
                "3",
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["params"]["duplicates"] == "first" and meta["params"]["min_rating"] == 3.0
    assert f"interactions  {meta['stats']['interactions']:,}" in out and "registered counts" not in out


def test_prepare_needs_a_format_or_a_dataset(tmp_path, capsys):
    ratings = _ratings_dat(tmp_path / "toy" / "ratings.dat")
    with pytest.raises(SystemExit, match="needs --format FORMAT or --dataset NAME"):
        main(["prepare", "--input", str(ratings), "--out", str(tmp_path / "p")])
    with pytest.raises(SystemExit, match="registered as --format movielens, not csv"):
        main(
            ["prepare", "--dataset", "ml-1m", "--format", "csv", "--input", str(ratings), "--out", str(tmp_path / "p")]
        )
    assert not (tmp_path / "p").exists()


def test_prepare_dataset_with_a_changed_recipe_says_so(tmp_path, capsys):
    ratings = _ratings_dat(tmp_path / "ml-1m" / "ratings.dat")
    assert (
        main(["prepare", "--dataset", "ml-1m", "--input", str(tmp_path), "--k-core", "2", "--out", str(tmp_path / "p")])
        == 0
    )
    err = capsys.readouterr().err
    assert (
        "warning: ml-1m: prepared counts differ from the registered counts (GLINT-RU paper, Table 1): "
        "users 6 (expected 6,040); items 6 (expected 3,706); interactions 36 (expected 1,000,209) "
        "(registered recipe changed: k_core=2)"
    ) in err
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert (
        meta["name"] == "ml-1m" and meta["params"]["k_core"] == 2 and meta["source"]["files"][0]["name"] == ratings.name
    )
