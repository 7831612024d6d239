"""Synthetic generator: determinism by seed, sizes, sequential structure a model can learn, and logs
shaped like the paper's datasets (`--like`)."""

from __future__ import annotations

import numpy as np
import pytest

from glintru.data.dataset import load_dataset
from glintru.data.prepare import prepare_table
from glintru.data.synthetic import (
    SHAPES,
    SyntheticConfig,
    generate,
    generate_interactions,
    generate_like,
    heavy_tailed_lengths,
    simulate,
)


def hit_rates(values: np.ndarray, offsets: np.ndarray, n_items: int, k: int = 10) -> tuple[float, float]:
    """Leave-one-out HR@k of a first-order transition-count model and of popularity, both fitted on
    every user's items except the last."""
    trans = np.zeros((n_items + 1, n_items + 1))
    pop = np.zeros(n_items + 1)
    for u in range(offsets.size - 1):
        s = values[offsets[u] : offsets[u + 1] - 1]
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
    changes = [np.unique(clusters[log.offsets[u] : log.offsets[u + 1]]).size for u in range(300)]
    assert np.mean(changes) > 3  # users visit several clusters over their sequence


def test_generate_writes_prepared_dataset_with_category(tmp_path):
    out = generate(tmp_path / "syn", n_users=1000, n_items=500, avg_length=30, seed=0)
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
        original = [f"i{i}" for i in log.values[log.offsets[u] : log.offsets[u + 1]]]
        prepared_user = p.user_ids.index(f"u{u}")
        assert [p.item_ids[i - 1] for i in p.sequences[prepared_user]] == original


def test_invalid_sizes():
    with pytest.raises(ValueError, match="avg_length must be >= 3"):
        simulate(SyntheticConfig(avg_length=2))
    with pytest.raises(ValueError, match="n_items >= 2"):
        simulate(SyntheticConfig(n_items=1))


def test_heavy_tailed_lengths_hit_the_exact_total_within_bounds():
    cfg = SyntheticConfig(
        n_users=5000,
        n_items=100,
        avg_length=12.3,
        min_length=5,
        length_tail=2.3,
        max_seq_length=150,
        n_interactions=61_537,
    )
    lengths = heavy_tailed_lengths(np.random.default_rng(0), cfg)
    assert lengths.sum() == 61_537 and lengths.min() == 5 and lengths.max() <= 150
    assert np.median(lengths) < 0.75 * lengths.mean()  # skewed: the mean is pulled up by a long tail
    assert np.percentile(lengths, 99) > 4 * np.median(lengths)


def test_like_beauty_has_table1_counts_and_a_beauty_like_length_distribution(tmp_path):
    ds = load_dataset(generate_like(tmp_path / "beauty", "beauty"))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (22_363, 12_101, 198_502)
    assert ds.name == "synthetic-beauty" and ds.meta["params"]["length_tail"] == SHAPES["beauty"].tail
    lengths = ds.lengths
    # real Beauty 5-core: min 5, median 6, 75th/90th/99th percentiles 9/14/43, max 204, 32% at 5
    assert lengths.min() == 5 and lengths.max() <= 204 and np.median(lengths) == 6
    assert 8 <= np.percentile(lengths, 75) <= 10 and 12 <= np.percentile(lengths, 90) <= 16
    assert 35 <= np.percentile(lengths, 99) <= 55 and 0.27 < (lengths == 5).mean() < 0.37
    assert ds.values.max() <= 12_101


def test_like_ml1m_scaled_keeps_mean_and_minimum_length(tmp_path):
    ds = load_dataset(generate_like(tmp_path / "ml", "ml-1m", scale=0.05, seed=2))
    assert ds.n_users == 302 and ds.n_items == 185 and ds.n_interactions == 50_010
    assert ds.lengths.min() == 20 and ds.lengths.max() <= 2314
    assert abs(ds.lengths.mean() - 165.6) < 0.1 and np.median(ds.lengths) < 130  # ML-1M: median 96
    with pytest.raises(ValueError, match="unknown shape"):
        generate_like(tmp_path / "x", "netflix")
    with pytest.raises(ValueError, match="scale must lie"):
        generate_like(tmp_path / "x", "beauty", scale=2)


def test_cli_synthetic_like(tmp_path, capsys):
    from glintru.cli import main

    assert main(["synthetic", "--like", "video-games", "--scale", "0.02", "--out", str(tmp_path / "vg")]) == 0
    assert "synthetic-video-games-x0.02" in capsys.readouterr().out
    ds = load_dataset(tmp_path / "vg")
    assert ds.n_users == 486 and ds.lengths.min() == 5 and ds.n_interactions == 4636
    _refused(
        capsys,
        ["synthetic", "--like", "beauty", "--users", "10", "--out", str(tmp_path / "b")],
        "sets the sizes itself; drop --users",
    )
    _refused(capsys, ["synthetic", "--scale", "0.5", "--out", str(tmp_path / "b")], "--scale applies to --like")
    assert main(["synthetic", "--users", "30", "--items", "20", "--out", str(tmp_path / "plain")]) == 0
    assert load_dataset(tmp_path / "plain").n_users == 30


def test_invalid_length_options():
    with pytest.raises(ValueError, match="need heavy-tailed lengths"):
        simulate(SyntheticConfig(n_interactions=100))
    with pytest.raises(ValueError, match="length_tail must be > 1"):
        simulate(SyntheticConfig(length_tail=1.0))
    with pytest.raises(ValueError, match="cannot give 10 users lengths in 5..8"):
        simulate(SyntheticConfig(n_users=10, avg_length=9, min_length=5, length_tail=2, max_seq_length=8))


def _refused(capsys, argv: list[str], message: str) -> None:
    """A user's mistake: exit code 2 and one `error:` line on stderr that names it."""
    from glintru.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, err
