"""The CONTRIBUTING.md recipe for a search space, followed once: a define-by-run function and one
`Space` entry make `--space NAME` sample, describe and train a model (here the test toy model)."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from glintru.models import ModelSpec, register_model, unregister_model
from glintru.search.spaces import SPACES, Space, format_spaces, get_space

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))  # tests/models/toy_model.py


def meanpool_space(trial) -> None:
    """MeanPool: width and learning rate."""
    trial.suggest_categorical("hidden_size", [8, 16])
    trial.suggest_float("lr", 1e-3, 1e-2, log=True)


@pytest.fixture
def meanpool_space_registered():
    register_model(ModelSpec("meanpool", "toy_model:MeanPool", "MeanPool"))
    SPACES["meanpool"] = Space("meanpool", "meanpool", meanpool_space)
    yield "meanpool"
    SPACES.pop("meanpool")
    unregister_model("meanpool")


def test_a_registered_space_samples_describes_and_trains(meanpool_space_registered, tmp_path):
    from glintru.data.synthetic import generate
    from glintru.train import TrainConfig, train

    space = get_space(meanpool_space_registered)
    assert "meanpool  (model meanpool): MeanPool: width and learning rate." in format_spaces()
    assert [p.name for p in space.describe()] == ["hidden_size", "lr"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    space.sampler({"hidden_size": 8})(trial)
    config = space.to_overrides(trial.params | {"hidden_size": 8})
    assert config["hidden_size"] == 8 and 1e-3 <= config["lr"] <= 1e-2
    data = generate(tmp_path / "syn", n_users=50, n_items=20, avg_length=8, seed=0)
    result = train(
        data,
        "meanpool",
        tmp_path / "run",
        overrides=config | {"max_length": 8},
        config=TrainConfig(epochs=1, batch_size=64, device="cpu", eval_mode="full"),
        progress=False,
    )
    assert result.metrics["epochs"] == 1 and 0.0 <= result.metrics["test"]["ndcg@10"] <= 1.0
