"""BERT4Rec: contract, mask token, appending, masking scheme, padding invariance, determinism,
save/load, learning, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models.bert4rec import BERT4Rec, BERT4RecConfig
from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_attention_presets,
    assert_contract,
    assert_cuda_matches_cpu_and_trains_in_bf16,
    assert_deterministic_given_seed,
    assert_learns_cycle_beyond_popularity,
    assert_padding_invariant,
    assert_rejects_wider_than_max_length,
    assert_state_dict_file_round_trip,
    histories,
    one_thread,
    tiny_attention_config,
)


def model(seed: int = 0, **overrides) -> BERT4Rec:
    torch.manual_seed(seed)
    return BERT4Rec(tiny_attention_config(BERT4RecConfig, **overrides), N_ITEMS)


def test_shapes_and_scores():
    m = model()
    # The mask token (id n_items + 1) has an embedding row but is never scored.
    assert m.mask_token == N_ITEMS + 1
    assert m.item_embedding.weight.shape[0] == N_ITEMS + 2
    assert_contract(m)  # scores and item_embeddings() cover ids 0..n_items only
    assert m.position_embedding.weight.grad is not None
    assert m.item_embedding.weight.grad[m.mask_token].abs().sum() > 0


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_invariance(train_mode):
    assert_padding_invariant(model().train(train_mode), scores=True)


def test_forward_reads_the_appended_mask():
    m = model().eval()
    seq, lengths = histories(20)
    wide = torch.nn.functional.pad(seq, (0, 1))
    wide[torch.arange(4), lengths] = m.mask_token
    h = m.encode(wide, lengths + 1)
    torch.testing.assert_close(m(seq, lengths), m.head(h[torch.arange(4), lengths]))


def test_append_widens_or_drops_the_oldest_item():
    m = model(max_length=5)
    seq = torch.tensor([[1, 2, 0, 0], [1, 2, 3, 4]])
    out, pos = m.append(seq, torch.tensor([2, 4]), torch.tensor([9, 9]))
    assert out.tolist() == [[1, 2, 9, 0, 0], [1, 2, 3, 4, 9]] and pos.tolist() == [2, 4]
    full = torch.tensor([[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]])
    out, pos = m.append(full, torch.tensor([3, 5]), torch.tensor([9, 9]))
    assert out.tolist() == [[1, 2, 3, 9, 0], [2, 3, 4, 5, 9]] and pos.tolist() == [3, 4]
    # A history filling max_length is represented as if its oldest item were gone.
    m.eval()
    torch.testing.assert_close(m(full[1:], torch.tensor([5])), m(full[1:, 1:], torch.tensor([4])))


def test_masking_scheme():
    seq = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 0, 0, 0, 0]])
    pos = torch.tensor([3, 1])
    last = torch.tensor([[0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(model(ft_ratio=1.0).mask_positions(seq, pos), last)
    # No Cloze mask drawn: the appended target is masked so every sequence has a label.
    assert torch.equal(model(ft_ratio=0.0, mask_ratio=0.0).mask_positions(seq, pos), last)
    assert torch.equal(model(ft_ratio=0.0, mask_ratio=1.0).mask_positions(seq, pos), seq.ne(0))
    # Cloze masks only real positions; over many draws about mask_ratio of them.
    m = model(ft_ratio=0.0, mask_ratio=0.3)
    torch.manual_seed(0)
    big = torch.randint(1, N_ITEMS + 1, (2000, 10)) * (torch.arange(10) < 8)
    masked = m.mask_positions(big, torch.full((2000,), 7))
    assert not masked[:, 8:].any()
    assert abs(masked[:, :8].float().mean().item() - 0.3) < 0.02
    with pytest.raises(ValueError, match="mask_ratio must lie in"):
        BERT4RecConfig.from_preset(None, mask_ratio=1.5)


def test_loss_is_deterministic_given_seed_and_uses_the_target():
    m = model(dropout=0.2).train()
    seq, lengths = histories(20)
    targets = torch.tensor([1, 2, 3, 4])
    torch.manual_seed(5)
    a = m.loss(seq, lengths, targets)
    torch.manual_seed(5)
    b = m.loss(seq, lengths, targets)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    # With only the appended target masked, the loss is next-item cross-entropy of forward().
    m = model(ft_ratio=1.0).eval()
    expected = torch.nn.functional.cross_entropy(m.scores(seq, lengths), targets)
    torch.testing.assert_close(m.loss(seq, lengths, targets), expected)


def test_deterministic_given_seed():
    assert_deterministic_given_seed(model)


def test_state_dict_round_trip(tmp_path):
    assert_state_dict_file_round_trip(model, tmp_path)


def test_learns_cycle_beyond_popularity():
    def make_model(n_items):
        cfg = tiny_attention_config(BERT4RecConfig, hidden_size=32, inner_size=64, max_length=10, dropout=0.1)
        return BERT4Rec(cfg, n_items)

    assert_learns_cycle_beyond_popularity(make_model, 200)


def test_presets_and_validation():
    assert_attention_presets("bert4rec", BERT4Rec, BERT4RecConfig)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_trains_in_bf16():
    assert_cuda_matches_cpu_and_trains_in_bf16(model())


def test_rejects_input_wider_than_max_length():
    assert_rejects_wider_than_max_length(model)
