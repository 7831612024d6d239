"""SASRec: contract, padding invariance, causality, determinism, save/load, learning, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models import build_model, resolve_config
from glintru.models.base import gather_last
from glintru.models.sasrec import SASRec, SASRecConfig
from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_deterministic_given_seed,
    assert_learns_cycle_beyond_popularity,
    assert_padding_invariant,
    assert_state_dict_file_round_trip,
    histories,
    one_thread,
)


def tiny(**overrides) -> SASRecConfig:
    values = dict(hidden_size=16, num_heads=2, inner_size=32, max_length=200, dropout=0.0)
    return SASRecConfig.from_preset(None, **{**values, **overrides})


def model(seed: int = 0, **overrides) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(tiny(**overrides), N_ITEMS)


def test_shapes_and_scores():
    m = model().eval()
    seq, lengths = histories(20)
    assert m(seq, lengths).shape == (4, 16)
    assert m.encode(seq, lengths).shape == (4, 20, 16)
    scores = m.scores(seq, lengths)
    assert scores.shape == (4, N_ITEMS + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    m.train()
    loss = m.loss(seq, lengths, torch.tensor([1, 2, 3, 4]))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert m.position_embedding.weight.grad is not None


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_invariance(train_mode):
    assert_padding_invariant(model().train(train_mode), scores=True)


def test_forward_is_encode_at_last_position():
    m = model().eval()
    seq, lengths = histories(20)
    torch.testing.assert_close(m(seq, lengths), gather_last(m.encode(seq, lengths), lengths))


def test_causal_hidden_state_ignores_later_items():
    m = model().eval()
    seq, _ = histories(20, lengths=(20, 20))
    lengths = torch.tensor([20, 20])
    t = 9
    changed = seq.clone()
    changed[:, t + 1:] = changed[:, t + 1:] % N_ITEMS + 1
    h, h2 = m.encode(seq, lengths), m.encode(changed, lengths)
    torch.testing.assert_close(h[:, : t + 1], h2[:, : t + 1])
    assert not torch.allclose(h[:, t + 1:], h2[:, t + 1:])
    # Truncating the history after t gives the same representation at t.
    torch.testing.assert_close(m(seq[:, : t + 1], torch.tensor([t + 1, t + 1])), h[:, t])


def test_deterministic_given_seed():
    assert_deterministic_given_seed(model)


def test_state_dict_round_trip(tmp_path):
    assert_state_dict_file_round_trip(model, tmp_path)


def test_learns_cycle_beyond_popularity():
    assert_learns_cycle_beyond_popularity(
        lambda n_items: SASRec(tiny(hidden_size=32, inner_size=64, max_length=10, dropout=0.1), n_items), 100
    )


def test_presets_and_validation():
    beauty = resolve_config("sasrec", "beauty")
    assert isinstance(beauty, SASRecConfig)
    assert (beauty.hidden_size, beauty.dropout, beauty.max_length) == (64, 0.5, 100)
    assert (beauty.num_layers, beauty.num_heads) == (2, 8)
    ml = resolve_config("sasrec", "ml-1m", {"num_heads": 2})
    assert (ml.hidden_size, ml.dropout, ml.max_length, ml.num_heads) == (128, 0.2, 200, 2)
    assert isinstance(build_model("sasrec", N_ITEMS, ml), SASRec)
    with pytest.raises(ValueError, match="num_heads must divide hidden_size"):
        SASRecConfig.from_preset(None, hidden_size=20, num_heads=8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_trains_in_bf16():
    m = model().eval()
    seq, lengths = histories(20)
    expected = m(seq, lengths)
    gpu = m.cuda()
    torch.testing.assert_close(gpu(seq.cuda(), lengths.cuda()).cpu(), expected, rtol=1e-4, atol=1e-4)
    gpu.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gpu.loss(seq.cuda(), lengths.cuda(), torch.tensor([1, 2, 3, 4], device="cuda"))
    loss.backward()
    assert torch.isfinite(loss)


def test_rejects_input_wider_than_max_length():
    m = model(max_length=10)
    seq, lengths = histories(20)
    with pytest.raises(ValueError, match="exceeds max_length 10"):
        m(seq, lengths)
