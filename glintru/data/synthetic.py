"""Synthetic interaction logs with real sequential structure: the embedded default dataset and test data.

The generative story, deterministic by seed:
- items fall into latent clusters (the `category` feature); item popularity is Zipf-distributed;
- every item has a few successors in its own cluster: with probability `follow` the next item is
  one of them (the first one most likely), so the next item is predictable from the previous one;
- otherwise a user picks a popular item of their current cluster, or (with `noise`) any item;
- each user has interests over clusters; the current cluster switches now and then (`switch`),
  and the interests themselves drift towards new clusters as the sequence goes on;
- sequence lengths vary: min_length + a gamma draw (mean avg_length), or, with `length_tail`, a
  heavy-tailed Lomax (Pareto II) draw scaled to an exact interaction count, as real logs have.

`SHAPES` holds the paper's Table 1 datasets as such configs (`generate_like`), so benchmarks can run
on real shapes without the real data.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from glintru.data.dataset import MIN_SEQUENCE_LENGTH, check_prepared_out, write_prepared
from glintru.data.sources import make_table


@dataclass(frozen=True)
class SyntheticConfig:
    n_users: int = 1000
    n_items: int = 500
    avg_length: float = 30.0
    seed: int = 0
    n_clusters: int | None = None  # default: about sqrt(n_items) / 2
    n_successors: int = 3
    follow: float = 0.6  # probability that the next item is a successor of the previous one
    noise: float = 0.1  # probability of an item drawn from global popularity
    switch: float = 0.08  # per-step probability of moving to another interest cluster
    drift: float = 0.3  # how far interests move towards a new cluster at each switch
    zipf: float = 0.8  # popularity exponent
    min_length: int = MIN_SEQUENCE_LENGTH  # shortest sequence (5 for a 5-core Amazon log, 20 for ML-1M)
    length_tail: float | None = None  # Lomax shape of the lengths (smaller = heavier tail); None: gamma
    max_seq_length: int | None = None  # cap on a sequence's length (heavy-tailed lengths only)
    n_interactions: int | None = None  # exact total (heavy-tailed lengths only); default n_users * avg_length

    def clusters(self) -> int:
        return self.n_clusters or max(2, int(round(np.sqrt(self.n_items) / 2)))

    def total_interactions(self) -> int:
        return self.n_interactions if self.n_interactions is not None else int(round(self.n_users * self.avg_length))


def heavy_tailed_lengths(rng: np.random.Generator, cfg: SyntheticConfig) -> np.ndarray:
    """Sequence lengths min_length + floor(s * X), X ~ Lomax(length_tail), capped at max_seq_length,
    with the scale s found by bisection so that they sum to exactly cfg.total_interactions().

    A Lomax tail fits real logs well: shape 2.3 reproduces Amazon Beauty 5-core (median 6, 75th and
    90th percentiles 9 and 14, 99th 41-44 against the real 43, a third of users at the minimum 5, and a
    mean training prefix of about 9.5 against the real 9.0 at L=100), shape 3 ML-1M (median 96,
    quartiles 49 and 192 against the real 44 and 208)."""
    n, lo_len = cfg.n_users, cfg.min_length
    target = cfg.total_interactions() - n * lo_len  # interactions beyond the minimum
    room = (cfg.max_seq_length or cfg.total_interactions()) - lo_len
    if cfg.length_tail is None:
        raise ValueError("heavy-tailed lengths need cfg.length_tail (the Lomax shape)")
    x = (1.0 - rng.random(n)) ** (-1.0 / cfg.length_tail) - 1.0
    extra = lambda s: np.floor(np.minimum(s * x, room))  # noqa: E731
    lo, hi = 0.0, 1.0
    while extra(hi).sum() < target:  # the sum grows with s until every user reaches the cap
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if extra(mid).sum() < target else (lo, mid)
    e = extra(lo).astype(np.int64)
    # the floor's jumps leave a small remainder: one more item for that many random users below the cap
    short = target - int(e.sum())
    if short:
        e[rng.choice(np.flatnonzero(e < room), size=short, replace=False)] += 1
    return lo_len + e


@dataclass(frozen=True)
class SyntheticLog:
    """Generated sequences (item ids 1..n_items) with per-interaction times and ratings."""

    values: np.ndarray  # int32
    offsets: np.ndarray  # int64, n_users + 1
    timestamps: np.ndarray  # int64, strictly increasing within a user
    ratings: np.ndarray  # float64 in 1..5
    cluster: np.ndarray  # int64 cluster of item i + 1
    successors: np.ndarray  # int64 [n_items + 1, n_successors], row 0 unused


def _check(cfg: SyntheticConfig) -> None:
    if cfg.n_users < 1 or cfg.n_items < 2:
        raise ValueError(f"need n_users >= 1 and n_items >= 2, got {cfg.n_users} and {cfg.n_items}")
    if cfg.avg_length < MIN_SEQUENCE_LENGTH:
        raise ValueError(f"avg_length must be >= {MIN_SEQUENCE_LENGTH}, got {cfg.avg_length}")
    if not 1 <= cfg.clusters() <= cfg.n_items:
        raise ValueError(f"n_clusters must lie in 1..n_items, got {cfg.clusters()}")
    if cfg.n_successors < 1:
        raise ValueError(f"n_successors must be >= 1, got {cfg.n_successors}")
    if not 0 <= cfg.follow + cfg.noise <= 1:
        raise ValueError("follow + noise must lie in [0, 1]")
    if cfg.min_length < MIN_SEQUENCE_LENGTH or cfg.avg_length < cfg.min_length:
        raise ValueError(
            f"need {MIN_SEQUENCE_LENGTH} <= min_length <= avg_length, "
            f"got min_length {cfg.min_length} and avg_length {cfg.avg_length}"
        )
    if cfg.length_tail is None:
        if cfg.n_interactions is not None or cfg.max_seq_length is not None:
            raise ValueError("n_interactions and max_seq_length need heavy-tailed lengths (set length_tail)")
        return
    if cfg.length_tail <= 1:
        raise ValueError(f"length_tail must be > 1 (a finite mean), got {cfg.length_tail}")
    total = cfg.total_interactions()
    cap = cfg.max_seq_length or total
    if not cfg.n_users * cfg.min_length <= total <= cfg.n_users * cap:
        raise ValueError(f"{total} interactions cannot give {cfg.n_users} users lengths in {cfg.min_length}..{cap}")


def _cluster_sampler(cluster: np.ndarray, weight: np.ndarray, n_clusters: int):
    """Draw an item of a given cluster by popularity: one searchsorted over per-cluster CDFs laid end to
    end on [c, c + 1]."""
    members = np.argsort(cluster, kind="stable")
    sizes = np.bincount(cluster, minlength=n_clusters)
    ends = np.cumsum(sizes)
    w = weight[members]
    cum = np.cumsum(w)
    base = np.concatenate([[0.0], cum[ends[:-1] - 1]])
    totals = cum[ends - 1] - base
    key = cluster[members] + (cum - np.repeat(base, sizes)) / np.repeat(totals, sizes)
    key[ends - 1] = np.arange(n_clusters) + 1.0

    def draw(c: np.ndarray, u: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(key, c + u, side="right")
        return members[np.minimum(pos, members.size - 1)]

    return draw


def simulate(cfg: SyntheticConfig = SyntheticConfig()) -> SyntheticLog:
    """Run the generative story; item ids are 1..n_items (every user has >= min_length interactions)."""
    _check(cfg)
    rng = np.random.default_rng(cfg.seed)
    n_users, n_items, n_clusters, s = cfg.n_users, cfg.n_items, cfg.clusters(), cfg.n_successors

    cluster = rng.permutation(np.arange(n_items) % n_clusters)  # balanced clusters, item index 0..n-1
    weight = 1.0 / np.arange(1, n_items + 1) ** cfg.zipf
    weight = weight[rng.permutation(n_items)]
    global_cdf = np.cumsum(weight) / weight.sum()
    cluster_weight = np.bincount(cluster, weights=weight, minlength=n_clusters)
    cluster_cdf = np.cumsum(cluster_weight) / cluster_weight.sum()
    draw_in_cluster = _cluster_sampler(cluster, weight, n_clusters)

    # successors: Gumbel top-s within the cluster, weighted by popularity, never the item itself
    successors = np.zeros((n_items, s), dtype=np.int64)
    for c in range(n_clusters):
        m = np.flatnonzero(cluster == c)
        k = min(s, m.size - 1)
        if k <= 0:
            successors[m] = m[:, None]
            continue
        for lo in range(0, m.size, 512):  # row blocks keep memory bounded for very large clusters
            rows = np.arange(lo, min(lo + 512, m.size))
            scores = np.log(weight[m])[None, :] + rng.gumbel(size=(rows.size, m.size))
            scores[np.arange(rows.size), rows] = -np.inf
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
            successors[m[rows], :k] = m[top]
            successors[m[rows], k:] = m[top[:, :1]]
    succ_p = 0.5 ** np.arange(s)
    succ_cdf = np.cumsum(succ_p) / succ_p.sum()

    if cfg.length_tail is None:
        extra = rng.gamma(2.0, max(cfg.avg_length - cfg.min_length, 1e-9) / 2.0, size=n_users)
        lengths = cfg.min_length + np.rint(extra).astype(np.int64)
    else:
        lengths = heavy_tailed_lengths(rng, cfg)
    interests = rng.dirichlet(np.full(n_clusters, 0.3), size=n_users)

    # simulate all users at once, step by step; sorting by length makes the active users a prefix
    order = np.argsort(-lengths, kind="stable")
    sorted_len = lengths[order]
    interests = interests[order]
    max_len = int(sorted_len[0])
    seq = np.zeros((n_users, max_len), dtype=np.int64)

    def pick_cluster(rows: np.ndarray) -> np.ndarray:
        cum = np.cumsum(interests[rows], axis=1)
        u = rng.random(rows.size) * cum[:, -1]
        return np.minimum((cum < u[:, None]).sum(axis=1), n_clusters - 1)

    current = pick_cluster(np.arange(n_users))
    seq[:, 0] = draw_in_cluster(current, rng.random(n_users))
    for t in range(1, max_len):
        a = int(np.searchsorted(-sorted_len, -t, side="left"))  # users with length > t
        rows = np.arange(a)
        moved = rows[rng.random(a) < cfg.switch]
        if moved.size:
            new = np.minimum(np.searchsorted(cluster_cdf, rng.random(moved.size)), n_clusters - 1)
            interests[moved] *= 1.0 - cfg.drift
            interests[moved, new] += cfg.drift
            current[moved] = pick_cluster(moved)
        r = rng.random(a)
        prev = seq[:a, t - 1]
        which = np.minimum(np.searchsorted(succ_cdf, rng.random(a)), s - 1)
        nxt = draw_in_cluster(current[:a], rng.random(a))
        follow = r < cfg.follow
        nxt[follow] = successors[prev[follow], which[follow]]
        noise = r >= 1.0 - cfg.noise
        nxt[noise] = np.minimum(np.searchsorted(global_cdf, rng.random(int(noise.sum()))), n_items - 1)
        if moved.size:  # a user who just switched starts in the new cluster
            nxt[moved] = draw_in_cluster(current[moved], rng.random(moved.size))
        seq[:a, t] = nxt

    inverse = np.empty_like(order)
    inverse[order] = np.arange(n_users)
    lengths_user = sorted_len[inverse]
    mask = np.arange(max_len)[None, :] < lengths_user[:, None]
    values = (seq[inverse][mask] + 1).astype(np.int32)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(lengths_user, out=offsets[1:])
    gaps = rng.integers(60, 86_400, size=values.size)
    starts = rng.integers(946_684_800, 1_262_304_000, size=n_users)  # 2000..2010
    first = offsets[:-1]
    gaps[first] = starts
    within = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[first] - starts, lengths_user)
    ratings = rng.choice(np.arange(1.0, 6.0), size=values.size, p=[0.05, 0.1, 0.2, 0.35, 0.3])
    succ_full = np.vstack([np.zeros((1, s), dtype=np.int64), successors + 1])
    return SyntheticLog(values, offsets, within.astype(np.int64), ratings, cluster.astype(np.int64), succ_full)


def generate_interactions(
    *, n_users: int = 1000, n_items: int = 500, avg_length: float = 30, seed: int = 0, **options
) -> pd.DataFrame:
    """The raw interaction table (user 'u<k>', item 'i<id>', timestamp, rating) for `prepare_table`.

    Sequences may revisit an item; pass duplicates="keep" to `prepare_table` to keep them as generated.
    `options` are further `SyntheticConfig` fields (follow, noise, n_clusters, ...)."""
    cfg = SyntheticConfig(n_users=n_users, n_items=n_items, avg_length=avg_length, seed=seed, **options)
    log = simulate(cfg)
    lengths = np.diff(log.offsets)
    users = np.repeat(np.char.add("u", np.arange(n_users).astype(str)), lengths)
    items = np.char.add("i", log.values.astype(str))
    return make_table(users, items, log.timestamps, log.ratings)


def generate(
    out_dir: str | os.PathLike,
    *,
    n_users: int = 1000,
    n_items: int = 500,
    avg_length: float = 30,
    seed: int = 0,
    features: bool = True,
    overwrite: bool = False,
    name: str = "synthetic",
    **options,
) -> Path:
    """Write a synthetic prepared dataset with exactly n_users users and ids 1..n_items (items the
    generator never drew keep popularity 0), plus a `category` feature (the item's latent cluster)."""
    cfg = SyntheticConfig(n_users=n_users, n_items=n_items, avg_length=avg_length, seed=seed, **options)
    check_prepared_out(out_dir, overwrite)  # before the simulation, which may take a while
    log = simulate(cfg)
    sequences = np.split(log.values, log.offsets[1:-1])
    feats = None
    if features:
        feats = {"category": ([[int(c) + 1] for c in log.cluster], cfg.clusters() + 1)}
    return write_prepared(
        out_dir,
        sequences,
        [f"u{u}" for u in range(n_users)],
        [f"i{i}" for i in range(1, n_items + 1)],
        name=name,
        source={"format": "synthetic", "files": []},
        params={"generator": "glintru.data.synthetic", **asdict(cfg), "n_clusters": cfg.clusters()},
        features=feats,
        overwrite=overwrite,
    )


@dataclass(frozen=True)
class Shape:
    """A real dataset's Table 1 counts and length distribution."""

    n_users: int
    n_items: int
    n_interactions: int
    min_length: int
    max_length: int | None  # the longest sequence, where known
    tail: float  # Lomax shape fitted to the length distribution

    def config(self, seed: int = 0, scale: float = 1.0) -> SyntheticConfig:
        """The generator's config for this shape; `scale` < 1 shrinks users, items and interactions
        alike (mean length and its distribution kept) for quick runs."""
        if not 0 < scale <= 1:
            raise ValueError(f"scale must lie in (0, 1], got {scale}")
        users = max(1, int(round(self.n_users * scale)))
        total = max(users * self.min_length, int(round(self.n_interactions * scale)))
        return SyntheticConfig(
            n_users=users,
            n_items=max(2, int(round(self.n_items * scale))),
            avg_length=total / users,
            seed=seed,
            min_length=self.min_length,
            length_tail=self.tail,
            max_seq_length=self.max_length,
            n_interactions=total,
        )


# Counts from the paper's Table 1 less the padding id it counts (ML-1M: all ratings, 20 per user at
# least; Amazon: 5-core). Length tails were fitted to the real ML-1M and Beauty logs; Video Games, whose
# length distribution we have not seen, borrows Beauty's tail (same source, same 5-core filter, close
# mean length) and has no cap.
SHAPES: dict[str, Shape] = {
    "ml-1m": Shape(6040, 3706, 1_000_209, min_length=20, max_length=2314, tail=3.0),
    "beauty": Shape(22363, 12101, 198_502, min_length=5, max_length=204, tail=2.3),
    "video-games": Shape(24303, 10672, 231_780, min_length=5, max_length=None, tail=2.3),
}


def generate_like(
    out_dir: str | os.PathLike, like: str, *, seed: int = 0, scale: float = 1.0, overwrite: bool = False
) -> Path:
    """A synthetic dataset shaped like a real one in SHAPES (its counts and length distribution)."""
    if like not in SHAPES:
        raise ValueError(f"unknown shape {like!r}; choose one of {', '.join(SHAPES)}")
    cfg = SHAPES[like].config(seed=seed, scale=scale)
    name = f"synthetic-{like}" if scale == 1 else f"synthetic-{like}-x{scale:g}"
    options = {k: v for k, v in asdict(cfg).items() if k not in ("n_users", "n_items", "avg_length", "seed")}
    return generate(
        out_dir,
        n_users=cfg.n_users,
        n_items=cfg.n_items,
        avg_length=cfg.avg_length,
        seed=seed,
        overwrite=overwrite,
        name=name,
        **options,
    )
