"""BERT4Rec beyond the contract suite (test_contract.py): mask token, appending, masking scheme,
the one-pass refusal, and RecBole 1.2.1's options (history masking, per-batch fine-tuning, output
bias, dropping the oldest item at evaluation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glintru.models.bert4rec import BERT4Rec, BERT4RecConfig

from model_checks import (
    N_ITEMS,
    assert_contract,
    assert_learns_cycle_beyond_popularity,
    assert_padding_invariant,
    histories,
    one_thread,  # noqa: F401  (autouse fixture: tiny models run best on one thread)
    tiny_attention_config,
    tiny_attention_model,
)


def model(seed: int = 0, **overrides) -> BERT4Rec:
    return tiny_attention_model(BERT4Rec, seed, **overrides)


def test_shapes_and_scores():
    m = model()
    # The mask token (id n_items + 1) has an embedding row but is never scored.
    assert m.mask_token == N_ITEMS + 1
    assert m.item_embedding.weight.shape[0] == N_ITEMS + 2
    assert_contract(m)  # scores and item_embeddings() cover ids 0..n_items only
    assert m.position_embedding.weight.grad is not None
    assert m.item_embedding.weight.grad[m.mask_token].abs().sum() > 0


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


def test_fine_tune_loss_is_next_item_cross_entropy():
    # With only the appended target masked, the loss is next-item cross-entropy of forward().
    seq, lengths = histories(20)
    targets = torch.tensor([1, 2, 3, 4])
    m = model(ft_ratio=1.0).eval()
    expected = torch.nn.functional.cross_entropy(m.scores(seq, lengths), targets)
    torch.testing.assert_close(m.loss(seq, lengths, targets), expected)


def test_refuses_one_pass_training_for_its_bidirectional_attention():
    m = model().eval()
    reason = m.one_pass_support()
    assert reason.startswith("BERT4Rec has no exact one-pass training: its attention is bidirectional")
    assert "[mask] token appended" in reason and reason.endswith("train per prefix (one_pass=false)")
    with pytest.raises(ValueError, match="attention is bidirectional"):
        m.prefix_outputs(*histories(20))
    # What the reason says: a later item changes the state at an earlier position.
    seq, lengths = histories(20, lengths=(12, 12))
    changed = seq.clone()
    changed[:, 11] = changed[:, 11] % N_ITEMS + 1
    assert not torch.allclose(m.encode(seq, lengths)[:, :11], m.encode(changed, lengths)[:, :11])


# --- RecBole 1.2.1's behaviour, one option at a time -------------------------------------------

RECBOLE = {"masking": "history", "ft_scope": "batch", "output_bias": True, "eval_drop_oldest": True}


def test_history_masking_masks_the_history_only():
    seq = torch.tensor([[3, 4, 5, 6, 0, 0], [7, 8, 0, 0, 0, 0]])
    last = torch.tensor([[0, 0, 0, 1, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=torch.bool)
    pos = torch.tensor([3, 1])  # the history's last item is the fine-tune position
    assert torch.equal(model(masking="history", ft_ratio=1.0).mask_positions(seq, pos), last)
    # No Cloze mask drawn: nothing is masked (no fallback to the last item).
    assert not model(masking="history", ft_ratio=0.0, mask_ratio=0.0).mask_positions(seq, pos).any()
    assert torch.equal(model(masking="history", ft_ratio=0.0, mask_ratio=1.0).mask_positions(seq, pos), seq.ne(0))


def test_history_masking_labels_like_recbole():
    m = model(masking="history", max_length=10, mask_ratio=0.2)  # at most int(0.2 * 10) = 2 labels a row
    masked = torch.tensor(
        [[1, 1, 1, 1, 0, 0], [1, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    expected = torch.tensor(
        [[0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 0, 0], [0, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0]], dtype=torch.bool
    )
    assert torch.equal(m.labelled_positions(masked), expected)
    assert torch.equal(model(max_length=10, mask_ratio=0.2).labelled_positions(masked), masked)


def test_history_masking_ignores_the_target_and_fine_tunes_on_the_last_item():
    seq, lengths = histories(20)
    m = model(masking="history", mask_ratio=0.3, ft_ratio=0.5).train()
    losses = []
    for targets in (torch.tensor([1, 2, 3, 4]), torch.tensor([5, 6, 7, 8])):
        torch.manual_seed(3)
        losses.append(m.loss(seq, lengths, targets))
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)
    # Fine-tuning masks the history's last item: the loss is next-item cross-entropy of forward()
    # on the history without it. The one-item history's only item sits at position 0: no label.
    m = model(masking="history", ft_ratio=1.0).eval()
    rows = lengths >= 2
    shorter = seq.clone()
    shorter[torch.arange(4), lengths - 1] = 0
    expected = F.cross_entropy(m.scores(shorter, lengths - 1)[rows], seq[torch.arange(4), lengths - 1][rows])
    torch.testing.assert_close(m.loss(seq, lengths, torch.tensor([1, 2, 3, 4])), expected)
    default = model(ft_ratio=1.0).eval()
    assert not torch.allclose(default.loss(seq, lengths, torch.tensor([1, 2, 3, 4])), expected)


def test_history_masking_without_labels_gives_a_zero_loss():
    m = model(masking="history", mask_ratio=0.0, ft_ratio=0.0).train()
    seq, lengths = histories(20)
    loss = m.loss(seq, lengths, torch.tensor([1, 2, 3, 4]))
    loss.backward()
    assert loss.item() == 0.0


def test_ft_scope_batch_decides_once_per_batch():
    torch.manual_seed(0)
    big = torch.randint(1, N_ITEMS + 1, (50, 10)) * (torch.arange(10) < 8)
    pos = torch.full((50,), 7)
    last = torch.arange(10) == 7
    shares = {}
    for scope in ("batch", "sequence"):
        m = model(ft_scope=scope, masking="history", mask_ratio=0.5, ft_ratio=0.5)
        torch.manual_seed(1)
        shares[scope] = [(m.mask_positions(big, pos) == last).all(dim=1).float().mean().item() for _ in range(40)]
    # Per batch: every row fine-tunes or none does (a Cloze row equals "last only" w.p. 2^-8).
    assert all(s == 1.0 or s < 0.1 for s in shares["batch"])
    assert 10 <= sum(s == 1.0 for s in shares["batch"]) <= 30
    # Per sequence: about half of every batch.
    assert all(0.2 < s < 0.8 for s in shares["sequence"])


def test_output_bias_adds_a_learned_bias_to_every_score():
    plain, biased = model().eval(), model(output_bias=True).eval()
    assert biased.output_bias.shape == (N_ITEMS + 1,) and not biased.output_bias.any()
    seq, lengths = histories(20)
    torch.testing.assert_close(biased.scores(seq, lengths), plain.scores(seq, lengths))  # zero at init
    with torch.no_grad():
        biased.output_bias.copy_(torch.linspace(-1.0, 2.0, N_ITEMS + 1))
    diff = biased.scores(seq, lengths)[:, 1:] - plain.scores(seq, lengths)[:, 1:]
    torch.testing.assert_close(diff, biased.output_bias[1:].detach().expand(4, -1))
    # The contract still holds, one column wider: [h, 1] . [e_i, b_i] = h . e_i + b_i.
    assert torch.equal(biased(seq, lengths)[:, -1], torch.ones(4))
    assert torch.equal(biased.item_embeddings()[:, -1], biased.output_bias)
    assert_contract(biased, hidden_size=17, encodes=False)
    assert biased.encode(seq, lengths).shape == (4, 20, 16)  # hidden states, before the head
    assert biased.output_bias.grad[1:].abs().sum() > 0  # learned through the loss
    assert "output_bias" in biased.state_dict() and "output_bias" not in plain.state_dict()


def test_eval_drop_oldest_drops_every_history_s_oldest_item():
    m = model(max_length=5, eval_drop_oldest=True)
    M = m.mask_token
    out, pos = m.drop_oldest(torch.tensor([[1, 2, 0, 0], [1, 2, 3, 4], [6, 0, 0, 0]]), torch.tensor([2, 4, 1]))
    assert out.tolist() == [[2, M, 0, 0], [2, 3, 4, M], [M, 0, 0, 0]] and pos.tolist() == [1, 3, 0]
    dropping, plain = model(eval_drop_oldest=True).eval(), model().eval()
    seq, lengths = histories(20)
    rows = lengths >= 2
    expected = plain(seq[:, 1:], (lengths - 1).clamp(min=1))
    torch.testing.assert_close(dropping(seq, lengths)[rows], expected[rows])
    assert not torch.allclose(dropping(seq, lengths)[rows], plain(seq, lengths)[rows])
    only_mask = torch.tensor([[M]])
    torch.testing.assert_close(dropping(seq, lengths)[0], plain.head(plain.encode(only_mask, torch.tensor([1])))[0, 0])
    assert_padding_invariant(dropping, scores=True)


def test_recbole_options_together_train_and_learn():
    assert_contract(model(**RECBOLE), hidden_size=17, encodes=False)

    def make_model(n_items):
        cfg = tiny_attention_config(
            BERT4RecConfig, hidden_size=32, inner_size=64, max_length=10, dropout=0.1, **RECBOLE
        )
        return BERT4Rec(cfg, n_items)

    assert_learns_cycle_beyond_popularity(make_model, 200)
    with pytest.raises(ValueError, match="masking must be one of appended, history"):
        BERT4RecConfig.from_preset(None, masking="cloze")
    with pytest.raises(ValueError, match="ft_scope must be one of sequence, batch"):
        BERT4RecConfig.from_preset(None, ft_scope="epoch")
