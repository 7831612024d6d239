"""SASRec: what its causal attention promises beyond the contract suite (test_contract.py): the
last position's fast path, and hidden states that never see later items."""

from __future__ import annotations

import torch

from glintru.models.sasrec import SASRec

from model_checks import (
    N_ITEMS,
    assert_forward_is_last_encoding,
    histories,
    one_thread,  # noqa: F401  (autouse fixture: tiny models run best on one thread)
    tiny_attention_model,
)


def model(seed: int = 0, **overrides) -> SASRec:
    return tiny_attention_model(SASRec, seed, **overrides)


def test_forward_is_encode_at_last_position():
    assert_forward_is_last_encoding(model())


def test_causal_hidden_state_ignores_later_items():
    m = model().eval()
    seq, _ = histories(20, lengths=(20, 20))
    lengths = torch.tensor([20, 20])
    t = 9
    changed = seq.clone()
    changed[:, t + 1 :] = changed[:, t + 1 :] % N_ITEMS + 1
    h, h2 = m.encode(seq, lengths), m.encode(changed, lengths)
    torch.testing.assert_close(h[:, : t + 1], h2[:, : t + 1])
    assert not torch.allclose(h[:, t + 1 :], h2[:, t + 1 :])
    # Truncating the history after t gives the same representation at t.
    torch.testing.assert_close(m(seq[:, : t + 1], torch.tensor([t + 1, t + 1])), h[:, t])


def test_positions_are_learned():
    m = model()
    seq, lengths = histories(20)
    m.loss(seq, lengths, torch.tensor([1, 2, 3, 4])).backward()
    assert m.position_embedding.weight.grad[:20].abs().sum(dim=1).gt(0).all()
