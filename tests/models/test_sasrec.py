"""SASRec: contract, padding invariance, causality, determinism, save/load, learning, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models.sasrec import SASRec, SASRecConfig
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


def model(seed: int = 0, **overrides) -> SASRec:
    torch.manual_seed(seed)
    return SASRec(tiny_attention_config(SASRecConfig, **overrides), N_ITEMS)


def test_shapes_and_scores():
    m = model()
    assert_contract(m)
    assert m.position_embedding.weight.grad is not None


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_invariance(train_mode):
    assert_padding_invariant(model().train(train_mode), scores=True)


def test_forward_is_encode_at_last_position():
    assert_forward_is_last_encoding(model())


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
    def make_model(n_items):
        cfg = tiny_attention_config(SASRecConfig, hidden_size=32, inner_size=64, max_length=10, dropout=0.1)
        return SASRec(cfg, n_items)

    assert_learns_cycle_beyond_popularity(make_model, 100)


def test_presets_and_validation():
    assert_attention_presets("sasrec", SASRec, SASRecConfig)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_trains_in_bf16():
    assert_cuda_matches_cpu_and_trains_in_bf16(model())


def test_rejects_input_wider_than_max_length():
    assert_rejects_wider_than_max_length(model)
