"""Helpers shared by the per-model tests in this folder (imported as `model_checks`: pytest's
rootdir-based import puts tests/models on sys.path)."""

from __future__ import annotations

import io

import pytest
import torch

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


def assert_padding_invariant(m, scores: bool = False) -> None:
    """The same histories padded to 20 and to 200 columns give the same output (and scores)."""
    short, lengths = histories(20)
    long, _ = histories(200)
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
    """`model(seed=..., **overrides)` is reproducible, seed-dependent, and dropout follows torch's seed."""
    a, b = model(seed=3), model(seed=3)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    assert not torch.equal(model(seed=4).position_embedding.weight, a.position_embedding.weight)
    # With dropout active, the same torch seed gives the same forward pass.
    seq, lengths = histories(20)
    dropped_a, dropped_b = model(seed=3, dropout=0.3).train(), model(seed=3, dropout=0.3).train()
    torch.manual_seed(7)
    out_a = dropped_a(seq, lengths)
    torch.manual_seed(7)
    out_b = dropped_b(seq, lengths)
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=0)


def assert_state_dict_file_round_trip(model, tmp_path) -> None:
    """Weights saved from `model(seed=0)` and loaded into `model(seed=1)` reproduce its output."""
    m = model(seed=0).eval()
    torch.save(m.state_dict(), tmp_path / "model.pt")
    other = model(seed=1).eval()
    seq, lengths = histories(20)
    assert not torch.allclose(m(seq, lengths), other(seq, lengths))
    other.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    torch.testing.assert_close(m(seq, lengths), other(seq, lengths), rtol=0, atol=0)


def assert_eval_determinism(model) -> None:
    """In eval mode, equal seeds give equal outputs, repeated calls agree, other seeds differ."""
    seq, lengths = histories(20)
    a, b = model(seed=3).eval(), model(seed=3).eval()
    assert torch.equal(a(seq, lengths), b(seq, lengths))
    assert torch.equal(a(seq, lengths), a(seq, lengths))
    assert not torch.equal(a(seq, lengths), model(seed=4).eval()(seq, lengths))


def assert_state_dict_buffer_round_trip(a, b, state=None) -> None:
    """`a`'s state dict (or `state`), saved to memory and loaded into `b`, reproduces `a` exactly."""
    seq, lengths = histories(20)
    buf = io.BytesIO()
    torch.save(a.state_dict() if state is None else state, buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(a(seq, lengths), b(seq, lengths), rtol=0, atol=0)
