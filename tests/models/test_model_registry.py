"""The model registry is the one list: every consumer covers every registered model, its order is the
paper's, and a new model registered in one place is trained, evaluated and tabulated end to end
(test_contract.py holds every registered model, built from its `small` settings, to the model
contract)."""

from __future__ import annotations

import json
import re

import pytest
import torch

from glintru import cli
from glintru.analysis.paper import TABLE2, TABLE3
from glintru.analysis.tables import model_name
from glintru.models import MODELS, ModelSpec, get_spec, model_names, register_model

from doc_pages import pages, section
from model_checks import TOY, one_thread, toy_registered  # noqa: F401  (fixtures: one_thread autouse)

# The rows of the paper's Table 2, top to bottom, as the paper prints them.
PAPER_TABLE2_ROWS = ["GRU4Rec", "BERT4Rec", "SASRec", "LinRec", "LightSANs", "SMLP4Rec", "Mamba4Rec", "GLINT-RU"]


def test_the_registry_holds_the_papers_models_in_its_order():
    assert [model_name(n) for n in MODELS if model_name(n) in PAPER_TABLE2_ROWS] == PAPER_TABLE2_ROWS
    # the paper's numbers are keyed by registry names, so a renamed model would lose its row
    for table in (TABLE2, TABLE3):
        for dataset, rows in table.items():
            assert set(rows) <= set(MODELS), (dataset, sorted(set(rows) - set(MODELS)))


def test_every_consumer_covers_every_registered_model():
    from glintru.search.spaces import SPACES

    names = list(MODELS)
    assert names == model_names(), "a registered model's module is missing"
    assert set(SPACES) == set(names)
    parser = cli.build_parser()
    for n in names:
        args = parser.parse_args(["train", "--data", "d", "--model", n, "--out", "o"])
        assert args.model == n
    rows = re.findall(r"^\| ([^|]+?) \| `glintru/models/(\w+)\.py` \|", section(pages()["README.md"], "Models"), re.M)
    assert rows == [(MODELS[n].display, MODELS[n].target.split(":")[0].rsplit(".", 1)[1]) for n in names]


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown model 'nope'; choose one of gru4rec, .*glintru"):
        get_spec("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec("sasrec", "x:Y", "X"))


@pytest.mark.usefixtures("toy_registered")
def test_a_registered_model_runs_through_cli_training_and_tables(tmp_path, capsys):
    assert TOY in model_names()
    assert model_name("meanpool") == "MeanPool"
    data = tmp_path / "syn"
    assert cli.main(["synthetic", "--out", str(data), "--users", "60", "--items", "30", "--seed", "1"]) == 0
    out = tmp_path / "run"
    code = cli.main(
        [
            "train",
            "--data",
            str(data),
            "--model",
            "meanpool",
            "--set",
            "hidden_size=16",
            "--set",
            "max_length=10",
            "--epochs",
            "2",
            "--eval-mode",
            "full",
            "--device",
            "cpu",
            "--quiet",
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test"]["ndcg@10"] <= 1.0
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "meanpool" and config["model_config"]["hidden_size"] == 16
    state = torch.load(out / "model.pt", weights_only=True)
    assert state["item_embedding.weight"].shape == (31, 16)
