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


def test_stats_reports_what_the_tables_hold_not_what_meta_claims(tmp_path, capsys):
    data = tmp_path / "data"
    assert main(["synthetic", "--out", str(data), "--users", "20", "--items", "10", "--avg-length", "5"]) == 0
    meta = json.loads((data / "meta.json").read_text())
    held = dict(meta["stats"])
    meta["stats"].update(avg_length=99.0, sparsity=0.5)  # derived figures, edited by hand
    (data / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["stats", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == held
    assert main(["stats", str(data)]) == 0
    assert f"avg length    {held['avg_length']:.2f}" in capsys.readouterr().out


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
    assert metrics["eval_mode"] == "uni50" and (metrics["split"], metrics["negative_seed"]) == ("leave-one-out", 0)
    assert metrics["dataset_fingerprint"] == json.loads((data / "meta.json").read_text())["fingerprint"]

    _mistake(capsys, args, "already holds a finished run")

    assert main(["evaluate", "--run", str(run), "--eval-mode", "full", "--device", "cpu"]) == 0
    full = json.loads((run / "eval-full.json").read_text())
    assert full["eval_mode"] == "full" and (full["split"], full["negative_seed"]) == ("leave-one-out", None)
    assert full["dataset_fingerprint"] == metrics["dataset_fingerprint"]  # the results carry their own protocol
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
    _mistake(capsys, [*args, "--epochs", "2"], "holds an interrupted run; pass --resume")
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
    _mistake(
        capsys,
        ["prepare", "--input", str(ratings), "--out", str(tmp_path / "p")],
        "needs --format FORMAT or --dataset NAME",
    )
    _mistake(
        capsys,
        ["prepare", "--dataset", "ml-1m", "--format", "csv", "--input", str(ratings), "--out", str(tmp_path / "p")],
        "registered as --format movielens, not csv",
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


# ----------------------------------------------------------------------------- what --out may be


def _tiny_train(data, out, *extra):
    return [
        "train",
        "--data",
        str(data),
        "--model",
        "gru4rec",
        "--set",
        "hidden_size=8 max_length=6",
        "--epochs",
        "1",
        "--eval-mode",
        "uni5",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
        *extra,
    ]


@pytest.fixture
def home(tmp_path):
    """A user's folder: keys, notes and a prepared dataset (what train reads)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("secret")
    (home / "notes.txt").write_text("mine")
    assert main(["synthetic", "--out", str(home / "data"), "--users", "30", "--items", "12", "--avg-length", "6"]) == 0
    return home


@pytest.mark.parametrize(
    "out, message",
    [
        ("home/data", "is this command's input (--data "),
        ("home", "holds this command's input (--data "),
        ("home/.ssh", "holds files glintru did not write (config.json, id_ed25519), not a run directory"),
        ("to-run", "is a symbolic link to "),
    ],
)
def test_train_overwrite_never_deletes_its_dataset_a_parent_or_other_files(home, snapshot, capsys, out, message):
    assert main(_tiny_train(home / "data", home.parent / "run")) == 0
    (home.parent / "to-run").symlink_to(home.parent / "run")  # a recursive delete must not follow it
    with open(home / ".ssh" / "config.json", "w") as f:  # a run's file name in a folder of others
        f.write("{}")
    before = snapshot(home.parent)
    capsys.readouterr()
    assert main(_tiny_train(home / "data", home.parent / out, "--overwrite")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {home.parent / out}") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert snapshot(home.parent) == before


def test_train_into_a_folder_of_other_files_is_refused_without_overwrite(home, snapshot, capsys):
    before = snapshot(home)
    assert main(_tiny_train(home / "data", home)) == 2
    assert "holds this command's input" in capsys.readouterr().err
    assert main(_tiny_train(home.parent / "elsewhere", home)) == 2  # its dataset elsewhere: still not a run
    assert "holds files glintru did not write (.ssh/, data/, notes.txt)" in capsys.readouterr().err
    assert snapshot(home) == before


def test_a_second_train_on_the_same_out_is_refused_with_pid_and_host(home, holder, snapshot, capsys):
    import platform

    run = home.parent / "run"
    proc = holder(run)  # the first command, still writing
    before = snapshot(home.parent)
    assert main(_tiny_train(home / "data", run)) == 2
    err = capsys.readouterr().err
    assert f"error: {run} is being written by another command: pid {proc.pid} on host {platform.node()}" in err
    assert snapshot(home.parent) == before and not run.exists()


def test_train_takes_over_a_stale_lock_and_overwrites_an_older_run(home, dead_pid, capsys):
    from glintru.outputs import MARKER_FILE, lock_path

    run = home.parent / "run"
    assert main(_tiny_train(home / "data", run)) == 0
    (run / MARKER_FILE).unlink()  # a run written before markers existed
    lock_path(run).write_text(json.dumps({"pid": dead_pid, "host": "here"}))  # left by a killed command
    capsys.readouterr()
    assert main(_tiny_train(home / "data", run, "--overwrite")) == 0
    assert f"taking over the stale lock of pid {dead_pid} on host here" in capsys.readouterr().err
    assert (run / MARKER_FILE).exists() and not lock_path(run).exists()
    (run / "notes.txt").write_text("mine")  # a user's file beside a marked run is replaced with it, but
    (run / MARKER_FILE).unlink()  # an unmarked one holding files glintru did not write is refused
    assert main(_tiny_train(home / "data", run, "--overwrite")) == 2
    assert "holds a run directory (glintru train), but also files glintru did not write (notes.txt)" in (
        capsys.readouterr().err
    )
    assert (run / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------- what --resume takes


def _interrupted_run(tmp_path, capsys) -> tuple[list[str], object]:
    """A gru4rec run at uni20 stopped after its first epoch (only its checkpoint is left), and the
    command that trained it, less --epochs."""
    data, run = tmp_path / "data", tmp_path / "run"
    main(["synthetic", "--out", str(data), "--users", "60", "--items", "30", "--avg-length", "8"])
    args = ["train", "--data", str(data), "--model", "gru4rec", "--set", "hidden_size=8 max_length=10"]
    args += ["--device", "cpu", "--eval-mode", "uni20", "--quiet", "--out", str(run)]
    assert main([*args, "--epochs", "1"]) == 0
    (run / "metrics.json").unlink()
    capsys.readouterr()
    return args, run


def _refused(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume continues the run in ") and len(err.strip().splitlines()) == 1, err
    return err


def test_resume_refuses_each_setting_it_cannot_apply_and_config_json_keeps_what_was_trained(tmp_path, capsys):
    args, run = _interrupted_run(tmp_path, capsys)
    config = (run / "config.json").read_text()
    base = ["train", "--data", args[2], "--model", "gru4rec", "--quiet", "--out", str(run), "--resume"]

    err = _refused(capsys, [*args, "--epochs", "2", "--resume", "--set", "lr=0.01"])
    assert "--set lr (the run has 0.001, given 0.01)" in err  # the restored optimizer would keep 0.001
    err = _refused(capsys, [*base, "--eval-mode", "full", "--seed", "3", "--set", "dropout=0.5"])
    assert "--eval-mode (the run has 'uni20', given 'full')" in err and "--seed (the run has 0, given 3)" in err
    assert "--set dropout (the run has 0.2, given 0.5)" in err
    err = _refused(capsys, ["train", "--data", args[2], "--model", "sasrec", "--out", str(run), "--resume"])
    assert "--model (the run has 'gru4rec', given 'sasrec')" in err
    other = tmp_path / "other"
    main(["synthetic", "--out", str(other), "--users", "60", "--items", "30", "--avg-length", "8", "--seed", "1"])
    capsys.readouterr()
    err = _refused(capsys, ["train", "--data", str(other), "--model", "gru4rec", "--out", str(run), "--resume"])
    assert f"--data (the run was trained on {args[2]}" in err
    assert (run / "config.json").read_text() == config and not (run / "metrics.json").exists()

    # the same values again are no change; how long and where it trains a resume applies
    assert main([*args, "--epochs", "2", "--resume", "--seed", "0", "--set", "lr=0.001 eval_batch_size=512"]) == 0
    trained = json.loads((run / "config.json").read_text())["train_config"]
    assert (trained["epochs"], trained["eval_batch_size"], trained["lr"]) == (2, 512, 0.001)


def test_resume_keeps_the_runs_own_settings_where_no_flag_is_given(tmp_path, capsys):
    _, run = _interrupted_run(tmp_path, capsys)
    data = json.loads((run / "config.json").read_text())["dataset"]["path"]
    argv = ["train", "--data", data, "--model", "gru4rec", "--epochs", "2", "--quiet", "--out", str(run)]
    assert main([*argv, "--resume"]) == 0  # no --eval-mode, --set or --device: the run's, not the defaults
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["hidden_size"] == 8 and config["train_config"]["eval_mode"] == "uni20"
    assert config["train_config"]["device"] == "cpu"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_mode"] == "uni20" and metrics["epochs"] == 2


def test_a_loss_that_turns_nan_mid_run_is_one_error_line_and_the_run_resumes_after_the_fix(
    tmp_path, capsys, monkeypatch
):
    import glintru.train
    from glintru.train import LossModule

    args, run = _interrupted_run(tmp_path, capsys)
    forward, validate, validated = LossModule.forward, glintru.train.evaluate, []
    monkeypatch.setattr(glintru.train, "evaluate", lambda *a, **k: validated.append(1) or validate(*a, **k))
    monkeypatch.setattr(LossModule, "forward", lambda self, *a: forward(self, *a) * (float("nan") if validated else 1))
    assert main([*args, "--epochs", "3", "--overwrite"]) == 2  # afresh: epoch 1 good, epoch 2 NaN
    err = capsys.readouterr().err
    assert err.startswith("error: training loss became nan at epoch 2, step 0 (lr=0.001)") and "Traceback" not in err
    assert f"the run stopped, marked in {run / 'failed.json'}; its checkpoint keeps the last finished epoch" in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
    assert json.loads((run / "failed.json").read_text())["epoch"] == 2
    monkeypatch.undo()
    assert main([*args, "--epochs", "3", "--resume"]) == 0
    assert not (run / "failed.json").exists()
    assert [h["epoch"] for h in json.loads((run / "metrics.json").read_text())["history"]] == [1, 2, 3]


def test_a_learning_rate_that_overflows_is_one_error_line(tmp_path, capsys):
    args, run = _interrupted_run(tmp_path, capsys)
    assert main([*args, "--epochs", "2", "--set", "lr=1e30", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: training loss became nan at epoch 1, step 1 (lr=1e+30); lower the learning rate")
    assert "no epoch finished, so there is nothing to resume" in err and "Traceback" not in err
    assert main([*args, "--epochs", "2", "--set", "lr=1e300", "--overwrite"]) == 2  # beyond float32: before any work
    assert "lr=1e+300 overflows the first step" in capsys.readouterr().err


def _mistake(capsys, argv: list[str], message: str) -> None:
    """A user's mistake: exit code 2 and one `error:` line on stderr that names it."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
