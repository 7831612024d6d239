"""LightSANs: contract, padding-masked interest pooling and position attention, determinism, save/load,
learning, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models import resolve_config
from glintru.models.lightsans import InterestAggregation, LightSANs, LightSANsConfig
from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_attention_presets,
    assert_contract,
    assert_cuda_matches_cpu_and_trains_in_bf16,
    assert_deterministic_given_seed,
    assert_forward_is_last_encoding,
    assert_learns_cycle_beyond_popularity,
    assert_padding_invariant,
    assert_rejects_wider_than_max_length,
    assert_state_dict_file_round_trip,
    histories,
    one_thread,
    tiny_attention_config,
)


def model(seed: int = 0, **overrides) -> LightSANs:
    torch.manual_seed(seed)
    return LightSANs(tiny_attention_config(LightSANsConfig, **overrides), N_ITEMS)


def test_shapes_and_scores():
    m = model()
    assert_contract(m)
    assert m.position_embedding.weight.grad is not None


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_invariance(train_mode):
    assert_padding_invariant(model().train(train_mode), scores=True)


def test_forward_is_encode_at_last_position():
    assert_forward_is_last_encoding(model())


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
    def make_model(n_items):
        cfg = tiny_attention_config(LightSANsConfig, hidden_size=32, inner_size=64, max_length=10, dropout=0.1)
        return LightSANs(cfg, n_items)

    assert_learns_cycle_beyond_popularity(make_model, 100)


def test_presets_and_validation():
    assert_attention_presets("lightsans", LightSANs, LightSANsConfig)
    assert resolve_config("lightsans", "beauty").k_interests == 5
    with pytest.raises(ValueError, match="k_interests must be positive"):
        LightSANsConfig.from_preset(None, k_interests=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_trains_in_bf16():
    assert_cuda_matches_cpu_and_trains_in_bf16(model())


def test_rejects_input_wider_than_max_length():
    assert_rejects_wider_than_max_length(model)
