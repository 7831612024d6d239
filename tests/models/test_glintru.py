"""GLINT-RU's own tests: the paper's equations, ablations and options (padding invariance, the fast
last-position path), mixing weights, config errors, presets, parameter counts, the linear attention's
formulas, and the reference variant (padding to L, no masking, the random padding row, its loss).
What every model keeps (default-config shapes, padding invariance, determinism, save/load, learning,
CUDA) is tests/models/test_contract.py's."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from glintru.models import build_model, resolve_config
from glintru.models.base import SequentialRecommender, gather_last
from glintru.models.gate_activations import GATE_ACTIVATION_LABELS, GATE_ACTIVATION_NAMES, PAPER_GATE_ACTIVATIONS
from glintru.models.glintru import GATE_ACTIVATIONS, GLINTRU, GLINTRUConfig
from glintru.models.layers import LinearAttention

from model_checks import one_thread  # noqa: F401  (autouse fixture: tiny models run best on one thread)

N_ITEMS = 40
D = 16

# (use_gru, use_attention, use_conv, use_gated_mlp) with at least one expert: 12 combinations.
ABLATIONS = [
    dict(use_gru=g, use_attention=a, use_conv=c, use_gated_mlp=m)
    for g, a, c, m in itertools.product([True, False], repeat=4)
    if g or a
]


def ablation_id(ab: dict) -> str:
    return "-".join(k[4:] for k, v in ab.items() if v) + "".join(f"-no_{k[4:]}" for k, v in ab.items() if not v)


def make_config(**overrides) -> GLINTRUConfig:
    values = dict(hidden_size=D, num_heads=2, max_length=200, dropout=0.0, inner_dropout=0.0)
    values.update(overrides)
    return resolve_config("glintru", None, values)


def make_model(seed: int = 0, **overrides) -> GLINTRU:
    torch.manual_seed(seed)
    return build_model("glintru", N_ITEMS, make_config(**overrides))


def histories(seed: int = 1) -> tuple[list[list[int]], torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 2, 5, 11, 20])
    seqs = [torch.randint(1, N_ITEMS + 1, (int(n),), generator=g).tolist() for n in lengths]
    return seqs, lengths


def pad(seqs: list[list[int]], width: int) -> torch.Tensor:
    out = torch.zeros(len(seqs), width, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s)
    return out


@pytest.mark.parametrize("ablation", ABLATIONS, ids=ablation_id)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_padding_invariance(ablation, mode):
    model = make_model(num_layers=2, **ablation)
    model.train(mode == "train")
    seqs, lengths = histories()
    short, long = pad(seqs, 20), pad(seqs, 200)
    torch.testing.assert_close(model(short, lengths), model(long, lengths))
    torch.testing.assert_close(model.scores(short, lengths), model.scores(long, lengths))
    # The fast last-position path equals the full computation gathered at the last item.
    full = model.sequence_output(long, lengths)
    assert full.shape == (5, 200, D)
    torch.testing.assert_close(model(long, lengths), gather_last(full, lengths))


@pytest.mark.parametrize(
    "options",
    [
        dict(conv_padding="causal"),
        dict(kernel_size=4),
        dict(kernel_size=5, conv_padding="causal"),
        dict(attention_key_norm="feature", shared_layer_norm=True, gru_bias=True, gru_num_layers=2),
    ],
    ids=["causal", "even-k", "causal-k5", "reference-options"],
)
def test_padding_invariance_options(options):
    model = make_model(**options).eval()
    seqs, lengths = histories()
    torch.testing.assert_close(model(pad(seqs, 20), lengths), model(pad(seqs, 200), lengths))
    long = pad(seqs, 200)
    torch.testing.assert_close(model(long, lengths), gather_last(model.sequence_output(long, lengths), lengths))


def equations_forward(model: GLINTRU, seq: torch.Tensor) -> torch.Tensor:
    """The paper's equations, written out step by step for unpadded sequences (one block)."""
    cfg, blk = model.config, model.blocks[0]
    x = model.item_embedding(seq)  # [B, N, d]
    B, N, d = x.shape
    att, h, dh = blk.attn, cfg.num_heads, d // cfg.num_heads
    heads = []
    for i in range(h):
        cols = slice(i * dh, (i + 1) * dh)
        q = F.elu(att.query(x)[..., cols])
        k = F.elu(att.key(x)[..., cols])
        v = att.value(x)[..., cols]
        q = q / q.norm(dim=-1, keepdim=True)
        k = k / k.norm(dim=1 if cfg.attention_key_norm == "sequence" else -1, keepdim=True)
        heads.append(q @ (k.transpose(1, 2) @ v) / math.sqrt(dh))
    a = blk.attn_norm(att.dense(torch.cat(heads, dim=-1)) + x)

    g = blk.gru

    def conv(t, tc):  # centred temporal convolution, zero beyond both ends
        return F.conv1d(t.transpose(1, 2), tc.conv.weight, tc.conv.bias, padding=cfg.kernel_size // 2).transpose(1, 2)

    c = conv(g.w0(x), g.conv_in)
    w_ir, w_iz, w_in = g.gru.weight_ih_l0.chunk(3)
    w_hr, w_hz, w_hn = g.gru.weight_hh_l0.chunk(3)
    state, hs = torch.zeros(B, d), []
    for t in range(N):  # bias-free GRU cell, PyTorch/cuDNN gate order (r, z, n)
        r = torch.sigmoid(c[:, t] @ w_ir.t() + state @ w_hr.t())
        z = torch.sigmoid(c[:, t] @ w_iz.t() + state @ w_hz.t())
        n = torch.tanh(c[:, t] @ w_in.t() + r * (state @ w_hn.t()))
        state = (1 - z) * n + z * state
        hs.append(state)
    hidden = torch.stack(hs, dim=1)
    gate = g.gate[2](F.silu(g.gate[0](c)))
    y = conv(gate * g.proj(hidden), g.conv_out)

    alpha = torch.softmax(blk.mix_logits, dim=0)
    m = alpha[0] * a + alpha[1] * y
    z = blk.mix_norm(blk.mix_out(F.gelu(blk.data_gate(x)) * m) + x)
    p = F.gelu(blk.mlp.gate(z)) * blk.mlp.value(z)
    norm = blk.mix_norm if cfg.shared_layer_norm else blk.mlp_norm
    return norm(blk.mlp.out(p) + z)[:, -1]


@pytest.mark.parametrize(
    "options", [dict(), dict(attention_key_norm="feature", shared_layer_norm=True)], ids=["paper", "reference"]
)
def test_matches_equations(options):
    model = make_model(seed=2, hidden_size=8, num_heads=2, **options).eval()
    seq = torch.randint(1, N_ITEMS + 1, (3, 7))
    with torch.no_grad():
        torch.testing.assert_close(model(seq, torch.full((3,), 7)), equations_forward(model, seq))


@pytest.mark.parametrize("padding,sees_next", [("same", True), ("causal", False)])
def test_conv_padding_context(padding, sees_next):
    # Without attention (non-causal by design), position t sees item t+1 only through a centred conv.
    model = make_model(use_attention=False, conv_padding=padding).eval()
    seq = torch.randint(1, N_ITEMS + 1, (1, 10))
    changed = seq.clone()
    changed[0, 6] = seq[0, 6] % N_ITEMS + 1
    lengths = torch.tensor([10])
    before = model.sequence_output(seq, lengths)[0, 5]
    after = model.sequence_output(changed, lengths)[0, 5]
    assert (not torch.allclose(before, after)) == sees_next


@pytest.mark.parametrize("activation", sorted(GATE_ACTIVATIONS))
def test_gate_activations_train(activation):
    model = make_model(gate_activation=activation, dropout=0.2, inner_dropout=0.3).train()
    assert isinstance(model.blocks[0].gru.gate[1], GATE_ACTIVATIONS[activation])
    seqs, lengths = histories()
    loss = model.loss(pad(seqs, 20), lengths, torch.tensor([1, 2, 3, 4, 5]))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("ablation", ABLATIONS, ids=ablation_id)
def test_ablations_train(ablation):
    model = make_model(dropout=0.2, inner_dropout=0.3, **ablation).train()
    block = model.blocks[0]
    assert (block.gru is not None) == ablation["use_gru"]
    assert (block.attn is not None) == ablation["use_attention"]
    assert (block.mlp is not None) == ablation["use_gated_mlp"]
    if ablation["use_gru"]:
        assert (block.gru.conv_in is not None) == ablation["use_conv"]
    seqs, lengths = histories()
    loss = model.loss(pad(seqs, 20), lengths, torch.tensor([1, 2, 3, 4, 5]))
    loss.backward()
    assert torch.isfinite(loss)
    # Every parameter of every variant takes part in the loss.
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_mixing_weights_softmax_and_trainable():
    model = make_model().train()
    weights = model.mixing_weights()
    assert weights.shape == (1, 2)
    torch.testing.assert_close(weights, torch.tensor([[0.5, 0.5]]))
    logits = model.blocks[0].mix_logits
    assert logits.requires_grad and any(p is logits for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    seqs, lengths = histories()
    for _ in range(3):
        opt.zero_grad()
        model.loss(pad(seqs, 20), lengths, torch.tensor([1, 2, 3, 4, 5])).backward()
        assert logits.grad is not None and logits.grad.abs().sum() > 0
        opt.step()
    after = model.mixing_weights()
    assert not torch.allclose(after, weights)
    torch.testing.assert_close(after.sum(dim=1), torch.ones(1))
    assert (after > 0).all()
    # A single expert takes the whole weight and has no mixing parameter.
    solo = make_model(use_attention=False)
    assert solo.blocks[0].mix_logits is None
    torch.testing.assert_close(solo.mixing_weights(), torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(use_gru=False, use_attention=False), "at least one expert"),
        (dict(hidden_size=30, num_heads=8), "hidden_size 30 is not divisible by num_heads 8"),
        (dict(gate_activation="swish"), "unknown gate_activation 'swish'"),
        (dict(conv_padding="valid"), "unknown conv_padding 'valid'"),
        (dict(attention_key_norm="rows"), "unknown attention_key_norm 'rows'"),
        (dict(variant="recbole"), "unknown variant 'recbole'; choose one of masked, reference"),
        (dict(inner_dropout=1.0), "inner_dropout must lie in"),
        (dict(attention_dropout=1.0), r"attention_dropout must lie in \[0, 1\); got 1.0"),
        (dict(kernel_size=0), "kernel_size, gru_num_layers and num_heads must be positive"),
        (dict(dropout=-0.1), "dropout must lie in"),
        (dict(kernel_sizes=3), "has no field"),
    ],
)
def test_invalid_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_config("glintru", None, overrides)


def test_invalid_config_direct():
    with pytest.raises(ValueError, match="at least one expert"):
        GLINTRUConfig(use_gru=False, use_attention=False)
    # Heads only need to divide d when the attention expert exists.
    cfg = GLINTRUConfig(hidden_size=30, num_heads=8, use_attention=False)
    assert GLINTRU(cfg, N_ITEMS)(pad([[1, 2]], 4), torch.tensor([2])).shape == (1, 30)


def test_presets():
    ml = resolve_config("glintru", "ml-1m")
    assert isinstance(ml, GLINTRUConfig)
    assert (ml.hidden_size, ml.dropout, ml.max_length, ml.kernel_size, ml.num_layers, ml.num_heads) == (
        128,
        0.2,
        200,
        3,
        1,
        8,
    )
    for name in ("beauty", "video-games"):
        cfg = resolve_config("glintru", name)
        assert (cfg.hidden_size, cfg.dropout, cfg.max_length, cfg.kernel_size, cfg.num_layers) == (64, 0.5, 100, 3, 1)
    tuned = resolve_config("glintru", "beauty", {"kernel_size": 5, "gate_activation": "relu"})
    assert (tuned.kernel_size, tuned.gate_activation, tuned.hidden_size) == (5, "relu", 64)
    assert (ml.inner_dropout, ml.gate_activation, ml.conv_padding, ml.gru_bias) == (0.3, "silu", "same", False)


def expected_parameters(cfg: GLINTRUConfig, n_items: int) -> int:
    d, k, h2 = cfg.hidden_size, cfg.kernel_size, cfg.hidden_size // 2
    linear = d * d + d
    norm = 2 * d
    total = (n_items + 1) * d
    block = linear + linear + norm  # data-aware gate, mixing linear, mixing LayerNorm
    if cfg.use_attention:
        block += 4 * linear + norm
    if cfg.use_gru:
        gru = 6 * d * d * cfg.gru_num_layers + (6 * d * cfg.gru_num_layers if cfg.gru_bias else 0)
        block += linear + gru + (d * h2 + h2 + h2 * d + d) + linear  # W0, GRU, selective gate, W_H
        if cfg.use_conv:
            block += 2 * (d * d * k + d)
    if cfg.use_gru and cfg.use_attention:
        block += 2
    if cfg.use_gated_mlp:
        block += 3 * linear + (0 if cfg.shared_layer_norm else norm)
    return total + cfg.num_layers * block


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(use_gru=False),
        dict(use_attention=False, use_conv=False),
        dict(use_gated_mlp=False),
        dict(num_layers=3, kernel_size=5, gru_bias=True, shared_layer_norm=True, gru_num_layers=2),
    ],
)
def test_parameter_count(overrides):
    model = make_model(**overrides)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(model.config, N_ITEMS)


def test_parameter_count_ml1m_preset():
    cfg = resolve_config("glintru", "ml-1m")
    model = build_model("glintru", 3706, cfg)
    n = sum(p.numel() for p in model.parameters())
    assert n == expected_parameters(cfg, 3706)
    # One block holds (2k + 18) d^2 weights plus O(d) biases and norms.
    block = n - 3707 * 128
    assert 24 * 128**2 < block < 24 * 128**2 + 40 * 128


@pytest.mark.parametrize("key_norm", ["sequence", "feature"])
def test_linear_attention_matches_formula(key_norm):
    torch.manual_seed(0)
    attn = LinearAttention(8, 2, dropout=0.0, key_norm=key_norm).eval()
    x = torch.randn(2, 6, 8)
    lengths = torch.tensor([6, 4])
    mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)
    out = attn(x, mask)
    for b in range(2):
        n = int(lengths[b])
        heads = []
        for h in range(2):
            cols = slice(4 * h, 4 * h + 4)
            q = F.elu(attn.query(x[b, :n])[:, cols])
            k = F.elu(attn.key(x[b, :n])[:, cols])
            v = attn.value(x[b, :n])[:, cols]
            q = q / q.norm(dim=1, keepdim=True)
            k = k / k.norm(dim=0 if key_norm == "sequence" else 1, keepdim=True)
            heads.append(q @ (k.t() @ v) / 2.0)
        torch.testing.assert_close(out[b, :n], attn.dense(torch.cat(heads, dim=1)))
    last = lengths - 1
    torch.testing.assert_close(attn(x, mask, index=last), out[torch.arange(2), last])


def test_cumulative_key_norm_is_causal_sequence_norm():
    """Row t attends to keys 0..t, each column normalised over them; the last row is "sequence"."""
    torch.manual_seed(0)
    attn = LinearAttention(8, 2, dropout=0.0, key_norm="cumulative").eval()
    x = torch.randn(2, 6, 8)
    lengths = torch.tensor([6, 4])
    mask = torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)
    out = attn(x, mask)
    for b in range(2):
        for t in range(int(lengths[b])):
            heads = []
            for h in range(2):
                cols = slice(4 * h, 4 * h + 4)
                q = F.elu(attn.query(x[b, t : t + 1])[:, cols])
                k = F.elu(attn.key(x[b, : t + 1])[:, cols])
                v = attn.value(x[b, : t + 1])[:, cols]
                q = q / q.norm(dim=1, keepdim=True)
                k = k / k.norm(dim=0, keepdim=True)
                heads.append(q @ (k.t() @ v) / 2.0)
            torch.testing.assert_close(out[b, t], attn.dense(torch.cat(heads, dim=1))[0])
    last = lengths - 1
    torch.testing.assert_close(attn(x, mask, index=last), out[torch.arange(2), last])
    sequence = LinearAttention(8, 2, dropout=0.0, key_norm="sequence").eval()
    sequence.load_state_dict(attn.state_dict())
    torch.testing.assert_close(sequence(x, mask, index=last), out[torch.arange(2), last])


def test_gate_activation_sets():
    # One list of names: the modules, the paper's Table 6 subset (its row order) and the labels.
    assert tuple(GATE_ACTIVATIONS) == GATE_ACTIVATION_NAMES
    assert PAPER_GATE_ACTIVATIONS == ("silu", "relu", "sigmoid", "elu")
    assert set(GATE_ACTIVATION_NAMES) - set(PAPER_GATE_ACTIVATIONS) == {"gelu", "tanh"}
    assert set(GATE_ACTIVATION_LABELS) == set(GATE_ACTIVATION_NAMES)
    assert GLINTRUConfig().gate_activation == PAPER_GATE_ACTIVATIONS[0]


# -- variant="reference": the reference code's padding behaviour ------------------------------------

L_REF = 12


def reference_model(seed: int = 3, **overrides) -> GLINTRU:
    return make_model(seed=seed, variant="reference", max_length=L_REF, **overrides)


def short_batch(width: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([7, 3, 1])
    seq = torch.zeros(3, width, dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        seq[b, :n] = torch.randint(1, N_ITEMS + 1, (n,), generator=g)
    return seq, lengths


def test_reference_variant_sets_its_options():
    ref, masked = GLINTRUConfig(variant="reference"), GLINTRUConfig()
    assert (ref.attention_key_norm, ref.shared_layer_norm) == ("feature", True)
    assert (masked.variant, masked.attention_key_norm, masked.shared_layer_norm) == ("masked", "sequence", False)
    # A value given explicitly wins over the variant's, both ways.
    mixed = GLINTRUConfig(variant="reference", attention_key_norm="sequence", shared_layer_norm=False)
    assert (mixed.attention_key_norm, mixed.shared_layer_norm) == ("sequence", False)
    assert GLINTRUConfig(attention_key_norm="feature").attention_key_norm == "feature"
    # The resolved config round-trips through its dict (what a run directory stores).
    assert GLINTRUConfig(**ref.to_dict()) == ref
    model = reference_model()
    assert model.blocks[0].mlp_norm is None and model.blocks[0].attn.key_norm == "feature"
    assert make_model().blocks[0].mlp_norm is not None


def reference_forward(model: GLINTRU, seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The reference code's forward (GLINT-RU.py), written out step by step on ids already padded
    to L, nothing masked: attention over the embeddings with every key normalised over its own
    features; dense1 -> conv (kernel 3, padding 1) -> bias-free GRU; SiLU gate on the conv output
    times the projected GRU states -> conv; GRU and attention outputs weighted by a softmax
    (GRU first there, attention first here); times GELU(dense2); dense; one LayerNorm for both
    residuals; the state at position len - 1."""
    blk = model.blocks[0]
    att, g = blk.attn, blk.gru
    x = model.item_embedding(seq)
    B, L, d = x.shape
    h = model.config.num_heads
    dh = d // h
    q = F.elu(att.query(x)).view(B, L, h, dh)
    k = F.elu(att.key(x)).view(B, L, h, dh)
    v = att.value(x).view(B, L, h, dh)
    q = q / q.norm(dim=-1, keepdim=True)
    k = k / k.norm(dim=-1, keepdim=True)
    kv = torch.einsum("bmhi,bmhj->bhij", k, v)  # K^T V per head, summed over all L positions
    context = torch.einsum("blhi,bhij->blhj", q, kv).reshape(B, L, d) / math.sqrt(dh)
    attention = blk.attn_norm(att.dense(context) + x)

    def conv3(t, tc):
        return F.conv1d(t.transpose(1, 2), tc.conv.weight, tc.conv.bias, padding=1).transpose(1, 2)

    h1 = conv3(g.w0(x), g.conv_in)
    h2 = F.gelu(blk.data_gate(x))
    states, _ = g.gru(h1)
    gru_out = conv3(g.gate(h1) * g.proj(states), g.conv_out)
    w_attention, w_gru = torch.softmax(blk.mix_logits, dim=0)
    expert = w_gru * gru_out + w_attention * attention
    z = blk.mix_norm(blk.mix_out(expert * h2) + x)
    r = blk.mix_norm(blk.mlp.out(blk.mlp.value(z) * F.gelu(blk.mlp.gate(z))) + z)
    return r[torch.arange(B), lengths - 1]


def test_reference_variant_matches_the_reference_forward():
    model = reference_model(hidden_size=8).eval()
    with torch.no_grad():
        model.blocks[0].mix_logits.copy_(torch.tensor([0.9, -0.4]))  # unequal: checks which is which
    seq, lengths = short_batch(width=7)
    with torch.no_grad():
        expected = reference_forward(model, pad(seq.tolist(), L_REF), lengths)
        torch.testing.assert_close(model(seq, lengths), expected)
        # The same weights with the padding masked give another result for every short row.
        masked = make_model(
            hidden_size=8, max_length=L_REF, attention_key_norm="feature", shared_layer_norm=True
        ).eval()
        masked.load_state_dict(model.state_dict())
        differs = (masked(seq, lengths) - expected).abs().amax(dim=1) > 1e-4
    assert differs.tolist() == [True, True, True]


def test_reference_variant_pads_to_max_length():
    model = reference_model().eval()
    seq, lengths = short_batch(width=7)
    with torch.no_grad():
        out = model(seq, lengths)
        # Independent of the batch's width: the model pads to L itself ...
        torch.testing.assert_close(model(pad(seq.tolist(), L_REF), lengths), out)
        torch.testing.assert_close(model.scores(seq, lengths), model.scores(pad(seq.tolist(), 10), lengths))
        assert model.sequence_output(seq, lengths).shape == (3, L_REF, D)
        # ... and dependent on L: the same weights padding to 20 give other values.
        longer = make_model(variant="reference", max_length=20).eval()
        longer.load_state_dict(model.state_dict())
        assert not torch.allclose(longer(seq, lengths), out, atol=1e-4)
    with pytest.raises(ValueError, match="sequence width 13 exceeds max_length 12"):
        model(pad(seq.tolist(), 13), lengths)


def test_reference_variant_reads_the_padding_row():
    seq, lengths = short_batch()
    for variant, changes in (("reference", True), ("masked", False)):
        model = make_model(seed=3, variant=variant, max_length=L_REF).eval()
        with torch.no_grad():
            before = model(seq, lengths)
            model.item_embedding.weight[0].add_(1.0)
            after = model(seq, lengths)
        assert (not torch.allclose(before, after)) == changes, variant


def test_reference_padding_row_is_random_and_moves_only_as_a_candidate():
    model = reference_model(dropout=0.2, inner_dropout=0.3).train()
    assert model.item_embedding.weight[0].abs().min() > 0  # random, not zeros (the masked row is zero)
    assert make_model().item_embedding.weight[0].abs().max() == 0
    # Drawn with the other rows' xavier_normal_ std, sqrt(2 / (n_items + 1 + d)) = 0.187 here.
    draws = torch.stack([reference_model(seed=s).item_embedding.weight[0].detach() for s in range(30)])
    assert abs(draws.std().item() - math.sqrt(2 / (N_ITEMS + 1 + D))) < 0.02
    # Its gradient is exactly the output layer's (id 0 as a softmax candidate): the lookup of the
    # padding positions adds nothing (padding_idx=0), as in the reference.
    seq, lengths = short_batch()
    targets = torch.tensor([5, 6, 7])
    torch.manual_seed(1)
    model.loss(seq, lengths, targets).backward()
    torch.manual_seed(1)  # the same dropout masks
    with torch.no_grad():
        rep = model(seq, lengths)
        p0 = torch.softmax(rep @ model.item_embeddings().t(), dim=1)[:, :1]
    torch.testing.assert_close(model.item_embedding.weight.grad[0], (p0 * rep).mean(dim=0))
    # The masked variant's padding row gets no gradient at all and stays zero.
    masked = make_model(seed=3, max_length=L_REF, dropout=0.2).train()
    opt = torch.optim.Adam(masked.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        masked.loss(seq, lengths, targets).backward()
        assert masked.item_embedding.weight.grad[0].abs().max() == 0
        opt.step()
    assert masked.item_embedding.weight[0].abs().max() == 0


def test_reference_loss_counts_the_padding_id():
    model = reference_model().eval()
    seq, lengths = short_batch()
    targets = torch.tensor([5, 6, 7])
    with torch.no_grad():
        rep, items = model(seq, lengths), model.item_embeddings()
        loss = model.loss(seq, lengths, targets)
        torch.testing.assert_close(loss, F.cross_entropy(rep @ items.t(), targets))
        without_padding = SequentialRecommender.loss(model, seq, lengths, targets)
        assert loss > without_padding  # one more candidate in the softmax denominator
        torch.testing.assert_close(model.loss(seq, lengths, targets, reduction="none").mean(), loss)
        # Evaluation still never ranks the padding id.
        assert torch.isneginf(model.scores(seq, lengths)[:, 0]).all()
        # The masked variant leaves id 0 out of its loss.
        masked = make_model(seed=3, max_length=L_REF).eval()
        rep = masked(seq, lengths)
        logits = rep @ masked.item_embeddings().t()
        logits[:, 0] = float("-inf")
        torch.testing.assert_close(masked.loss(seq, lengths, targets), F.cross_entropy(logits, targets))


def test_reference_variant_refuses_one_pass():
    model = reference_model()
    assert "variant='reference' pads every input to max_length" in model.one_pass_support()
    with pytest.raises(ValueError, match="one-pass training refused for GLINTRU"):
        model.prefix_outputs(*short_batch())
    assert make_model(max_length=L_REF).one_pass_support() is None


def test_the_attention_output_takes_its_own_dropout_when_given():
    def attention_dropout(model):
        return model.blocks[0].attn.dropout.p

    assert attention_dropout(make_model(dropout=0.5)) == 0.5  # default: the shared rate
    model = make_model(dropout=0.5, attention_dropout=0.0).train()
    assert attention_dropout(model) == 0.0
    # the attention output is then deterministic in training mode, the embeddings' dropout is not
    x = torch.randn(3, 7, D)
    lengths = torch.tensor([7, 4, 1])
    mask = torch.arange(7)[None, :] < lengths[:, None]
    attn = model.blocks[0].attn
    torch.testing.assert_close(attn(x, mask), attn(x, mask))
    emb = model.emb_dropout(torch.ones(1000))
    assert emb.eq(0).any() and emb.ne(0).any()
