"""Both notebooks run end to end on a small experiment, and are stored without outputs."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

from glintru.analysis import experiment_paths
from glintru.analysis.tables import model_name

import analysis_fakes as fakes
from doc_pages import pages

NOTEBOOKS = ("ttests", "search_report")


@pytest.fixture
def kernel_for_this_python(tmp_path, monkeypatch):
    """A `python3` kernelspec that runs this interpreter, ahead of any user-level one on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Python 3",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


def execute(name: str) -> nbformat.NotebookNode:
    """Run a notebook from the repository root; the kernel inherits GLINTRU_EXP from this process."""
    nb = nbformat.read(REPO / "analysis" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO)}}).execute()
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_clean_and_parameterised(name):
    nb = nbformat.read(REPO / "analysis" / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert "parameters" in code[0].metadata.get("tags", [])
    assert 'os.environ.get("GLINTRU_EXP"' in code[0].source


def test_ttests_notebook_runs(kernel_for_this_python, golden_exp, monkeypatch):
    monkeypatch.setenv("GLINTRU_EXP", str(golden_exp))
    nb = execute("ttests")
    text = outputs_text(nb)
    assert "| GLINT-RU | **0.8333**\\* | **0.2441**\\* |" in text  # Table 2 with its marks
    assert "wilcoxon: the same marks as the paired t-test" in text
    assert "welch: the same marks as the paired t-test" in text
    assert "\\textbf{0.8333}$^{*}$" in text
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


def test_search_report_notebook_runs(kernel_for_this_python, search_exp, monkeypatch):
    monkeypatch.setenv("GLINTRU_EXP", str(search_exp))
    nb = execute("search_report")
    text = outputs_text(nb)
    assert "15 trials, 14 finished, 13 trained to the end and tested; objective valid/ndcg@10" in text
    assert "RuntimeError: loss is NaN" in text
    assert "glintru on beauty (optuna" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # history and importances


def readme_notebook_command() -> str:
    """The notebook command line exactly as the README or a docs/ page shows it (an indented code
    line; docs/ANALYSIS.md)."""
    lines = [
        line.strip()
        for text in pages().values()
        for line in text.splitlines()
        if line.startswith("    ") and "jupyter execute analysis/" in line
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_readme_notebook_command_runs_as_written(kernel_for_this_python, tmp_path):
    """From a checkout's root with relative GLINTRU_EXP paths, through `jupyter execute`, which
    starts the kernel in analysis/: the paths must still mean what they meant at the prompt."""
    command = readme_notebook_command()
    env_part = re.match(r"GLINTRU_EXP=(\S+) ", command)
    assert env_part, command
    root = tmp_path / "checkout"  # a checkout of its own, so no results/ are written into the repository
    (root / "analysis").mkdir(parents=True)
    shutil.copy(REPO / "analysis" / "ttests.ipynb", root / "analysis")
    (root / "glintru").symlink_to(REPO / "glintru", target_is_directory=True)
    golden = fakes.golden_trials(n_users=30)
    relative = env_part.group(1).split(",")
    models = [Path(p).name for p in relative]  # results/glintru holds the glintru runs, and so on
    for path, model in zip(relative, models):
        assert not Path(path).is_absolute()
        fakes.write_experiment(root / path, [t for t in golden if t.model == model], name=model)
    env = {k: v for k, v in os.environ.items() if k != "PWD"}  # bash sets PWD from its cwd, as a shell does
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(["bash", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    output = re.search(r"--output (\S+)", command).group(1)
    nb = nbformat.read(root / "analysis" / f"{output}.ipynb", as_version=4)  # --output lands beside the notebook
    text = outputs_text(nb)
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))
    for model in models:
        assert f"| {model_name(model)} |" in text
    assert not (root / "analysis" / "results").exists()


def test_experiment_paths_resolve_against_the_callers_directory(tmp_path, monkeypatch):
    caller, root = tmp_path / "caller", tmp_path / "repo"
    (caller / "results" / "a").mkdir(parents=True)
    (root / "results" / "b").mkdir(parents=True)
    (root / "analysis").mkdir()
    monkeypatch.chdir(root / "analysis")  # where jupyter starts the kernel
    monkeypatch.setenv("PWD", str(caller))
    bases = [caller, root, root / "analysis"]
    assert experiment_paths(" results/a, ,results/b,s3://bucket/exp,/abs/exp", bases) == [
        str(caller / "results" / "a"),
        str(root / "results" / "b"),
        "s3://bucket/exp",
        "/abs/exp",
    ]
    # missing everywhere: resolved against the caller's directory, so the error names that place
    assert experiment_paths("results/c", bases) == [str(caller / "results" / "c")]
    # the default bases start with $PWD
    assert experiment_paths("results/a") == [str(caller / "results" / "a")]
    monkeypatch.delenv("PWD")
    assert experiment_paths("../results/b") == [str(root / "results" / "b")]
