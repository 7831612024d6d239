"""LightSANs beyond the contract suite (test_contract.py): padding-masked interest pooling and
position attention, the one-pass refusal, RecBole's unmasked variant against its equations, presets."""

from __future__ import annotations

import pytest
import torch

from glintru.models import resolve_config
from glintru.models.lightsans import InterestAggregation, LightSANs, LightSANsConfig, LowRankAttention

from model_checks import (
    N_ITEMS,
    assert_contract,
    assert_forward_is_last_encoding,
    assert_learns_cycle_beyond_popularity,
    histories,
    one_thread,  # noqa: F401  (autouse fixture: tiny models run best on one thread)
    tiny_attention_config,
    tiny_attention_model,
)


def model(seed: int = 0, **overrides) -> LightSANs:
    return tiny_attention_model(LightSANs, seed, **overrides)


def test_positions_are_learned_through_the_position_attention():
    # Item embeddings get no positions added: the decoupled position attention is their only way in.
    m = model()
    assert_contract(m)
    assert m.position_embedding.weight.grad[:20].abs().sum(dim=1).gt(0).all()


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


def test_refuses_one_pass_training_for_its_pooling_over_the_whole_sequence():
    for attention in ("masked", "recbole"):
        m = model(attention=attention)
        reason = m.one_pass_support()
        assert reason.startswith(
            "LightSANs has no exact one-pass training: its keys and values are pooled "
            "into k interests over the whole sequence"
        )
        with pytest.raises(ValueError, match="pooled into k interests"):
            m.prefix_outputs(*histories(20))
    # What the reason says: the interests of the whole history differ from those of its prefix.
    torch.manual_seed(0)
    pool = InterestAggregation(8, 3)
    x, mask = torch.randn(1, 6, 8), torch.ones(1, 6, dtype=torch.bool)
    assert not torch.allclose(pool(x, mask), pool(x[:, :3], mask[:, :3]))


def recbole_attention_by_hand(att: LowRankAttention, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """RecBole 1.2.1's LightMultiHeadAttention (before residual and LayerNorm), written out from
    its equations, one head at a time, with every position (padding too) taking part."""
    h = att.h
    dh = x.size(-1) // h
    keys, values, queries = att.key(x), att.value(x), att.query(x)
    # Interest pooling: softmax over the sequence of x . theta, then a weighted sum of positions.
    k = torch.einsum("bnk,bnd->bkd", (keys @ att.key_pool.theta).softmax(dim=1), keys)
    v = torch.einsum("bnk,bnd->bkd", (values @ att.value_pool.theta).softmax(dim=1), values)
    p = att.pos_norm(pos)
    pq = att.pos_query(p) * (2 * dh) ** -0.5
    pk = att.pos_key(p)
    heads = []
    for i in range(h):
        s = slice(i * dh, (i + 1) * dh)
        item = (queries[..., s] @ k[..., s].transpose(1, 2) / dh**0.5).softmax(dim=1)  # over positions
        position = (pq[:, s] @ pk[:, s].t() / dh**0.5).softmax(dim=0)  # over query positions
        heads.append(item @ v[..., s] + position @ values[..., s])
    return att.dense(torch.cat(heads, dim=-1))


def test_recbole_attention_is_recboles_equations():
    torch.manual_seed(0)
    att = LowRankAttention(16, 2, 3, dropout=0.0, eps=1e-12, recbole=True).eval()
    masked = LowRankAttention(16, 2, 3, dropout=0.0, eps=1e-12).eval()
    masked.load_state_dict(att.state_dict())
    x, pos = torch.randn(2, 6, 16), torch.randn(6, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = recbole_attention_by_hand(att, x, pos)
    torch.testing.assert_close(att(x, mask, pos), expected)
    torch.testing.assert_close(att(x, mask, pos, index=torch.tensor([2, 5])), expected[[0, 1], [2, 5]])
    # Normalised over the query axis and scaled by 1/(sqrt(2) d_head): columns sum to one.
    probs = att.position_probs(pos)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(2, 6))
    assert not torch.allclose(masked.position_probs(pos).sum(dim=1), torch.ones(2, 6))
    assert att.pos_scale == pytest.approx(1 / (2**0.5 * 8))
    assert masked.pos_scale == pytest.approx(1 / 4)
    # Even with nothing padded the two forms differ (normalising axis, scale).
    assert not torch.allclose(masked(x[1:], mask[1:], pos), expected[1:], atol=1e-3)
    # Padding reaches real positions in RecBole's form only.
    noisy = x.clone()
    noisy[0, 3:] = 5.0
    assert not torch.allclose(att(noisy, mask, pos)[0, :3], expected[0, :3], atol=1e-3)
    torch.testing.assert_close(masked(noisy, mask, pos)[0, :3], masked(x, mask, pos)[0, :3])


def test_recbole_variant_pads_to_max_length_and_keeps_a_drawn_padding_row():
    m = model(attention="recbole", max_length=30)
    row = m.item_embedding.weight[0].detach().clone()
    assert row.abs().sum() > 0 and abs(row.std().item() - 0.02) < 0.01
    assert_contract(m)
    assert m.item_embedding.weight.grad[0].abs().sum() == 0  # padding_idx keeps the row frozen
    m.eval()
    assert_forward_is_last_encoding(m)
    short, lengths = histories(20)
    wide, _ = histories(30)
    torch.testing.assert_close(m(short, lengths), m(wide, lengths))  # both run at width 30
    # What the padded positions carry changes the representation: nothing is masked.
    before = m(short, lengths)
    with torch.no_grad():
        m.item_embedding.weight[0].normal_(0.0, 0.02)
    after = m(short, lengths)
    assert not torch.allclose(after[:3], before[:3], atol=1e-4)
    # The same weights see a different amount of padding at a larger max_length.
    longer = model(attention="recbole", max_length=40).eval()
    state = m.state_dict()
    state["position_embedding.weight"] = torch.cat(
        [state["position_embedding.weight"], longer.position_embedding.weight[30:].detach()]
    )
    longer.load_state_dict(state)
    assert not torch.allclose(longer(short, lengths), after, atol=1e-4)
    with pytest.raises(ValueError, match="attention must be one of"):
        LightSANsConfig.from_preset(None, attention="sasrec")


def test_recbole_variant_learns_cycle_beyond_popularity():
    def make_model(n_items):
        cfg = tiny_attention_config(
            LightSANsConfig, hidden_size=32, inner_size=64, max_length=10, dropout=0.1, attention="recbole"
        )
        return LightSANs(cfg, n_items)

    assert_learns_cycle_beyond_popularity(make_model, 100)


def test_presets_and_validation():
    assert resolve_config("lightsans", "beauty").k_interests == 5
    with pytest.raises(ValueError, match="k_interests must be positive"):
        LightSANsConfig.from_preset(None, k_interests=0)
