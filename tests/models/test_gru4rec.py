"""GRU4Rec: contract, padding invariance, causality, determinism, save/load, learning, presets."""

from __future__ import annotations

import io

import pytest
import torch

from glintru.models import build_model, resolve_config
from glintru.models.gru4rec import GRU4Rec, GRU4RecConfig

N_ITEMS = 20


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny tensors and shared cores: thread hand-offs would cost more than the arithmetic.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def model(seed: int = 0, **overrides) -> GRU4Rec:
    torch.manual_seed(seed)
    cfg = GRU4RecConfig.from_preset(None, **{"hidden_size": 16, "dropout": 0.0, **overrides})
    return GRU4Rec(cfg, N_ITEMS)


def histories(width: int, lengths=(1, 7, 13, 20), seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seq = torch.zeros(len(lengths), width, dtype=torch.long)
    for b, n in enumerate(lengths):
        seq[b, :n] = torch.randint(1, N_ITEMS + 1, (n,), generator=g)
    return seq, torch.tensor(lengths)


def cycle_task(n_items: int, n_train: int = 400, n_test: int = 200, seed: int = 0):
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
    return (seq[:n_train], lengths[:n_train], targets[:n_train]), (seq[n_train:], lengths[n_train:], targets[n_train:])


def test_shapes_and_scores():
    m = model(num_layers=2).eval()
    seq, lengths = histories(20)
    assert m(seq, lengths).shape == (4, 16)
    scores = m.scores(seq, lengths)
    assert scores.shape == (4, N_ITEMS + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    assert m.item_embeddings().shape == (N_ITEMS + 1, 16)
    assert m.gru.num_layers == 2 and m.gru.bias is False
    loss = m.train().loss(seq, lengths, torch.tensor([1, 2, 3, 4]))
    loss.backward()
    assert torch.isfinite(loss) and m.gru.weight_hh_l1.grad is not None


@pytest.mark.parametrize("train_mode", [False, True])
def test_padding_invariance(train_mode):
    m = model(num_layers=2).train(train_mode)
    short, lengths = histories(20)
    long, _ = histories(200)
    torch.testing.assert_close(m(short, lengths), m(long, lengths))


def test_causal_items_after_t_do_not_change_t():
    m = model().eval()
    seq, _ = histories(20, lengths=(20, 20))
    changed = seq.clone()
    changed[:, 8:] = torch.randint(1, N_ITEMS + 1, (2, 12))
    t = torch.tensor([8, 8])  # representation after item index 7
    torch.testing.assert_close(m(seq, t), m(changed, t))
    assert not torch.allclose(m(seq, torch.tensor([20, 20])), m(changed, torch.tensor([20, 20])))


def test_determinism():
    seq, lengths = histories(20)
    a, b = model(seed=3).eval(), model(seed=3).eval()
    assert torch.equal(a(seq, lengths), b(seq, lengths))
    assert torch.equal(a(seq, lengths), a(seq, lengths))
    assert not torch.equal(a(seq, lengths), model(seed=4).eval()(seq, lengths))


def test_state_dict_round_trip():
    seq, lengths = histories(20)
    a = model(seed=0, num_layers=2).eval()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = model(seed=9, num_layers=2).eval()
    b.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(a(seq, lengths), b(seq, lengths), rtol=0, atol=0)


def test_learns_strided_cycles_better_than_popularity():
    n_items = 30
    (seq, lengths, targets), (tseq, tlengths, ttargets) = cycle_task(n_items)
    torch.manual_seed(0)
    m = GRU4Rec(GRU4RecConfig.from_preset(None, hidden_size=32, dropout=0.0), n_items)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for step in range(200):
        idx = torch.randint(0, len(seq), (64,))
        loss = m.loss(seq[idx], lengths[idx], targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        hit = (m.scores(tseq, tlengths).argmax(1) == ttargets).float().mean()
    pop_hit = (ttargets == torch.bincount(targets, minlength=n_items + 1)[1:].argmax() + 1).float().mean()
    assert hit > 0.8 and hit > pop_hit + 0.6, (hit, pop_hit)


def test_presets_and_registry():
    cfg = resolve_config("gru4rec", "ml-1m")
    assert isinstance(cfg, GRU4RecConfig)
    assert (cfg.hidden_size, cfg.dropout, cfg.max_length, cfg.num_layers) == (128, 0.2, 200, 2)
    beauty = resolve_config("gru4rec", "beauty", {"num_layers": 3})
    assert (beauty.hidden_size, beauty.dropout, beauty.max_length, beauty.num_layers) == (64, 0.5, 100, 3)
    assert resolve_config("gru4rec").num_layers == 1  # RecBole's default outside the presets
    m = build_model("gru4rec", N_ITEMS, resolve_config("gru4rec", overrides={"hidden_size": 8}))
    assert isinstance(m, GRU4Rec) and m.item_embedding.weight.shape == (N_ITEMS + 1, 8)
    with pytest.raises(ValueError, match="no field"):
        resolve_config("gru4rec", overrides={"heads": 2})
