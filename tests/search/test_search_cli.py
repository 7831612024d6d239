"""tune/search.py: `--space list`, value parsing, and clear errors for bad arguments before Ray starts."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys

import pytest
import ray

from glintru.search.plan import plan_search
from glintru.search.settings import SearchSettings, grid_configs

from search_helpers import CLI


def _load_cli():
    spec = importlib.util.spec_from_file_location("glintru_tune_search_cli", CLI)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cli = _load_cli()


def _error(capsys, *argv: str) -> str:
    assert not ray.is_initialized()
    rc = cli.main(list(argv))
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not ray.is_initialized(), "Ray started before the arguments were checked"
    assert err.startswith("error: ")
    return err


def test_space_list_prints_every_space_with_ranges(capsys):
    assert cli.main(["--space", "list"]) == 0
    out = capsys.readouterr().out
    assert "glintru  (model glintru)" in out and "mamba4rec  (model mamba4rec)" in out
    assert "kernel_size int [1, 9] step 2" in out


def test_values_parse_as_literals():
    assert [cli.parse_value(v) for v in ("3", "0.5", "1e-3", "true", "None", "silu", "[1, 2]")] == [
        3,
        0.5,
        1e-3,
        True,
        None,
        "silu",
        [1, 2],
    ]
    args = cli.build_parser().parse_args(
        [
            "--space",
            "glintru",
            "--data",
            "d",
            "--grid",
            "lr=1e-3,1e-2",
            "ablation=full,no_gru",
            "--seeds",
            "0,1,2",
            "--set",
            "max_length=20",
        ]
    )
    s = cli.settings_from_args(args)
    assert s.grid == {"lr": [1e-3, 1e-2], "ablation": ["full", "no_gru"]}
    assert s.seeds == [0, 1, 2] and s.overrides == {"max_length": 20}
    assert grid_configs(s.grid) == [{"ablation": a, "lr": lr} for a in ("full", "no_gru") for lr in (1e-3, 1e-2)]


def test_every_setting_takes_its_flag():
    """Each SearchSettings field is read from the flag of its name: flags given non-default values
    all arrive (a field added without a flag, or mapped to the wrong one, fails here)."""
    given = {
        "--num-samples": "7",
        "--max-epochs": "9",
        "--scheduler": "fifo",
        "--seeds": "4,5",
        "--top-k": "2",
        "--seed": "3",
        "--gpus-per-trial": "0.5",
        "--workers-per-trial": "2",
        "--cpus-per-trial": "1.5",
        "--address": "auto",
        "--storage": "/mnt/exp",
        "--name": "n1",
        "--eval-mode": "pop100",
        "--preset": "beauty",
        "--grace-period": "2",
        "--reduction-factor": "4",
        "--max-failures": "1",
        "--max-concurrent": "3",
        "--num-cpus": "6",
        "--num-gpus": "1",
        "--mlflow": "file:/tmp/ml",
        "--optuna-storage": "sqlite:///o.db",
        "--verbose": "2",
        "--objective": "ndcg@10,infer_ms",
        "--sampler": "nsga2",
    }
    argv = ["--space", "glintru", "--data", "d", "--grid", "lr=1e-3", "--set", "dropout=0.1"]
    argv += [x for pair in given.items() for x in pair] + ["--resume", "--retry-errored", "--shared-storage"]
    s = cli.settings_from_args(cli.build_parser().parse_args(argv))
    expected = {
        "space": "glintru",
        "data": "d",
        "num_samples": 7,
        "max_epochs": 9,
        "scheduler": "fifo",
        "grid": {"lr": [1e-3]},
        "seeds": [4, 5],
        "top_k": 2,
        "seed": 3,
        "gpus_per_trial": 0.5,
        "workers_per_trial": 2,
        "cpus_per_trial": 1.5,
        "address": "auto",
        "storage": "/mnt/exp",
        "name": "n1",
        "resume": True,
        "retry_errored": True,
        "eval_mode": "pop100",
        "preset": "beauty",
        "overrides": {"dropout": 0.1},
        "grace_period": 2,
        "reduction_factor": 4,
        "max_failures": 1,
        "max_concurrent": 3,
        "num_cpus": 6,
        "num_gpus": 1,
        "mlflow": "file:/tmp/ml",
        "optuna_storage": "sqlite:///o.db",
        "verbose": 2,
        "objective": "ndcg@10,infer_ms",
        "sampler": "nsga2",
        "shared_storage": True,
    }
    assert s.to_dict() == expected
    assert {f.name for f in dataclasses.fields(s)} == set(expected)  # no field left out of this test


@pytest.mark.parametrize(
    "flags",
    [
        ["--set", "max_length=20", "lr=0.01", "--grid", "kernel_size=3,5", "dropout=0.1,0.2"],
        ["--set", "max_length=20", "--set", "lr=0.01", "--grid", "kernel_size=3,5", "--grid", "dropout=0.1,0.2"],
        ["--set", "max_length=20 lr=0.01", "--grid", "kernel_size=3,5 dropout=0.1,0.2"],
    ],
)
def test_set_and_grid_keep_every_pair_in_either_form(flags):
    """One flag with several pairs, the flag repeated, or pairs in one quoted word: the same settings."""
    s = cli.settings_from_args(cli.build_parser().parse_args(["--space", "glintru", "--data", "d", *flags]))
    assert s.overrides == {"max_length": 20, "lr": 0.01}
    assert s.grid == {"kernel_size": [3, 5], "dropout": [0.1, 0.2]}


def test_unknown_space(capsys, tiny_data):
    err = _error(capsys, "--space", "nope", "--data", str(tiny_data))
    assert "unknown space 'nope'" in err and "glintru" in err


def test_missing_dataset(capsys, tmp_path):
    err = _error(capsys, "--space", "glintru", "--data", str(tmp_path / "absent"))
    assert "--data:" in err and "no such dataset directory" in err
    (tmp_path / "half").mkdir()
    err = _error(capsys, "--space", "glintru", "--data", str(tmp_path / "half"))
    assert "missing sequences.parquet" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--gpus-per-trial", "1", "--num-gpus", "0"], "needs a GPU, but this machine has none"),
        (["--cpus-per-trial", "64", "--num-cpus", "4"], "exceeds the 4 CPUs"),
        (["--gpus-per-trial", "1", "--workers-per-trial", "2", "--address", "auto"], "DDP needs one whole GPU"),
        (["--gpus-per-trial", "2", "--address", "auto"], "raise --workers-per-trial to 2"),
        (["--cpus-per-trial", "0"], "--cpus-per-trial must be positive"),
        (["--num-samples", "0"], "--num-samples must be at least 1"),
        (["--grace-period", "9", "--max-epochs", "3"], "--grace-period 9 exceeds --max-epochs 3"),
        (["--eval-mode", "pop"], "--eval-mode"),
        (["--preset", "netflix"], "unknown --preset 'netflix'"),
        (["--set", "epochs=3"], "use --max-epochs"),
        (["--set", "nope=1"], "--set nope: not a setting of glintru"),
        (["--grid", "bogus=1,2"], "--grid bogus: not a setting of glintru"),
        (["--grid", "ablation=full,no_everything"], "unknown ablation 'no_everything'"),
        (["--set", "ablation=no_everything"], "unknown ablation 'no_everything'"),
        (["--grid", "hidden_size=30"], "not divisible"),
        (["--grid", "dropout=0.1", "--set", "dropout=0.2"], "both fixed by --set and listed by --grid"),
        (["--seeds", "0,1", "--top-k", "5", "--num-samples", "3"], "--top-k 5 exceeds --num-samples 3"),
        (["--retry-errored"], "--retry-errored applies to --resume"),
        (["--optuna-storage", "study.txt"], "--optuna-storage must be an RDB URL"),
    ],
)
def test_bad_arguments_fail_before_ray(capsys, tiny_data, tmp_path, args, message):
    err = _error(capsys, "--space", "glintru", "--data", str(tiny_data), "--storage", str(tmp_path), *args)
    assert message in err


def test_set_fixes_a_space_label(tiny_data, tmp_path):
    import optuna

    from glintru.search.trainable import TrialSpec, trial_overrides

    plan = plan_search(
        SearchSettings(
            space="glintru",
            data=str(tiny_data),
            storage=str(tmp_path),
            overrides={"ablation": "no_conv", "max_length": 20},
        )
    )
    # the fixed label leaves the search: Optuna is never asked for it
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    plan.space.sampler(plan.settings.overrides)(trial)
    assert "ablation" not in trial.params and "kernel_size" in trial.params
    # and every trial trains with the settings it stands for
    spec = TrialSpec(space="glintru", model="glintru", train_storage=str(tmp_path), overrides=plan.settings.overrides)
    settings = trial_overrides(spec, {"lr": 1e-3, "kernel_size": 3})
    assert settings == {
        "lr": 1e-3,
        "kernel_size": 3,
        "max_length": 20,
        "use_gru": True,
        "use_attention": True,
        "use_conv": False,
        "use_gated_mlp": True,
    }


def test_mlflow_needs_its_package(capsys, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    err = _error(capsys, "--space", "glintru", "--data", str(tiny_data), "--storage", str(tmp_path), "--mlflow")
    assert "pip install mlflow" in err


def test_existing_and_missing_experiments(capsys, tiny_data, tmp_path):
    (tmp_path / "taken").mkdir()
    err = _error(capsys, "--space", "glintru", "--data", str(tiny_data), "--storage", str(tmp_path), "--name", "taken")
    assert "already exists" in err and "--resume --name taken" in err
    err = _error(capsys, "--resume", "--name", "never-ran", "--storage", str(tmp_path))
    assert "nothing to resume" in err


def test_a_valid_plan(tiny_data, tmp_path):
    plan = plan_search(
        SearchSettings(
            space="glintru", data=str(tiny_data), storage=str(tmp_path), seeds=[0, 1], num_samples=4, max_epochs=3
        )
    )
    assert plan.phases == ["search", "seeds"] and plan.scheduler == "asha"
    assert plan.exp_dir.startswith(str(tmp_path)) and plan.settings.name.startswith("glintru-synthetic-")
    grid = plan_search(
        SearchSettings(
            space="glintru",
            data=str(tiny_data),
            storage=str(tmp_path),
            grid={"ablation": ["full", "no_gru"]},
            seeds=[0, 1],
        )
    )
    assert grid.phases == ["grid"] and grid.scheduler == "fifo"
    # without --gpus-per-trial a trial takes a GPU when the machine has one, and none otherwise
    for gpus, expected in ((0, 0.0), (1, 1.0)):
        plan = plan_search(SearchSettings(space="glintru", data=str(tiny_data), storage=str(tmp_path), num_gpus=gpus))
        assert plan.settings.gpus_per_trial == expected
    assert not ray.is_initialized()


# -- one command line: `glintru search` and `glintru study` are the scripts' commands ---------------


def test_glintru_search_and_study_list_as_the_scripts_do(capsys):
    from glintru.cli import main

    assert main(["search", "--space", "list"]) == 0
    assert capsys.readouterr().out == (cli.main(["--space", "list"]), capsys.readouterr().out)[1]
    assert main(["study", "list"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("activations: gate activation, gate_activation in {silu, relu, sigmoid, elu}")
    assert "paper: SiLU in the dense selective gate" in out


@pytest.mark.parametrize(
    "entry, command",
    [("script", ["python", "tune/search.py"]), ("glintru", ["glintru", "search"])],
)
def test_an_interrupted_search_names_the_command_the_user_ran(entry, command, tiny_data, tmp_path, monkeypatch, capsys):
    """run_search is told how the user runs a search (no guess from sys.argv), and the --resume line
    of an interruption starts with it."""
    from glintru.cli import main
    from glintru.search import runner
    from glintru.search.plan import resume_command
    from glintru.search.settings import SearchInterrupted

    def interrupted(settings, callbacks=(), *, typed=None, command=("glintru", "search")):
        plan = plan_search(settings)
        plan.command = list(command)
        raise SearchInterrupted(f"stopped; what Tune saved resumes with:\n  {resume_command(plan)}")

    monkeypatch.setattr(runner, "run_search", interrupted)
    argv = [
        "--space",
        "glintru",
        "--data",
        str(tiny_data),
        "--storage",
        str(tmp_path),
        "--name",
        "n",
        "--num-cpus",
        "2",
    ]
    code = cli.main(argv) if entry == "script" else main(["search", *argv])
    err = capsys.readouterr().err
    assert code == 130, err
    assert err.strip().splitlines()[-1].strip() == " ".join(
        [*command, "--resume", "--name", "n", "--storage", str(tmp_path), "--num-cpus", "2"]
    )


# the settings whose flag gives the value itself (grid and overrides are parsed from KEY=VALUE words)
DEFAULTED = [f.name for f in dataclasses.fields(SearchSettings) if f.name not in ("space", "data", "grid", "overrides")]


@pytest.mark.parametrize("field", DEFAULTED)
def test_a_flag_defaults_to_its_setting(field, monkeypatch):
    """Each default is defined once, in SearchSettings: the flag follows a changed one."""
    from glintru.search import settings

    default = getattr(settings.DEFAULTS, field)
    # another value of the field's kind (argparse converts a string default with the flag's type)
    if isinstance(default, bool):
        other = not default
    elif isinstance(default, (int, float)):
        other = default + 1
    else:
        other = {list: [9], str: "other", type(None): 7}[type(default)]
    monkeypatch.setattr(settings, "DEFAULTS", dataclasses.replace(settings.DEFAULTS, **{field: other}))
    assert getattr(cli.build_parser().parse_args([]), field) == other


@pytest.mark.parametrize(
    "flag, module, names, choices",
    [
        ("--scheduler", "settings", {"SCHEDULERS": ("asha", "fifo", "pbt")}, ("asha", "fifo", "pbt")),
        (
            "--sampler",
            "objectives",
            {"SINGLE_SAMPLERS": ("tpe", "qmc"), "MULTI_SAMPLERS": ("tpe", "nsga3")},
            ("tpe", "qmc", "nsga3"),
        ),
    ],
)
def test_choices_are_read_from_where_they_are_defined(flag, module, names, choices, monkeypatch):
    """Adding a scheduler or a sampler is one place: the flag's choices and help follow it."""
    import importlib

    registry = importlib.import_module(f"glintru.search.{module}")
    for name, value in names.items():
        monkeypatch.setattr(registry, name, value)
    action = next(a for a in cli.build_parser()._actions if flag in a.option_strings)
    assert tuple(action.choices) == choices
    assert flag != "--sampler" or "tpe or qmc for one objective; tpe or nsga3 for several" in action.help


@pytest.mark.parametrize("entry", ["script", "glintru"])
def test_an_interrupted_study_names_the_study_line_that_resumes_it(entry, tiny_data, tmp_path, monkeypatch, capsys):
    """A study is resumed by the line that started it, not by the search's own --resume line (which
    would finish the grid but not tabulate the study)."""
    from glintru.cli import main
    from glintru.search import runner
    from glintru.search.cli import study_main
    from glintru.search.plan import resume_command
    from glintru.search.settings import SearchInterrupted

    def interrupted(settings, callbacks=(), *, typed=None, command=("glintru", "search"), resume_line=None):
        plan = plan_search(settings)
        plan.resume_line = resume_line
        raise SearchInterrupted(f"stopped; the study is saved. Finish it with:\n  {resume_command(plan)}")

    monkeypatch.setattr(runner, "run_search", interrupted)
    argv = ["kernel", "--data", str(tiny_data), "--values", "1,3", "--eval-mode", "pop20", "--storage", str(tmp_path)]
    if entry == "script":
        monkeypatch.setattr(sys, "argv", ["tune/study.py", *argv])
        code, start = study_main(command="python tune/study.py"), ["python", "tune/study.py"]
    else:
        code, start = main(["study", *argv]), ["glintru", "study"]
    err = capsys.readouterr().err
    assert code == 130, err
    assert err.strip().splitlines()[-1].strip() == " ".join([*start, *argv])
    assert "glintru search --resume" not in err
