"""LinRec: contract, padding invariance, non-causal attention, determinism, save/load, learning, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models.linrec import LinRec, LinRecConfig
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


def model(seed: int = 0, **overrides) -> LinRec:
    torch.manual_seed(seed)
    return LinRec(tiny_attention_config(LinRecConfig, **overrides), N_ITEMS)


def test_shapes_and_scores():
    m = model()
    assert_contract(m)
    assert m.position_embedding.weight.grad is not None


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_invariance(train_mode):
    assert_padding_invariant(model().train(train_mode), scores=True)


def test_forward_is_encode_at_last_position():
    assert_forward_is_last_encoding(model())


def test_attention_is_bidirectional_over_real_items_only():
    # LinRec's reference attention is non-causal: a later real item changes earlier states, while
    # padding (whatever sits in the padded columns' embeddings) never does.
    m = model().eval()
    seq, _ = histories(20, lengths=(12, 12))
    lengths = torch.tensor([12, 12])
    changed = seq.clone()
    changed[:, 11] = changed[:, 11] % N_ITEMS + 1
    h, h2 = m.encode(seq, lengths), m.encode(changed, lengths)
    assert not torch.allclose(h[:, :11], h2[:, :11])
    with torch.no_grad():
        m.item_embedding.weight[0].normal_()
    torch.testing.assert_close(m(seq, lengths), m(seq[:, :12], lengths))


@pytest.mark.parametrize("key_norm", ["sequence", "feature"])
def test_key_norms_run_and_stay_padding_invariant(key_norm):
    m = model(attention_key_norm=key_norm).eval()
    short, lengths = histories(20)
    long, _ = histories(200)
    torch.testing.assert_close(m(short, lengths), m(long, lengths))
    with pytest.raises(ValueError, match="unknown attention_key_norm"):
        LinRecConfig.from_preset(None, attention_key_norm="rows")


def test_deterministic_given_seed():
    assert_deterministic_given_seed(model)


def test_state_dict_round_trip(tmp_path):
    assert_state_dict_file_round_trip(model, tmp_path)


def test_learns_cycle_beyond_popularity():
    def make_model(n_items):
        cfg = tiny_attention_config(LinRecConfig, hidden_size=32, inner_size=64, max_length=10, dropout=0.1)
        return LinRec(cfg, n_items)

    assert_learns_cycle_beyond_popularity(make_model, 100)


def test_presets_and_validation():
    assert_attention_presets("linrec", LinRec, LinRecConfig)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_trains_in_bf16():
    assert_cuda_matches_cpu_and_trains_in_bf16(model())


def test_rejects_input_wider_than_max_length():
    assert_rejects_wider_than_max_length(model)
