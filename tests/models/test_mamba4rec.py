"""Mamba4Rec and the scans under it: parallel vs sequential scan (values, gradients, prefixes),
selective scan backends, the model beyond the contract suite (test_contract.py: block shapes, the
step-size inits, the paper's 2-layer config padded, scan backends, learning strided cycles,
presets), and the mamba_ssm kernel on CUDA."""

from __future__ import annotations

import pytest
import torch

from glintru.models import build_model, resolve_config
from glintru.models.mamba4rec import Mamba4Rec, Mamba4RecConfig
from glintru.models.scan import (
    mamba_ssm_available,
    parallel_scan,
    selective_scan,
    selective_scan_reference,
    sequential_scan,
)

from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_contract,
    assert_learns_strided_cycles,
    assert_padding_invariant,
    histories,
    one_thread,
)


def model(seed: int = 0, **overrides) -> Mamba4Rec:
    torch.manual_seed(seed)
    values = {"hidden_size": 16, "d_state": 8, "dropout": 0.0, **overrides}
    return Mamba4Rec(Mamba4RecConfig.from_preset(None, **values), N_ITEMS)


def ssm_inputs(batch=3, L=29, ch=6, n=5, dtype=torch.float64, seed=0, requires_grad=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, L, ch, generator=g, dtype=dtype)
    delta = torch.rand(batch, L, ch, generator=g, dtype=dtype) * 0.5
    A = -torch.rand(ch, n, generator=g, dtype=dtype) * 2 - 0.1
    B = torch.randn(batch, L, n, generator=g, dtype=dtype)
    C = torch.randn(batch, L, n, generator=g, dtype=dtype)
    D = torch.randn(ch, generator=g, dtype=dtype)
    return tuple(t.requires_grad_(requires_grad) for t in (x, delta, A, B, C, D))


# --- scans -----------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 3, 7, 8, 33, 200])
def test_parallel_scan_matches_sequential_values_and_gradients(T):
    g = torch.Generator().manual_seed(T)
    a = torch.rand(2, T, 3, 4, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(2, T, 3, 4, generator=g, dtype=torch.float64).requires_grad_()
    up = torch.randn(2, T, 3, 4, generator=g, dtype=torch.float64)
    hp, hs = parallel_scan(a, b, dim=1), sequential_scan(a, b, dim=1)
    torch.testing.assert_close(hp, hs)
    torch.testing.assert_close(torch.autograd.grad(hp, (a, b), up), torch.autograd.grad(hs, (a, b), up))
    with torch.no_grad():
        torch.testing.assert_close(parallel_scan(a, b, dim=1), hs)
    # Any scan axis: the same recurrence laid out along dim 2.
    torch.testing.assert_close(parallel_scan(a.transpose(1, 2), b.transpose(1, 2), dim=2), hs.transpose(1, 2))


def test_parallel_scan_gradcheck_and_known_values():
    a = torch.rand(2, 11, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(2, 11, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: parallel_scan(a, b), (a, b))
    # a = 1: a running sum; a = 0: h = b.
    ones, vals = torch.ones(1, 6), torch.arange(1.0, 7.0).unsqueeze(0)
    assert torch.equal(parallel_scan(ones, vals), torch.tensor([[1.0, 3.0, 6.0, 10.0, 15.0, 21.0]]))
    assert torch.equal(parallel_scan(torch.zeros(1, 6), vals), vals)


def test_parallel_scan_of_a_prefix_is_bit_identical():
    # Padding invariance rests on this: what follows a prefix never changes its states.
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 200, 8, generator=g), torch.randn(2, 200, 8, generator=g)
    full = parallel_scan(a, b)
    for T in (1, 13, 20, 64, 117):
        assert torch.equal(parallel_scan(a[:, :T], b[:, :T]), full[:, :T])


def test_parallel_scan_leaves_inputs_and_rejects_bad_shapes():
    a, b = torch.rand(2, 9, 3), torch.randn(2, 9, 3)
    a0, b0 = a.clone(), b.clone()
    parallel_scan(a, b)
    assert torch.equal(a, a0) and torch.equal(b, b0)
    with pytest.raises(ValueError, match="same shape"):
        parallel_scan(a, b[:, :5])


@pytest.mark.parametrize("chunk_elements", [None, 1, 40])
def test_selective_scan_matches_reference(chunk_elements):
    args = ssm_inputs()
    y = selective_scan(*args, backend="parallel", chunk_elements=chunk_elements)
    ref = selective_scan_reference(*args)
    torch.testing.assert_close(y, ref)
    up = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(y, args, up), torch.autograd.grad(ref, args, up))
    torch.testing.assert_close(selective_scan(*args, backend="sequential"), ref)


def test_selective_scan_is_causal_and_keeps_dtype():
    x, delta, A, B, C, D = ssm_inputs(requires_grad=False)
    y = selective_scan(x, delta, A, B, C, D)
    x2 = x.clone()
    x2[:, 15:] += 1.0
    y2 = selective_scan(x2, delta, A, B, C, D)
    torch.testing.assert_close(y[:, :15], y2[:, :15])
    assert not torch.allclose(y[:, 15:], y2[:, 15:])
    # Half-precision inputs are scanned in float32 and returned in their own dtype.
    half = selective_scan(*(t.to(torch.bfloat16) for t in (x, delta, A, B, C, D)))
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.double(), y, atol=0.1, rtol=0.05)


def test_selective_scan_rejects_bad_input():
    x, delta, A, B, C, D = ssm_inputs(requires_grad=False)
    with pytest.raises(ValueError, match="unknown scan backend"):
        selective_scan(x, delta, A, B, C, D, backend="fast")
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(x, delta, A[:2], B, C, D)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(x, delta, A, B[:, :4], C, D)
    with pytest.raises(RuntimeError, match="mamba_ssm package and CUDA tensors"):
        selective_scan(x, delta, A, B, C, D, backend="cuda")  # CPU tensors


@pytest.mark.gpu
@pytest.mark.skipif(
    not (torch.cuda.is_available() and mamba_ssm_available()), reason="needs CUDA and the mamba_ssm package"
)
def test_mamba_ssm_kernel_matches_parallel_scan():
    args = [t.detach().float().cuda().requires_grad_() for t in ssm_inputs(batch=4, L=200, ch=64, n=16)]
    fast = selective_scan(*args, backend="cuda")
    ours = selective_scan(*args, backend="parallel")
    torch.testing.assert_close(fast, ours, atol=1e-4, rtol=1e-3)
    up = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(fast, args, up), torch.autograd.grad(ours, args, up), atol=1e-3, rtol=1e-3
    )
    torch.manual_seed(0)
    cfg = Mamba4RecConfig.from_preset("ml-1m", dropout=0.0)
    m = Mamba4Rec(cfg, 100).cuda().eval()
    seq, lengths = histories(200)
    seq, lengths = seq.cuda(), lengths.cuda()
    with torch.no_grad():
        out_fast = m(seq, lengths)
        for layer in m.layers:
            layer.mamba.scan = "parallel"
        torch.testing.assert_close(out_fast, m(seq, lengths), atol=1e-4, rtol=1e-3)


# --- the model -------------------------------------------------------------------------------


def test_shapes_and_scores():
    m = model(num_layers=2)
    block = m.layers[0].mamba
    assert block.in_proj.out_features == 2 * 2 * 16 and block.A_log.shape == (32, 8)
    assert block.conv1d.kernel_size == (4,) and block.dt_rank == 1
    # Mamba's step-size init survives the model's blanket Linear init.
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.99 and dt.max() <= 0.1 * 1.01
    assert m.layers[0].residual and not model(num_layers=1).layers[0].residual
    assert_contract(m, encodes=False)
    assert all(p.grad is not None for p in m.parameters())


def test_reference_dt_init_is_the_blanket_linear_init():
    # Mamba4Rec's reference code re-initialises every Linear inside mamba_ssm's Mamba, dt_proj too.
    ref = model(hidden_size=64, num_layers=2, dt_init="reference")
    default = model(hidden_size=64, num_layers=2)
    for layer in ref.layers:
        dt_proj = layer.mamba.dt_proj
        assert dt_proj.weight.shape == (128, 4)
        assert torch.equal(dt_proj.bias, torch.zeros(128))
        assert abs(dt_proj.weight.std().item() - 0.02) < 0.003  # 512 draws of N(0, 0.02)
        torch.testing.assert_close(
            torch.nn.functional.softplus(dt_proj.bias), torch.full((128,), 0.6931), atol=1e-4, rtol=0
        )
    # Mamba's init: uniform weights at dt_rank^-0.5 = 0.5, steps in [1e-3, 1e-1]; nothing else differs.
    dt_proj = default.layers[0].mamba.dt_proj
    assert dt_proj.weight.abs().max() <= 0.5 and dt_proj.weight.std() > 0.2
    assert torch.nn.functional.softplus(dt_proj.bias).max() <= 0.1 * 1.01
    ref_state, default_state = ref.state_dict(), default.state_dict()
    differing = {k for k in ref_state if not torch.equal(ref_state[k], default_state[k])}
    assert differing == {f"layers.{i}.mamba.dt_proj.{p}" for i in (0, 1) for p in ("weight", "bias")}
    # In use: the step delta = softplus(dt_proj(.)) the scan receives starts near 0.69 instead of <= 0.1.
    seq, lengths = histories(20)
    steps = {}
    for name, m in (("reference", ref), ("mamba", default)):
        hook = m.layers[0].mamba.dt_proj.register_forward_hook(
            lambda mod, inp, out, name=name: steps.__setitem__(name, torch.nn.functional.softplus(out))
        )
        m.eval()(seq, lengths)
        hook.remove()
    assert (steps["reference"] - 0.6931).abs().max() < 0.01
    assert steps["mamba"].max() < 0.11
    with pytest.raises(ValueError, match="dt_init must be one of"):
        resolve_config("mamba4rec", overrides={"dt_init": "xavier"})


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_invariance_with_the_papers_two_layers(train_mode):
    # The contract suite checks the default single layer; the presets stack two (residual path).
    m = model(num_layers=2, d_conv=3).train(train_mode)
    assert_padding_invariant(m)


def test_scan_backends_agree_in_the_model():
    seq, lengths = histories(20)
    parallel = model(scan="parallel").eval()
    sequential = model(scan="sequential").eval()
    sequential.load_state_dict(parallel.state_dict())
    torch.testing.assert_close(parallel(seq, lengths), sequential(seq, lengths))


def test_learns_strided_cycles_better_than_popularity():
    def make_model(n_items):
        cfg = Mamba4RecConfig.from_preset(None, hidden_size=32, d_state=8, dropout=0.0)
        return Mamba4Rec(cfg, n_items)

    assert_learns_strided_cycles(make_model, n_items=30)


def test_presets_and_registry():
    cfg = resolve_config("mamba4rec", "ml-1m")
    assert isinstance(cfg, Mamba4RecConfig)
    assert (cfg.hidden_size, cfg.dropout, cfg.max_length) == (128, 0.2, 200)
    assert (cfg.num_layers, cfg.d_conv, cfg.d_state, cfg.expand) == (2, 3, 32, 2)  # Table 5 / App. B
    games = resolve_config("mamba4rec", "video-games")
    assert (games.hidden_size, games.dropout, games.max_length) == (64, 0.5, 100)
    default = resolve_config("mamba4rec")
    assert (default.num_layers, default.d_conv) == (1, 4)  # the Mamba4Rec repository's defaults
    m = build_model("mamba4rec", N_ITEMS, resolve_config("mamba4rec", overrides={"hidden_size": 8, "d_state": 4}))
    assert isinstance(m, Mamba4Rec) and m.item_embeddings().shape == (N_ITEMS + 1, 8)
    with pytest.raises(ValueError, match="scan must be one of"):
        resolve_config("mamba4rec", overrides={"scan": "fast"})
    with pytest.raises(ValueError, match="positive"):
        resolve_config("mamba4rec", overrides={"d_state": 0})
