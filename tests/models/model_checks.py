"""Helpers shared by the contract suite and the per-model tests in this folder (imported as `model_checks`: pytest's
rootdir-based import puts tests/models on sys.path)."""

from __future__ import annotations

import io

import pytest
import torch

from glintru.models import ModelSpec, build_model, register_model, resolve_config, unregister_model
from glintru.models.base import gather_last

N_ITEMS = 20


@pytest.fixture(autouse=True)
def one_thread():
    # Tensors here are tiny: with several test processes sharing the cores, thread hand-offs cost
    # more than the arithmetic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def histories(width: int, lengths=(1, 7, 13, 20), seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of right-padded histories over items 1..N_ITEMS, padded to `width` columns."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.zeros(len(lengths), width, dtype=torch.long)
    for b, n in enumerate(lengths):
        seq[b, :n] = torch.randint(1, N_ITEMS + 1, (n,), generator=g)
    return seq, torch.tensor(lengths)


def tiny_attention_config(config_cls, **overrides):
    """A small dropout-free config of an attention baseline (d=16, 2 heads), `overrides` on top."""
    values = dict(hidden_size=16, num_heads=2, inner_size=32, max_length=200, dropout=0.0)
    return config_cls.from_preset(None, **{**values, **overrides})


def tiny_attention_model(model_cls, seed: int = 0, **overrides):
    """`model_cls` (an attention baseline) over N_ITEMS items with tiny_attention_config(overrides),
    its weights drawn after manual_seed(seed)."""
    torch.manual_seed(seed)
    return model_cls(tiny_attention_config(model_cls.config_class, **overrides), N_ITEMS)


def assert_contract(m, hidden_size: int = 16, encodes: bool = True) -> None:
    """What every model promises its callers, on histories(20): a [B, d] representation (and a
    [B, L, d] encoding where the model `encodes`), [B, n_items + 1] scores that rank the padding
    item 0 at -inf and every real item finitely, and in train mode a finite scalar loss with finite
    gradients. Leaves `m` in train mode holding those gradients, for the model's own checks."""
    m.eval()
    seq, lengths = histories(20)
    assert m(seq, lengths).shape == (4, hidden_size)
    if encodes:
        assert m.encode(seq, lengths).shape == (4, 20, hidden_size)
    assert m.item_embeddings().shape == (N_ITEMS + 1, hidden_size)
    scores = m.scores(seq, lengths)
    assert scores.shape == (4, N_ITEMS + 1)
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    m.train()
    loss = m.loss(seq, lengths, torch.tensor([1, 2, 3, 4]))
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    grads = [p.grad for p in m.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def assert_forward_is_last_encoding(m) -> None:
    """forward()'s last-position path equals encode() gathered at each history's last item."""
    m.eval()
    seq, lengths = histories(20)
    torch.testing.assert_close(m(seq, lengths), gather_last(m.encode(seq, lengths), lengths))


def assert_rejects_wider_than_max_length(model) -> None:
    """`model(max_length=10)` refuses a batch padded to 20 columns: it has no positions for the
    extra columns, and the caller should truncate to the last max_length items."""
    m = model(max_length=10)
    seq, lengths = histories(20)
    with pytest.raises(ValueError, match="exceeds max_length 10"):
        m(seq, lengths)


def assert_attention_presets(name: str, model_cls, config_cls) -> None:
    """The attention baselines take Table 5's dataset settings, 2 layers of 8 heads, overrides on
    top of a preset, build through the registry, and reject heads that do not divide d."""
    beauty = resolve_config(name, "beauty")
    assert isinstance(beauty, config_cls)
    assert (beauty.hidden_size, beauty.dropout, beauty.max_length) == (64, 0.5, 100)
    assert (beauty.num_layers, beauty.num_heads) == (2, 8)
    ml = resolve_config(name, "ml-1m", {"num_heads": 2})
    assert (ml.hidden_size, ml.dropout, ml.max_length, ml.num_heads) == (128, 0.2, 200, 2)
    assert isinstance(build_model(name, N_ITEMS, ml), model_cls)
    with pytest.raises(ValueError, match="num_heads must divide hidden_size"):
        config_cls.from_preset(None, hidden_size=20, num_heads=8)


def assert_cuda_matches_cpu_and_trains_in_bf16(m) -> None:
    """`m` moved to CUDA gives its CPU output (to 1e-4) and trains under bf16 autocast with a
    finite loss. Moves `m` to the GPU."""
    m.eval()
    seq, lengths = histories(20)
    expected = m(seq, lengths)
    gpu = m.cuda()
    # TF32 (cuDNN's default for convolutions and RNNs) rounds to 10 mantissa bits: compare in fp32.
    allow = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        got = gpu(seq.cuda(), lengths.cuda()).cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = allow
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    gpu.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = gpu.loss(seq.cuda(), lengths.cuda(), torch.tensor([1, 2, 3, 4], device="cuda"))
    loss.backward()
    assert torch.isfinite(loss)


def assert_padding_invariant(m, scores: bool = False, wide: int = 200) -> None:
    """The same histories padded to 20 and to `wide` columns give the same output (and scores)."""
    short, lengths = histories(20)
    long, _ = histories(wide)
    torch.testing.assert_close(m(short, lengths), m(long, lengths))
    if scores:
        torch.testing.assert_close(m.scores(short, lengths), m.scores(long, lengths))


def _split(seq, lengths, targets, n_train):
    return (seq[:n_train], lengths[:n_train], targets[:n_train]), (seq[n_train:], lengths[n_train:], targets[n_train:])


def cycle_task(n_items: int, n_train: int = 300, n_test: int = 100, seed: int = 0):
    """Histories walking the cycle i -> i % n + 1 from random starts; the target is the next item."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    lengths = torch.randint(2, 10, (n,), generator=g)
    start = torch.randint(0, n_items, (n, 1), generator=g)
    walk = (start + torch.arange(10)) % n_items + 1
    seq = walk[:, :9] * (torch.arange(9) < lengths.unsqueeze(1))
    targets = walk[torch.arange(n), lengths]
    return _split(seq, lengths, targets, n_train)


def strided_cycle_task(n_items: int, n_train: int = 400, n_test: int = 200, seed: int = 0):
    """Histories walking i -> (i + k) mod n from random starts with a per-history stride k in
    {1, 2, 3}; the target is the next item. The last item alone leaves k open (hit@1 <= 1/3),
    so a model must read the order of at least two items; popularity is flat."""
    g = torch.Generator().manual_seed(seed)
    n = n_train + n_test
    lengths = torch.randint(2, 10, (n,), generator=g)
    start = torch.randint(0, n_items, (n, 1), generator=g)
    stride = torch.randint(1, 4, (n, 1), generator=g)
    walk = (start + stride * torch.arange(10)) % n_items + 1
    seq = walk[:, :9] * (torch.arange(9) < lengths.unsqueeze(1))
    targets = walk[torch.arange(n), lengths]
    return _split(seq, lengths, targets, n_train)


def train_steps(m, seq, lengths, targets, steps: int, lr: float, generator=None) -> None:
    """Adam on batches of 64 drawn with `generator` (the global RNG when None)."""
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.randint(0, len(seq), (64,), generator=generator)
        opt.zero_grad()
        m.loss(seq[idx], lengths[idx], targets[idx]).backward()
        opt.step()


def assert_learns_cycle_beyond_popularity(make_model, steps: int) -> None:
    """`make_model(n_items)` trained on cycle_task(N_ITEMS) reaches hit@1 > 0.8."""
    (seq, lengths, targets), (test_seq, test_lengths, test_targets) = cycle_task(N_ITEMS)
    torch.manual_seed(0)
    m = make_model(N_ITEMS)
    train_steps(m, seq, lengths, targets, steps, lr=5e-3, generator=torch.Generator().manual_seed(0))
    m.eval()
    with torch.no_grad():
        accuracy = (m.scores(test_seq, test_lengths).argmax(1) == test_targets).float().mean().item()
    popular = torch.bincount(targets, minlength=N_ITEMS + 1).argmax()
    popularity = (test_targets == popular).float().mean().item()
    assert popularity < 0.15
    assert accuracy > 0.8, accuracy


def assert_learns_strided_cycles(make_model, n_items: int = 30) -> None:
    """`make_model(n_items)` trained on strided_cycle_task beats popularity by a wide margin."""
    (seq, lengths, targets), (tseq, tlengths, ttargets) = strided_cycle_task(n_items)
    torch.manual_seed(0)
    m = make_model(n_items)
    train_steps(m, seq, lengths, targets, 200, lr=1e-2)
    m.eval()
    with torch.no_grad():
        hit = (m.scores(tseq, tlengths).argmax(1) == ttargets).float().mean()
    pop_hit = (ttargets == torch.bincount(targets, minlength=n_items + 1)[1:].argmax() + 1).float().mean()
    assert hit > 0.8 and hit > pop_hit + 0.6, (hit, pop_hit)


def assert_deterministic_given_seed(model) -> None:
    """`model(seed=..., **overrides)` is reproducible and seed-dependent: equal seeds give equal
    weights and equal eval outputs, a repeated call agrees, another seed differs; with dropout
    active the forward pass and the loss follow torch's seed."""
    seq, lengths = histories(20)
    a, b = model(seed=3).eval(), model(seed=3).eval()
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert torch.equal(a(seq, lengths), b(seq, lengths))
    assert torch.equal(a(seq, lengths), a(seq, lengths))
    assert not torch.equal(a(seq, lengths), model(seed=4).eval()(seq, lengths))
    dropped_a, dropped_b = model(seed=3, dropout=0.3).train(), model(seed=3, dropout=0.3).train()
    targets = torch.tensor([1, 2, 3, 4])
    outputs = []
    for m in (dropped_a, dropped_b):
        torch.manual_seed(7)
        outputs.append((m(seq, lengths), m.loss(seq, lengths, targets)))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


def assert_state_dict_round_trip(model, path=None, **overrides) -> dict:
    """The state dict of `model(seed=0, **overrides)`, saved (to `path`, or to memory) and loaded
    into `model(seed=1, **overrides)`, turns its different output into exactly the first one.
    Returns the saved state dict."""
    seq, lengths = histories(20)
    a = model(seed=0, **overrides).eval()
    b = model(seed=1, **overrides).eval()
    assert not torch.allclose(a(seq, lengths), b(seq, lengths))
    state = a.state_dict()
    target = path if path is not None else io.BytesIO()
    torch.save(state, target)
    if path is None:
        target.seek(0)
    b.load_state_dict(torch.load(target, weights_only=True))
    torch.testing.assert_close(a(seq, lengths), b(seq, lengths), rtol=0, atol=0)
    return state


def assert_state_dict_file_round_trip(model, tmp_path) -> None:
    assert_state_dict_round_trip(model, tmp_path / "model.pt")


TOY = "meanpool"


@pytest.fixture
def toy_registered():
    """tests/models/toy_model.py's MeanPool registered as a ninth model (`TOY`) for one test."""
    register_model(ModelSpec(TOY, "toy_model:MeanPool", "MeanPool", {"hidden_size": 16}))
    yield TOY
    unregister_model(TOY)
