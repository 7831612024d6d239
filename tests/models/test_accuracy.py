"""Every model learns sequential structure: on a synthetic log it beats popularity, and the
attention/recurrent-mixing models beat GRU4Rec's first-epoch result."""

from __future__ import annotations

import pytest

from glintru.data.dataset import load_dataset
from glintru.evaluate import evaluate
from glintru.models import get_spec, model_names
from glintru.models.pop import PopularityRanker
from glintru.train import TrainConfig, train

SETTINGS = {"hidden_size": 32, "max_length": 20, "dropout": 0.1, "num_layers": 1}


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    from glintru.data.synthetic import generate

    return load_dataset(
        generate(tmp_path_factory.mktemp("acc") / "syn", n_users=300, n_items=80, avg_length=15, seed=3)
    )


def _fit(ds, model, out, epochs):
    cfg = TrainConfig(epochs=epochs, patience=epochs, batch_size=128, eval_mode="full", device="cpu", seed=0)
    overrides = SETTINGS | get_spec(model).small
    return train(ds, model, out, overrides=overrides, config=cfg, progress=False).metrics["test"]


@pytest.mark.slow
def test_every_model_beats_popularity_and_sasrec_glintru_beat_gru4rec_first_epoch(log, tmp_path):
    pop = evaluate(PopularityRanker(log.popularity, SETTINGS["max_length"]), log, "test", mode="full").metrics
    results = {m: _fit(log, m, tmp_path / m, epochs=6) for m in model_names()}
    for model, test in results.items():
        assert test["ndcg@10"] > pop["ndcg@10"] * 1.2, (model, test["ndcg@10"], pop["ndcg@10"])
    gru_first = _fit(log, "gru4rec", tmp_path / "gru-1", epochs=1)
    for model in ("sasrec", "glintru"):
        assert results[model]["ndcg@10"] > gru_first["ndcg@10"], (model, results[model], gru_first)
