"""SMLP4Rec beyond the contract suite (test_contract.py): side features (used, pooled, optional,
warned about when missing), padding invariance at any padded length, truncation, the one-pass
refusal, what the state dict holds, learning strided cycles, presets."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from glintru.models import build_model, resolve_config
from glintru.models.smlp4rec import SMLP4Rec, SMLP4RecConfig

from model_checks import (  # noqa: F401  (one_thread: autouse fixture)
    N_ITEMS,
    assert_contract,
    assert_learns_strided_cycles,
    assert_state_dict_round_trip,
    histories,
    one_thread,
)


def features(seed: int = 0) -> dict[str, tuple[np.ndarray, int]]:
    """Two side features as PreparedDataset.item_features() returns them (row 0 = padding)."""
    rng = np.random.default_rng(seed)
    genre = rng.integers(1, 6, size=(N_ITEMS + 1, 3))
    genre[rng.random((N_ITEMS + 1, 3)) < 0.4] = 0  # ragged token lists, 0 = no token
    brand = rng.integers(1, 4, size=(N_ITEMS + 1, 1))
    genre[0], brand[0] = 0, 0
    return {"genre": (genre, 6), "brand": (brand, 4)}


def model(seed: int = 0, feats="default", **overrides) -> SMLP4Rec:
    torch.manual_seed(seed)
    values = {"hidden_size": 16, "max_length": 30, "dropout": 0.0, **overrides}
    return SMLP4Rec(
        SMLP4RecConfig.from_preset(None, **values), N_ITEMS, item_features=features() if feats == "default" else feats
    )


def test_shapes_and_scores():
    m = model()
    layer = m.layers[0]
    assert layer.feature.fc1.weight.shape == (3, 3)  # id + 2 features, expansion 1
    assert layer.sequence.fc1.weight.shape == (30, 30) and layer.channel.fc1.weight.shape == (16, 16)
    assert_contract(m, encodes=False)
    assert m.features["genre"].embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("width", [20, 30, 200])
def test_padding_invariance(train_mode, width):
    # The batch may be padded shorter than, exactly to, or beyond max_length (30).
    m = model().train(train_mode)
    base, lengths = histories(20)
    padded, _ = histories(width)
    torch.testing.assert_close(m(base, lengths), m(padded, lengths))


@pytest.mark.parametrize("layers", [1, 2])
def test_a_narrow_batch_trains_as_the_full_width_layout(layers):
    """A batch narrower than max_length is laid out only as wide as itself; the loss and every
    gradient equal those of the same batch padded to max_length (the full layout)."""
    base, lengths = histories(13, lengths=(1, 4, 9, 13))
    full = torch.nn.functional.pad(base, (0, 30 - 13))
    targets = torch.tensor([3, 17, 5, 20])
    results = []
    for seq in (base, full):
        m = model(num_layers=layers).train()
        loss = m.loss(seq, lengths, targets)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}))
    (narrow_loss, narrow_grads), (full_loss, full_grads) = results
    torch.testing.assert_close(narrow_loss, full_loss)
    assert narrow_grads.keys() == full_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(narrow_grads[name], full_grads[name], msg=name)
    # the sequence weights of positions beyond the batch get no gradient: they never saw an item
    seq_in = full_grads["layers.0.sequence.fc1.weight"]
    assert seq_in[:, 13:].abs().sum() == 0 and seq_in[:, :13].abs().sum() > 0


def test_mixers_refuse_an_axis_of_the_wrong_size():
    layer = model().layers[0]
    x = torch.randn(2, 3, 30, 16)
    with pytest.raises(ValueError, match="mixing axis of size 4; this mixer takes 3"):
        layer.feature(torch.randn(2, 4, 30, 16), dim=1)  # only the sequence axis may be shorter
    with pytest.raises(ValueError, match="mixing axis of size 31; this mixer takes 30"):
        layer.sequence(torch.randn(2, 3, 31, 16), dim=2)
    narrow = layer.sequence(x[:, :, :12], dim=2)
    zero_tail = torch.cat([x[:, :, :12], torch.zeros(2, 3, 18, 16)], dim=2)
    torch.testing.assert_close(narrow, layer.sequence(zero_tail, dim=2)[:, :, :12])


def test_histories_longer_than_max_length_keep_their_last_items():
    m = model(max_length=10).eval()
    seq, lengths = histories(20, lengths=(20, 13))
    tail = torch.zeros(2, 10, dtype=torch.long)
    tail[0], tail[1] = seq[0, 10:20], seq[1, 3:13]
    torch.testing.assert_close(m(seq, lengths), m(tail, torch.tensor([10, 10])))


def test_features_change_the_representation():
    seq, lengths = histories(20)
    base = model().eval()
    other = features()
    genre = other["genre"][0].copy()
    genre[seq[3, 5].item()] = [5, 5, 5]  # an item in the middle of the last history
    other["genre"] = (genre, 6)
    edited = model(feats=other).eval()
    out_base, out_edit = base(seq, lengths), edited(seq, lengths)
    assert not torch.allclose(out_base[3], out_edit[3])
    # Histories without that item are untouched.
    for b in range(3):
        if seq[3, 5] not in seq[b, : lengths[b]]:
            torch.testing.assert_close(out_base[b], out_edit[b])


def test_feature_pooling_ignores_padding_tokens():
    narrow = {"brand": (features()["brand"][0], 4)}
    wide = {"brand": (np.concatenate([narrow["brand"][0], np.zeros((N_ITEMS + 1, 4), dtype=np.int64)], 1), 4)}
    seq, lengths = histories(20)
    torch.testing.assert_close(model(feats=narrow).eval()(seq, lengths), model(feats=wide).eval()(seq, lengths))
    table = model(feats=narrow).features["brand"].table()
    assert torch.equal(table[0], torch.zeros(16))  # padding item


def test_runs_without_features():
    seq, lengths = histories(20)
    with pytest.warns(UserWarning, match="no item side features"):
        bare = model(feats=None).eval()
    off = model(use_features=False).eval()  # features supplied but switched off
    assert len(bare.features) == 0 and bare.layers[0].feature.fc1.weight.shape == (1, 1)
    torch.testing.assert_close(bare(seq, lengths), off(seq, lengths))
    long, _ = histories(200)
    torch.testing.assert_close(bare(seq, lengths), bare(long, lengths))


@pytest.mark.parametrize("feats", [None, {}])
def test_warns_naming_the_missing_features(feats):
    with pytest.warns(UserWarning) as record:
        model(feats=feats)
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("SMLP4Rec: the dataset has no item side features, so it runs on item ids only")
    for name in ("'class'", "'movie_title'", "'genre'", "'title'", "'category'", "'brand'", "use_features=False"):
        assert name in message
    assert record[0].filename == __file__  # points at the caller's line (model() here)


def test_no_warning_with_features_or_ids_chosen():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model()
        model(feats=None, use_features=False)
        model(use_features=False)


def test_rejects_bad_features():
    genre = features()["genre"][0]
    with pytest.raises(ValueError, match="n_items \\+ 1"):
        model(feats={"genre": (genre[:-1], 6)})
    with pytest.raises(ValueError, match="must lie in 0..5"):
        model(feats={"genre": (genre + 6, 6)})


def test_refuses_one_pass_training_for_its_mixing_over_the_whole_sequence():
    m = model(use_features=False).eval()
    reason = m.one_pass_support()
    assert reason.startswith(
        "SMLP4Rec has no exact one-pass training: its sequence-mixing MLP combines all max_length positions"
    )
    with pytest.raises(ValueError, match="sequence-mixing MLP"):
        m.prefix_outputs(*histories(20))
    # What the reason says: after the first layer, a later item changes an earlier position's state.
    seq, _ = histories(30, lengths=(12, 12))
    changed = seq.clone()
    changed[:, 11] = changed[:, 11] % N_ITEMS + 1
    x = torch.stack([m.item_embedding(s) for s in (seq, changed)])  # [2 versions, B, L, d]
    mask = (torch.arange(30) < 12).float()[None, None, :, None]
    mixed = [m.layers[0](v.unsqueeze(1), mask)[:, 0, :11] for v in x]
    assert not torch.allclose(mixed[0], mixed[1])


def test_state_dict_holds_weights_not_feature_data():
    state = assert_state_dict_round_trip(model)
    assert not any(k.endswith(".tokens") for k in state)  # feature data comes from the dataset


def test_learns_strided_cycles_better_than_popularity():
    def make_model(n_items):
        cfg = SMLP4RecConfig.from_preset(None, hidden_size=32, max_length=9, dropout=0.0, use_features=False)
        return SMLP4Rec(cfg, n_items)

    assert_learns_strided_cycles(make_model, n_items=30)


def test_presets_and_registry():
    cfg = resolve_config("smlp4rec", "ml-1m")
    assert isinstance(cfg, SMLP4RecConfig)
    assert (cfg.hidden_size, cfg.dropout, cfg.max_length, cfg.num_layers) == (128, 0.2, 200, 2)
    assert (cfg.expansion_factor, cfg.use_features) == (1, True)
    beauty = resolve_config("smlp4rec", "beauty")
    assert (beauty.hidden_size, beauty.dropout, beauty.max_length) == (64, 0.5, 100)
    m = build_model("smlp4rec", N_ITEMS, resolve_config("smlp4rec", overrides={"hidden_size": 8}), features())
    assert isinstance(m, SMLP4Rec) and sorted(m.features) == ["brand", "genre"]
    with pytest.raises(ValueError, match="expansion_factor"):
        resolve_config("smlp4rec", overrides={"expansion_factor": 0})
