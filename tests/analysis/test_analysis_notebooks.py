"""Both notebooks run end to end on a small experiment, and are stored without outputs."""

import json
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO

NOTEBOOKS = ("ttests", "search_report")


@pytest.fixture
def kernel_for_this_python(tmp_path, monkeypatch):
    """A `python3` kernelspec that runs this interpreter, ahead of any user-level one on JUPYTER_PATH."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python"}))
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
