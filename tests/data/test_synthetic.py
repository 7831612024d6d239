"""Synthetic generator: determinism by seed, sizes, and sequential structure a model can learn."""

from __future__ import annotations

import time

import numpy as np
import pytest

from glintru.data.dataset import load_dataset
from glintru.data.prepare import prepare_table
from glintru.data.synthetic import SyntheticConfig, generate, generate_interactions, simulate


def hit_rates(values: np.ndarray, offsets: np.ndarray, n_items: int, k: int = 10) -> tuple[float, float]:
    """Leave-one-out HR@k of a first-order transition-count model and of popularity, both fitted on
    every user's items except the last."""
    trans = np.zeros((n_items + 1, n_items + 1))
    pop = np.zeros(n_items + 1)
    for u in range(offsets.size - 1):
        s = values[offsets[u]: offsets[u + 1] - 1]
        np.add.at(trans, (s[:-1], s[1:]), 1.0)
        np.add.at(pop, s, 1.0)
    pop[0] = -1
    top_pop = set(np.argsort(-pop)[:k].tolist())
    markov = pop_hits = 0
    for u in range(offsets.size - 1):
        prev, target = values[offsets[u + 1] - 2], values[offsets[u + 1] - 1]
        markov += target in np.argsort(-(trans[prev] + 1e-6 * pop))[:k]
        pop_hits += target in top_pop
    users = offsets.size - 1
    return markov / users, pop_hits / users


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = simulate(SyntheticConfig(seed=3)), simulate(SyntheticConfig(seed=3)), simulate(SyntheticConfig(seed=4))
    assert np.array_equal(a.values, b.values) and np.array_equal(a.offsets, b.offsets)
    assert np.array_equal(a.timestamps, b.timestamps) and np.array_equal(a.ratings, b.ratings)
    assert not np.array_equal(a.values[:200], c.values[:200])
    df1, df2 = generate_interactions(n_users=50, seed=9), generate_interactions(n_users=50, seed=9)
    assert df1.equals(df2)


def test_sizes_lengths_and_times():
    log = simulate(SyntheticConfig(n_users=400, n_items=300, avg_length=20, seed=1))
    lengths = np.diff(log.offsets)
    assert lengths.size == 400 and lengths.min() >= 3
    assert 17 < lengths.mean() < 23 and lengths.std() > 5  # variable lengths around the requested mean
    assert log.values.min() >= 1 and log.values.max() <= 300
    first = np.zeros(log.values.size, dtype=bool)
    first[log.offsets[:-1]] = True
    assert (np.diff(log.timestamps)[~first[1:]] > 0).all()  # strictly increasing within every user
    assert set(np.unique(log.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_zipf_popularity_is_skewed():
    log = simulate(SyntheticConfig(n_users=2000, n_items=500, seed=0))
    counts = np.sort(np.bincount(log.values, minlength=501)[1:])[::-1]
    assert counts[:50].sum() > 3 * counts[-250:].sum()  # top 10% of items beat the bottom half by far


def test_next_item_follows_successors_and_beats_popularity():
    log = simulate(SyntheticConfig(seed=0))
    v, o = log.values, log.offsets
    same_user = np.ones(v.size - 1, dtype=bool)
    same_user[o[1:-1] - 1] = False
    follows = (log.successors[v[:-1]] == v[1:, None]).any(axis=1)[same_user].mean()
    assert 0.55 < follows < 0.75  # ~0.6 by design, plus in-cluster draws that hit a successor
    markov, popularity = hit_rates(v, o, 500)
    assert markov > 0.5 and markov > 2.5 * popularity


def test_interests_drift_across_clusters():
    log = simulate(SyntheticConfig(n_users=300, avg_length=40, seed=2))
    clusters = log.cluster[log.values - 1]
    changes = [np.unique(clusters[log.offsets[u]: log.offsets[u + 1]]).size for u in range(300)]
    assert np.mean(changes) > 3  # users visit several clusters over their sequence


def test_generate_writes_prepared_dataset_with_category(tmp_path):
    start = time.perf_counter()
    out = generate(tmp_path / "syn", n_users=1000, n_items=500, avg_length=30, seed=0)
    assert time.perf_counter() - start < 2.0
    ds = load_dataset(out)
    assert ds.name == "synthetic" and ds.n_users == 1000 and ds.n_items == 500
    assert ds.lengths.min() >= 3 and 0 not in ds.values.tolist()
    assert ds.meta["source"]["format"] == "synthetic"
    assert ds.meta["params"]["seed"] == 0 and ds.meta["params"]["n_clusters"] == SyntheticConfig().clusters()
    tokens, vocab = ds.item_features()["category"]
    assert vocab == SyntheticConfig().clusters() + 1 and tokens.shape == (501, 1)
    assert tokens[0, 0] == 0 and tokens[1:, 0].min() >= 1
    log = simulate(SyntheticConfig(seed=0))
    assert np.array_equal(ds.values, log.values)
    assert np.array_equal(tokens[1:, 0], log.cluster + 1)
    with pytest.raises(FileExistsError):
        generate(tmp_path / "syn")
    generate(tmp_path / "syn", n_users=20, features=False, overwrite=True)
    assert load_dataset(tmp_path / "syn").feature_names == []


def test_interactions_feed_prepare_table():
    log = simulate(SyntheticConfig(n_users=100, n_items=80, seed=5))
    df = generate_interactions(n_users=100, n_items=80, seed=5)
    assert len(df) == log.values.size and df["user"].iloc[0] == "u0"
    p = prepare_table(df.sample(frac=1.0, random_state=0), duplicates="keep")  # row order must not matter
    assert p.n_users == 100 and p.values.size == log.values.size
    for u in range(100):
        original = [f"i{i}" for i in log.values[log.offsets[u]: log.offsets[u + 1]]]
        prepared_user = p.user_ids.index(f"u{u}")
        assert [p.item_ids[i - 1] for i in p.sequences[prepared_user]] == original


def test_invalid_sizes():
    with pytest.raises(ValueError, match="avg_length must be >= 3"):
        simulate(SyntheticConfig(avg_length=2))
    with pytest.raises(ValueError, match="n_items >= 2"):
        simulate(SyntheticConfig(n_items=1))
