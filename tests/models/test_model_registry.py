"""The model registry is the one list: every consumer covers every registered model, and a new
model registered in one place is trained, evaluated and tabulated end to end (test_contract.py
holds every registered model, built from its `small` settings, to the model contract)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from glintru import cli
from glintru.analysis.tables import MODEL_NAMES, MODEL_ORDER, model_name
from glintru.models import MODELS, ModelSpec, get_spec, model_names, register_model

from model_checks import TOY, one_thread, toy_registered  # noqa: F401  (fixtures: one_thread autouse)

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_consumer_covers_every_registered_model():
    from glintru.search.spaces import SPACES

    names = list(MODELS)
    assert names == model_names()
    assert set(SPACES) == set(names)
    assert MODEL_ORDER == names and all(MODEL_NAMES[n] == MODELS[n].display for n in names)
    parser = cli.build_parser()
    for n in names:
        args = parser.parse_args(["train", "--data", "d", "--model", n, "--out", "o"])
        assert args.model == n
    models_section = README.read_text().split("## Models", 1)[1].split("\n## ", 1)[0]
    for n in names:
        assert re.search(rf"^\| {re.escape(MODELS[n].display)} \| `glintru/models/", models_section, re.M), n


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
