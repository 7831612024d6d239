"""The paper's studies as one command: each a grid over one setting, resumed by the same command."""

import json
import subprocess
import sys

import pandas as pd
import pytest

from glintru.analysis.collect import collect
from glintru.analysis.studies import study_table
from glintru.models.gate_activations import PAPER_GATE_ACTIVATIONS
from glintru.search.spaces import ABLATIONS
from glintru.search.studies import STUDIES, StudyRun, get_study, study_of_grid, study_settings

from search_helpers import REPO, cli_env

STUDY_CLI = REPO / "tune" / "study.py"
TINY = ["--set", "hidden_size=16", "num_heads=2", "max_length=20", "batch_size=256"]


def test_each_study_varies_one_setting_and_tests_against_the_full_model():
    assert set(STUDIES) == {"activations", "ablations", "kernel", "layers"}
    assert get_study("activations").values == PAPER_GATE_ACTIVATIONS
    assert get_study("ablations").values == tuple(ABLATIONS)
    for s in STUDIES.values():
        assert s.reference in s.values
        assert set(s.paper) <= set(s.values)
    # Table 6 and Table 9 of the paper, Amazon Beauty
    assert get_study("activations").paper["relu"]["ndcg@10"] == 0.2770
    assert get_study("ablations").paper["no_gru"]["ndcg@10"] == 0.2755
    with pytest.raises(ValueError, match="unknown study 'depth'; choose one of activations, ablations"):
        get_study("depth")


def test_a_grid_over_a_studied_setting_is_recognised():
    assert study_of_grid({"kernel_size": [1, 3]}).name == "kernel"
    assert study_of_grid({"kernel_size": [1, 3], "lr": [0.1]}) is None
    assert study_of_grid({"lr": [0.1]}) is None


def test_study_settings_fix_the_full_model_and_one_budget():
    run = StudyRun(get_study("kernel"), data="d", preset="beauty", seeds=(0, 1), max_epochs=30)
    s = study_settings(run, "beauty-seq", resume=False)
    assert s.grid == {"kernel_size": [1, 3, 5, 7, 9]}
    assert s.overrides == {"ablation": "full"}
    assert (s.seeds, s.max_epochs, s.name, s.preset) == ([0, 1], 30, "study-kernel-beauty-seq", "beauty")
    ablations = study_settings(StudyRun(get_study("ablations"), data="d"), "x", resume=True)
    assert "ablation" not in ablations.overrides and ablations.resume


@pytest.mark.parametrize(
    ("run", "message"),
    [
        (StudyRun(get_study("kernel"), data="d", values=(1, 4)), r"kernel: 4 not among its values 1, 3, 5, 7, 9"),
        (StudyRun(get_study("kernel"), data="d", values=(1, 5)), "must include the reference 3"),
        (
            StudyRun(get_study("kernel"), data="d", overrides={"kernel_size": 5}),
            "--set kernel_size is what the kernel study varies",
        ),
    ],
)
def test_study_settings_refuse_what_would_break_the_study(run, message):
    with pytest.raises(ValueError, match=message):
        study_settings(run, "x", resume=False)


def _study(*args):
    return subprocess.run(
        [sys.executable, str(STUDY_CLI), *args], capture_output=True, text=True, timeout=600, env=cli_env(), cwd=REPO
    )


def test_list_prints_every_study():
    out = _study("list")
    assert out.returncode == 0
    for name in STUDIES:
        assert out.stdout.count(f"{name}:") == 1


@pytest.mark.slow
def test_a_study_runs_tabulates_and_is_not_run_twice(tiny_data, tmp_path):
    args = ["kernel", "--data", str(tiny_data), "--values", "1,3", "--seeds", "0,1", "--max-epochs", "2"]
    # pop20: the tiny dataset has 60 items, fewer than the default pop100 draws
    args += ["--storage", str(tmp_path), "--num-cpus", "4", "--eval-mode", "pop20", *TINY]
    first = _study(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    exp = tmp_path / "study-kernel-synthetic"
    assert first.stdout.strip().splitlines()[-1] == str(exp)
    trials = pd.read_parquet(exp / "trials.parquet")
    assert sorted(zip(trials["config/kernel_size"], trials["seed"])) == [(1, 0), (1, 1), (3, 0), (3, 1)]
    assert json.loads((exp / "experiment.json").read_text())["settings"]["overrides"]["ablation"] == "full"
    table = json.loads((exp / "report" / "tables" / "study_kernel_study-kernel-synthetic.json").read_text())
    assert [r["value"] for r in table["rows"]] == [1, 3]
    assert table["rows"][1]["diff/ndcg@10"] == 0.0
    assert table["rows"][0]["test/ndcg@10"] == pytest.approx(
        trials.loc[trials["config/kernel_size"] == 1, "test/ndcg@10"].mean()
    )
    report = (exp / "report" / "report.md").read_text()
    assert "## Study: Kernel size" in report
    assert "figures/study_kernel_study-kernel-synthetic.png" in report
    assert (exp / "report" / "figures" / "study_kernel_study-kernel-synthetic.png").stat().st_size > 0
    # what the study took, from its runs' epoch reports: 4 runs of 2 epochs, their seconds summed
    cost = json.loads((exp / "report" / "tables" / "study_kernel_study-kernel-synthetic_cost.json").read_text())
    seconds = [
        json.loads((exp / "tune" / "grid" / t / "result.json").read_text().splitlines()[-1])["time_total_s"]
        for t in trials["trial_id"]
    ]
    assert cost["runs"] == 4 and cost["trial_epochs"] == 8
    assert cost["trial_hours"] == pytest.approx(sum(seconds) / 3600) and cost["cpu_hours"] == cost["trial_hours"]
    assert cost["wall_hours"] > 0
    assert "Cost: 4 runs, 8 epochs in all" in report
    # the rise of each row's best validation over the runs' last epochs: none within a window
    # longer than the runs, and with a 1-epoch window the mean over seeds of epoch 2 against epoch 1
    assert [r["rise"] for r in table["rows"]] == [None, None] and table["level_window"] == 10
    one = study_table(collect(str(exp)), get_study("kernel"), window=1).frame.set_index("value")
    for k in (1, 3):
        ids = trials.loc[trials["config/kernel_size"] == k, "trial_id"]
        rises = []
        for trial_id in ids:
            lines = (exp / "tune" / "grid" / trial_id / "result.json").read_text().splitlines()
            best = [json.loads(line)["valid/ndcg@10"] for line in lines]
            rises.append(max(best) - best[0])
        assert one.loc[k, "rise"] == pytest.approx(sum(rises) / len(rises))
    assert "rise last 1 ep" in study_table(collect(str(exp)), get_study("kernel"), window=1).display()
    # the same command again: nothing is trained, the table is the same
    again = _study(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "phase grid: starting" not in again.stderr
    assert pd.read_parquet(exp / "trials.parquet")["trial_id"].tolist() == trials["trial_id"].tolist()
    # a --report that is the dataset, or a folder of other files, is refused and left as it was
    data_files = {p: p.read_bytes() for p in tiny_data.rglob("*") if p.is_file()}
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep")
    for place in (tiny_data, tmp_path / "notes"):
        refused = _study(*args, "--report", str(place))
        assert refused.returncode == 2, refused.stderr[-2000:]
        assert refused.stderr.strip().splitlines()[-1].startswith("error: --report")
    assert {p: p.read_bytes() for p in tiny_data.rglob("*") if p.is_file()} == data_files
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["mine.txt"]
    elsewhere = _study(*args, "--report", str(tmp_path / "elsewhere"))
    assert elsewhere.returncode == 0, elsewhere.stderr[-2000:]
    assert (tmp_path / "elsewhere" / "report.md").is_file()
    # another budget for a finished study is refused, not silently tabulated
    changed = _study(*[a if a != "2" else "3" for a in args])
    assert changed.returncode == 2
    assert "--max-epochs (the experiment has 2, given 3)" in changed.stderr
    # another experiment under the study's name is never taken for it
    other = _study("layers", *args[1:], "--name", "study-kernel-synthetic")
    assert other.returncode == 2
    assert "error: " in other.stderr and "not the layers study" in other.stderr


# Put first on a study's PYTHONPATH, this makes every run of kernel_size=1 fail while the file named
# by GLINTRU_TEST_FAIL_WHILE exists: a defect that is fixed between two runs of the study.
_FAILING_RUNS = """
import importlib.abc, importlib.machinery, os, sys

class _Hook(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "glintru.train":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run_module = spec.loader.exec_module

        def exec_module(module):
            run_module(module)
            train = module.train

            def failing(*args, **kwargs):
                if (kwargs.get("overrides") or {}).get("kernel_size") == 1 and os.path.exists(
                    os.environ["GLINTRU_TEST_FAIL_WHILE"]
                ):
                    raise RuntimeError("kernel_size=1 is broken")
                return train(*args, **kwargs)

            module.train = failing

        spec.loader.exec_module = exec_module
        return spec

if os.environ.get("GLINTRU_TEST_FAIL_WHILE"):
    sys.meta_path.insert(0, _Hook())
"""


@pytest.mark.slow
def test_a_study_names_its_errored_runs_and_runs_them_again_when_asked(tiny_data, tmp_path):
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_FAILING_RUNS)
    broken = tmp_path / "broken"
    broken.write_text("")
    env = cli_env()
    env["PYTHONPATH"] = f"{hooks}:{env['PYTHONPATH']}"
    env["GLINTRU_TEST_FAIL_WHILE"] = str(broken)
    args = ["kernel", "--data", str(tiny_data), "--values", "1,3", "--seeds", "0,1", "--max-epochs", "1"]
    args += ["--storage", str(tmp_path / "out"), "--num-cpus", "4", "--eval-mode", "pop20", *TINY]

    def study(*extra):
        return subprocess.run(
            [sys.executable, str(STUDY_CLI), *args, *extra],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=REPO,
        )

    exp = tmp_path / "out" / "study-kernel-synthetic"
    first = study()
    assert first.returncode == 0, first.stderr[-3000:]
    trials = pd.read_parquet(exp / "trials.parquet")
    assert sorted(zip(trials["config/kernel_size"], trials["status"])) == [
        (1, "ERROR"),
        (1, "ERROR"),
        (3, "TERMINATED"),
        (3, "TERMINATED"),
    ]
    assert (
        "the table leaves out errored runs:\n  kernel_size=1: 2 of 2 run(s) errored (RuntimeError: kernel_size=1 is broken)"
        in first.stderr
    )
    assert "once their cause is fixed, run them again with:\n  python tune/study.py kernel" in first.stderr
    assert first.stderr.rstrip().endswith(" --retry-errored")
    table = json.loads((exp / "report" / "tables" / "study_kernel_study-kernel-synthetic.json").read_text())
    assert [r["value"] for r in table["rows"]] == [3]
    # the same command again only tabulates: the errored runs stay errored
    again = study()
    assert again.returncode == 0 and "phase grid" not in again.stderr
    assert "kernel_size=1: 2 of 2 run(s) errored" in again.stderr
    # the cause fixed, --retry-errored runs them (and only them) again, and the table gains their row
    broken.unlink()
    retried = study("--retry-errored")
    assert retried.returncode == 0, retried.stderr[-3000:]
    after = pd.read_parquet(exp / "trials.parquet")
    assert set(after["status"]) == {"TERMINATED"}
    assert sorted(after["trial_id"]) == sorted(trials["trial_id"])
    kept = trials[trials["config/kernel_size"] == 3].set_index("trial_id")["test/ndcg@10"]
    assert after.set_index("trial_id").loc[kept.index, "test/ndcg@10"].tolist() == kept.tolist()
    assert "phase grid: running its 2 errored trial(s) again" in retried.stderr
    assert "the table leaves out" not in retried.stderr
    table = json.loads((exp / "report" / "tables" / "study_kernel_study-kernel-synthetic.json").read_text())
    assert [r["value"] for r in table["rows"]] == [1, 3] and table["rows"][0]["seeds"] == 2
