"""GRU4Rec beyond the contract suite (test_contract.py): RecBole's bias-free stacked GRU, learning
strided cycles, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models import build_model, resolve_config
from glintru.models.gru4rec import GRU4Rec, GRU4RecConfig

from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_contract,
    assert_learns_strided_cycles,
    one_thread,
)


def model(seed: int = 0, **overrides) -> GRU4Rec:
    torch.manual_seed(seed)
    cfg = GRU4RecConfig.from_preset(None, **{"hidden_size": 16, "dropout": 0.0, **overrides})
    return GRU4Rec(cfg, N_ITEMS)


def test_shapes_and_scores():
    m = model(num_layers=2)
    assert m.gru.num_layers == 2 and m.gru.bias is False
    assert_contract(m, encodes=False)
    assert m.gru.weight_hh_l1.grad is not None


def test_learns_strided_cycles_better_than_popularity():
    def make_model(n_items):
        return GRU4Rec(GRU4RecConfig.from_preset(None, hidden_size=32, dropout=0.0), n_items)

    assert_learns_strided_cycles(make_model, n_items=30)


def test_presets_and_registry():
    cfg = resolve_config("gru4rec", "ml-1m")
    assert isinstance(cfg, GRU4RecConfig)
    assert (cfg.hidden_size, cfg.dropout, cfg.max_length, cfg.num_layers) == (128, 0.2, 200, 2)
    beauty = resolve_config("gru4rec", "beauty", {"num_layers": 3})
    assert (beauty.hidden_size, beauty.dropout, beauty.max_length, beauty.num_layers) == (64, 0.5, 100, 3)
    assert resolve_config("gru4rec").num_layers == 1  # RecBole's default outside the presets
    m = build_model("gru4rec", N_ITEMS, resolve_config("gru4rec", overrides={"hidden_size": 8}))
    assert isinstance(m, GRU4Rec) and m.item_embedding.weight.shape == (N_ITEMS + 1, 8)
    with pytest.raises(ValueError, match="no field"):
        resolve_config("gru4rec", overrides={"heads": 2})
