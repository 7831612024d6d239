"""LinRec's own tests: forward as the last encoding, non-causal attention, the key norms, and the
reference variant (padding to L, no masking, the random padding row, its loss). What every model
keeps (shapes, padding invariance, determinism, save/load, learning, presets, CUDA, wide input) is
tests/models/test_contract.py's."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from glintru.models.base import SequentialRecommender
from glintru.models.linrec import LinRec, LinRecConfig

from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_forward_is_last_encoding,
    assert_padding_invariant,
    histories,
    one_thread,
    tiny_attention_config,
)


def model(seed: int = 0, **overrides) -> LinRec:
    torch.manual_seed(seed)
    return LinRec(tiny_attention_config(LinRecConfig, **overrides), N_ITEMS)


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


@pytest.mark.parametrize("key_norm", ["sequence", "feature", "cumulative"])
def test_key_norms_run_and_stay_padding_invariant(key_norm):
    assert_padding_invariant(model(attention_key_norm=key_norm).eval())
    with pytest.raises(ValueError, match="unknown attention_key_norm"):
        LinRecConfig.from_preset(None, attention_key_norm="rows")


# -- variant="reference": RecBole's SASRec with LinRec's attention -----------------------------------

L_REF = 12


def reference_model(seed: int = 3, **overrides) -> LinRec:
    return model(seed, variant="reference", max_length=L_REF, **overrides)


def short_batch(width: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    return histories(width, lengths=(9, 4, 1), seed=2)


def test_reference_variant_sets_its_options():
    assert LinRecConfig(variant="reference").attention_key_norm == "feature"
    assert (LinRecConfig().variant, LinRecConfig().attention_key_norm) == ("masked", "sequence")
    assert LinRecConfig(variant="reference", attention_key_norm="sequence").attention_key_norm == "sequence"
    cfg = tiny_attention_config(LinRecConfig, variant="reference")
    assert LinRecConfig(**cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown variant 'recbole'; choose one of masked, reference"):
        LinRecConfig.from_preset(None, variant="recbole")


def reference_forward(m: LinRec, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """RecBole's SASRec forward with LinRec's layers.py, written out on ids already padded to L:
    item + position embeddings at every position, LayerNorm; per layer ELU attention with queries
    and keys each normalised over their own features, nothing masked (the mask argument is
    unused there), dense, LayerNorm(+input), then the GELU feed-forward and LayerNorm(+input);
    the state at len - 1."""
    B, L = seq.shape
    x = m.emb_norm(m.item_embedding(seq) + m.position_embedding(torch.arange(L)))
    h = m.config.num_heads
    for layer in m.layers:
        att = layer.attention
        d = x.size(-1)
        dh = d // h
        q = F.elu(att.query(x)).view(B, L, h, dh)
        k = F.elu(att.key(x)).view(B, L, h, dh)
        v = att.value(x).view(B, L, h, dh)
        q = q / q.norm(dim=-1, keepdim=True)
        k = k / k.norm(dim=-1, keepdim=True)
        context = torch.einsum("blhi,bhij->blhj", q, torch.einsum("bmhi,bmhj->bhij", k, v))
        x = layer.attn_norm(att.dense(context.reshape(B, L, d) / math.sqrt(dh)) + x)
        x = layer.ffn_norm(layer.ffn.fc2(F.gelu(layer.ffn.fc1(x))) + x)
    return x[torch.arange(B), lengths - 1]


def test_reference_variant_matches_the_reference_forward():
    m = reference_model().eval()
    seq, lengths = short_batch()
    padded = torch.nn.functional.pad(seq, (0, L_REF - seq.size(1)))
    with torch.no_grad():
        expected = reference_forward(m, padded, lengths)
        torch.testing.assert_close(m(seq, lengths), expected)
        torch.testing.assert_close(m(padded, lengths), expected)  # the batch's width does not matter
        assert m.encode(seq, lengths).shape == (3, L_REF, 16)
        # The same weights with the padding masked give another result for every short row.
        masked = model(max_length=L_REF, attention_key_norm="feature").eval()
        masked.load_state_dict(m.state_dict())
        differs = (masked(seq, lengths) - expected).abs().amax(dim=1) > 1e-4
    assert differs.tolist() == [True, True, True]


def test_reference_variant_depends_on_max_length_and_the_padding_row():
    m = reference_model().eval()
    seq, lengths = short_batch()
    with torch.no_grad():
        out = m(seq, lengths)
        longer = model(variant="reference", max_length=20).eval()
        state = {k: v for k, v in m.state_dict().items() if k != "position_embedding.weight"}
        longer.load_state_dict(state, strict=False)
        longer.position_embedding.weight[:L_REF] = m.position_embedding.weight  # 12..19 stay as drawn
        assert not torch.allclose(longer(seq, lengths), out, atol=1e-4)
        # (a shift along all features would vanish in the embedding LayerNorm)
        m.item_embedding.weight[0].add_(torch.randn(16, generator=torch.Generator().manual_seed(0)))
        assert not torch.allclose(m(seq, lengths), out, atol=1e-4)
    with pytest.raises(ValueError, match="exceeds max_length 12"):
        m(histories(13, lengths=(13,))[0], torch.tensor([13]))


def test_reference_padding_row_is_random_and_moves_only_as_a_candidate():
    m = reference_model(dropout=0.2).train()
    row0 = m.item_embedding.weight[0].detach()
    assert row0.abs().min() > 0 and 0.005 < row0.std().item() < 0.04  # N(0, 0.02), not zeros
    assert model().item_embedding.weight[0].abs().max() == 0
    seq, lengths = short_batch()
    targets = torch.tensor([5, 6, 7])
    torch.manual_seed(1)
    m.loss(seq, lengths, targets).backward()
    torch.manual_seed(1)  # the same dropout masks
    with torch.no_grad():
        rep = m(seq, lengths)
        p0 = torch.softmax(rep @ m.item_embeddings().t(), dim=1)[:, :1]
    # Only the output layer's share: the padding positions' lookup adds nothing (padding_idx=0).
    torch.testing.assert_close(m.item_embedding.weight.grad[0], (p0 * rep).mean(dim=0))


def test_reference_loss_counts_the_padding_id():
    m = reference_model().eval()
    seq, lengths = short_batch()
    targets = torch.tensor([5, 6, 7])
    with torch.no_grad():
        loss = m.loss(seq, lengths, targets)
        torch.testing.assert_close(loss, F.cross_entropy(m(seq, lengths) @ m.item_embeddings().t(), targets))
        assert loss > SequentialRecommender.loss(m, seq, lengths, targets)
        assert torch.isneginf(m.scores(seq, lengths)[:, 0]).all()


def test_reference_variant_refuses_one_pass():
    m = reference_model(num_layers=1)
    assert "variant='reference' pads every input to max_length" in m.one_pass_support()
    assert model(num_layers=1).one_pass_support() is None
