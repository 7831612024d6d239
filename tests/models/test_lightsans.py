"""LightSANs: contract, padding-masked interest pooling and position attention, determinism, save/load,
learning, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models import build_model, resolve_config
from glintru.models.base import gather_last
from glintru.models.lightsans import InterestAggregation, LightSANs, LightSANsConfig
from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_deterministic_given_seed,
    assert_learns_cycle_beyond_popularity,
    assert_padding_invariant,
    assert_state_dict_file_round_trip,
    histories,
    one_thread,
)


def tiny(**overrides) -> LightSANsConfig:
    values = dict(hidden_size=16, num_heads=2, inner_size=32, max_length=200, dropout=0.0)
    return LightSANsConfig.from_preset(None, **{**values, **overrides})


def model(seed: int = 0, **overrides) -> LightSANs:
    torch.manual_seed(seed)
    return LightSANs(tiny(**overrides), N_ITEMS)


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


def test_interest_pooling_ignores_padding():
    torch.manual_seed(0)
    pool = InterestAggregation(8, 3)
    x = torch.randn(2, 6, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    noisy = x.clone()
    noisy[~mask] = 100.0
    out = pool(x, mask)
    assert out.shape == (2, 3, 8)
    torch.testing.assert_close(out, pool(noisy, mask))
    torch.testing.assert_close(out[:1], pool(x[:1, :3], mask[:1, :3]))


def test_real_positions_see_no_padding():
    # Non-causal over real items (as in the paper), but padding never reaches a real position, even
    # when the padding row of the embedding is not zero.
    m = model().eval()
    seq, _ = histories(20, lengths=(12, 12))
    lengths = torch.tensor([12, 12])
    changed = seq.clone()
    changed[:, 11] = changed[:, 11] % N_ITEMS + 1
    assert not torch.allclose(m.encode(seq, lengths)[:, :11], m.encode(changed, lengths)[:, :11])
    h = m.encode(seq, lengths)[:, :12]
    with torch.no_grad():
        m.item_embedding.weight[0].normal_()
    torch.testing.assert_close(m.encode(seq, lengths)[:, :12], h)
    torch.testing.assert_close(m.encode(seq[:, :12], lengths), h)


def test_deterministic_given_seed():
    assert_deterministic_given_seed(model)


def test_state_dict_round_trip(tmp_path):
    assert_state_dict_file_round_trip(model, tmp_path)


def test_learns_cycle_beyond_popularity():
    assert_learns_cycle_beyond_popularity(
        lambda n_items: LightSANs(tiny(hidden_size=32, inner_size=64, max_length=10, dropout=0.1), n_items), 100
    )


def test_presets_and_validation():
    beauty = resolve_config("lightsans", "beauty")
    assert isinstance(beauty, LightSANsConfig)
    assert (beauty.hidden_size, beauty.dropout, beauty.max_length) == (64, 0.5, 100)
    assert (beauty.num_layers, beauty.num_heads, beauty.k_interests) == (2, 8, 5)
    ml = resolve_config("lightsans", "ml-1m", {"num_heads": 2})
    assert (ml.hidden_size, ml.dropout, ml.max_length, ml.num_heads) == (128, 0.2, 200, 2)
    assert isinstance(build_model("lightsans", N_ITEMS, ml), LightSANs)
    with pytest.raises(ValueError, match="num_heads must divide hidden_size"):
        LightSANsConfig.from_preset(None, hidden_size=20, num_heads=8)
    with pytest.raises(ValueError, match="k_interests must be positive"):
        LightSANsConfig.from_preset(None, k_interests=0)


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
