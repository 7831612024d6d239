"""Ranking metrics (Recall/Hit, MRR, NDCG, Precision @K) under full ranking and under the sampled
protocols uniN and popN, with per-user metric vectors for significance tests.

Conventions, shared by every protocol:

* Leave-one-out: each user has one target, so recall@k equals hit@k and precision@k is hit@k / k.
* Ranks are 0-based and pessimistic: rank = number of competing candidates whose score is >= the
  target's. Ties count against the model, so a model that scores every item alike ranks every
  target last (the worst case), never first.
* A NaN score never helps the model: a NaN target score counts as -inf and a NaN candidate score as
  +inf. An infinite score is an ordinary (extreme) value and ties like any other.
* Full ranking ("full") ranks the target against every real item 1..n_items; the padding id 0 is
  never a candidate. With `exclude_history=True` the items of the user's history (every item before
  the target, not only the last max_length) are removed from the candidates, except the target itself.
* Sampled ranking ("uniN", "popN") follows RecBole's evaluation of sequential models: N negatives are
  drawn with replacement (uniformly over 1..n_items, or in proportion to item popularity), a draw
  equal to the target is redrawn (nothing else is excluded, not even the user's history: sequential
  models run with RecBole's RepeatableSampler, whose only used id is the target), and a negative
  drawn more than once counts once.
* Popularity has two bases. "popN" (the default basis) counts every interaction of each item over
  the whole prepared data, every split included (`PreparedDataset.popularity`): the plain count,
  defined by the data alone, and the basis of every popN result this platform produced before the
  second basis existed. "popN-recbole" counts what RecBole 1.2.1 counts: its sampler builds the
  popularity table from the target item of every row of the dataset after the sequential prefix
  augmentation (sequential_dataset.py data_augmentation: one row per interaction except each user's
  first, since a first interaction has no history; sampler.py RepeatableSampler._get_candidates_list
  and AbstractSampler._build_alias_table with alpha 1). Each user's first interaction is therefore
  not counted, and an item seen only as first interactions is never drawn. Choose it to compare with
  numbers produced by RecBole (the GLINT-RU paper's pop100 tables); the two bases give different
  negatives, so never mix them in one comparison. The mode string carries the basis, so it travels
  through every `eval_mode` setting and lands in the run's results as written.
* Negatives come from a numpy Generator seeded by (seed, split) and are drawn for all users at once,
  so they do not depend on the model, the batch size or the subset of users evaluated: two models
  evaluated with the same seed face exactly the same candidates.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from glintru.data.batches import split_inputs
from glintru.data.dataset import PreparedDataset

METRICS = ("recall", "hit", "mrr", "ndcg", "precision")
DEFAULT_KS = (5, 10, 20)
SPLITS = ("valid", "test")
_SPLIT_KEY = {"valid": 0, "test": 1}  # keeps the validation and test negatives independent
_MODE_RE = re.compile(r"(full)|(uni|pop)([1-9][0-9]*)(-recbole)?")
_MODE_FORMS = (
    "'full', 'uniN', 'popN' or 'popN-recbole' with N a positive integer (e.g. 'uni100', 'pop100', 'pop100-recbole')"
)
POPULARITY_BASES = ("all", "recbole")
# The one split every prepared dataset gets (split_targets, batches.split_inputs): per user in time
# order, the last item is the test target, the one before it the validation target, the rest train.
SPLIT = "leave-one-out"


# ---------------------------------------------------------------------------------------------
# Protocol parsing


@dataclass(frozen=True)
class EvalMode:
    """A parsed protocol: kind is "full", "uni" or "pop"; n is the number of negatives (0 for full);
    basis is the popularity basis of "pop" ("all" or "recbole", see the module doc)."""

    kind: str
    n: int = 0
    basis: str = "all"

    @property
    def sampled(self) -> bool:
        return self.kind != "full"

    def __str__(self) -> str:
        if self.kind == "full":
            return "full"
        return f"{self.kind}{self.n}" + ("-recbole" if self.basis == "recbole" else "")


def parse_mode(mode: str | EvalMode) -> EvalMode:
    """'full' | 'uniN' | 'popN' | 'popN-recbole' (lowercase, N >= 1, no spaces); anything else is a
    ValueError."""
    if isinstance(mode, EvalMode):
        return mode
    m = _MODE_RE.fullmatch(mode) if isinstance(mode, str) else None
    if m is None:
        raise ValueError(f"unknown evaluation mode {mode!r}; expected {_MODE_FORMS}")
    if m.group(1):
        return EvalMode("full")
    if m.group(4) and m.group(2) == "uni":
        raise ValueError(
            f"unknown evaluation mode {mode!r}: '-recbole' names a popularity basis and applies to popN "
            f"only (RecBole's uniform negatives are uniN's); expected {_MODE_FORMS}"
        )
    return EvalMode(m.group(2), int(m.group(3)), "recbole" if m.group(4) else "all")


def check_mode_fits(mode: str | EvalMode, n_items: int) -> None:
    """ValueError where a sampled protocol draws as many negatives as the dataset has items: the
    draws then cover (nearly) every item, which is full ranking at several times its memory."""
    m = parse_mode(mode)
    if m.sampled and m.n >= n_items:
        raise ValueError(
            f"eval_mode {m} draws {m.n} negatives, but the dataset has only {n_items} items: that ranks "
            f"(nearly) every item, which full ranking does exactly; use eval_mode full, or fewer than "
            f"{n_items} negatives"
        )


def protocol(mode: str | EvalMode, seed: int) -> dict[str, Any]:
    """How a result was evaluated, as runs, evaluations and search trials record it beside the
    dataset fingerprint: the split, the protocol and the seed of its negatives (None under full
    ranking, which draws none). Results compare only where all of it agrees."""
    m = parse_mode(mode)
    return {"split": SPLIT, "eval_mode": str(m), "negative_seed": int(seed) if m.sampled else None}


def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0]
    if not ks or bad:
        raise ValueError(f"ks must be positive integers, e.g. (5, 10, 20); got {ks!r}")
    return tuple(sorted({int(k) for k in ks}))


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")


# ---------------------------------------------------------------------------------------------
# Metric core (pure functions on tensors)


def _beats(target_scores: torch.Tensor, candidate_scores: torch.Tensor) -> torch.Tensor:
    """[B, C] bool: candidate score >= target score, with NaN pessimistic on both sides."""
    t = target_scores.float().nan_to_num(nan=-math.inf, posinf=math.inf, neginf=-math.inf)
    # not(c < t) is c >= t for numbers and True for a NaN candidate, without copying the scores.
    return (candidate_scores.float() < t.unsqueeze(-1)).logical_not_()


def _count(beats: torch.Tensor) -> torch.Tensor:
    # Summing bytes into int32 is about twice as fast on CPU as summing bools into int64.
    return beats.view(torch.uint8).sum(dim=1, dtype=torch.int32).long()


def pessimistic_rank(
    target_scores: torch.Tensor, candidate_scores: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """0-based rank [B] of each target among its competitors: the count of competitors scoring >= it.

    target_scores [B]; candidate_scores [B, C] excludes the target; mask [B, C] (optional) is True
    where a column is a real competitor, so that removed candidates never count whatever their score.
    """
    if candidate_scores.dim() != 2 or target_scores.shape != candidate_scores.shape[:1]:
        raise ValueError(
            f"expected target_scores [B] and candidate_scores [B, C]; got "
            f"{tuple(target_scores.shape)} and {tuple(candidate_scores.shape)}"
        )
    beats = _beats(target_scores, candidate_scores)
    if mask is not None:
        beats &= mask.to(torch.bool)
    return _count(beats)


def full_ranks(scores: torch.Tensor, targets: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Ranks [B] against all real items: scores [B, n_items + 1] (column 0 = padding, ignored).

    `exclude` [B, n_items + 1] (optional) is True for items removed from a user's candidates; the
    target itself is never removed.
    """
    targets = targets.long().view(-1, 1)
    beats = _beats(scores.gather(1, targets).squeeze(1), scores)
    if exclude is not None:
        beats &= ~exclude.to(torch.bool)
    beats[:, 0] = False
    beats.scatter_(1, targets, False)
    return _count(beats)


def first_occurrence(ids: torch.Tensor) -> torch.Tensor:
    """[B, N] bool, True at the first occurrence of each id in its row (duplicates collapse)."""
    if ids.shape[-1] == 0:
        return torch.ones_like(ids, dtype=torch.bool)
    sorted_ids, order = ids.sort(dim=1, stable=True)
    first = torch.ones_like(sorted_ids, dtype=torch.bool)
    first[:, 1:] = sorted_ids[:, 1:] != sorted_ids[:, :-1]
    return torch.empty_like(first).scatter_(1, order, first)


def sampled_ranks(scores: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Ranks [B] from scores [B, 1 + N] (column 0: the target, then the negatives [B, N] in order).

    A negative drawn several times counts once. Negatives are assumed to differ from the target
    (`sample_negatives` guarantees it).
    """
    if scores.shape[1] != negatives.shape[1] + 1:
        raise ValueError(f"scores {tuple(scores.shape)} must have 1 + N columns for negatives {tuple(negatives.shape)}")
    return pessimistic_rank(scores[:, 0], scores[:, 1:], first_occurrence(negatives))


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = DEFAULT_KS) -> dict[str, torch.Tensor]:
    """Per-user metric vectors (float64) from 0-based ranks, named `name@k`, metric-major order.

    hit@k = recall@k = [rank < k]; mrr@k = 1/(rank+1); ndcg@k = 1/log2(rank+2) (the ideal DCG of a
    single relevant item is 1); precision@k = hit@k / k; the last three are 0 when rank >= k.
    """
    ks = _check_ks(ks)
    r = ranks.detach().to("cpu", torch.float64)
    hits = {k: (r < k).to(torch.float64) for k in ks}
    rr = 1.0 / (r + 1.0)
    dg = 1.0 / torch.log2(r + 2.0)
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        out[f"recall@{k}"] = hits[k]
    for k in ks:
        out[f"hit@{k}"] = hits[k].clone()
    for k in ks:
        out[f"mrr@{k}"] = rr * hits[k]
    for k in ks:
        out[f"ndcg@{k}"] = dg * hits[k]
    for k in ks:
        out[f"precision@{k}"] = hits[k] / k
    return out


# ---------------------------------------------------------------------------------------------
# Negative sampling


def split_targets(ds: PreparedDataset, split: str) -> np.ndarray:
    """Target item of every user: s[n-2] for "valid", s[n-1] for "test" (int64 [n_users])."""
    _check_split(split)
    ends = ds.offsets[1:].astype(np.int64)
    return ds.values[ends - (2 if split == "valid" else 1)].astype(np.int64)


def popularity(ds: PreparedDataset, basis: str = "all") -> np.ndarray:
    """Item popularity [n_items + 1] (int64, 0 at the padding id) on a basis of the module doc:
    "all" counts every interaction, "recbole" every interaction but each user's first."""
    if basis not in POPULARITY_BASES:
        raise ValueError(f"popularity basis must be one of {POPULARITY_BASES}; got {basis!r}")
    pop = np.asarray(ds.popularity, dtype=np.int64).copy()
    if basis == "recbole":
        starts = ds.offsets[:-1].astype(np.int64)[ds.lengths > 0]
        pop -= np.bincount(ds.values[starts].astype(np.int64), minlength=pop.size)
    return pop


def sample_negatives(ds: PreparedDataset, split: str, mode: str | EvalMode, seed: int = 0) -> np.ndarray:
    """Negatives [n_users, N] (int32 item ids) for a sampled protocol, the same for every model.

    Drawn with replacement from 1..n_items, uniformly ("uniN") or in proportion to
    `popularity(ds, basis)` ("popN": every interaction; "popN-recbole": all but each user's first);
    a draw equal to the user's target is redrawn; duplicates are kept here and collapse at ranking
    time. Deterministic in (seed, split).
    """
    m = parse_mode(mode)
    if not m.sampled:
        raise ValueError("full ranking uses every item as a candidate; only 'uniN'/'popN' sample negatives")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    targets = split_targets(ds, split)
    n_items = ds.n_items
    rng = np.random.default_rng([int(seed), _SPLIT_KEY[split]])

    if m.kind == "uni":
        if n_items < 2:
            raise ValueError(f"{m} needs at least 2 items to draw a negative; the dataset has {n_items}")

        def draw(size):
            return rng.integers(1, n_items + 1, size=size, dtype=np.int64)

    else:
        pop = popularity(ds, m.basis)[1:]
        if (pop < 0).any():
            raise ValueError("item popularity must be non-negative")
        cum = np.cumsum(pop)
        total = int(cum[-1]) if cum.size else 0
        # A target holding all the popularity mass could never be avoided by redrawing.
        stuck = total - pop[targets - 1] <= 0
        if stuck.any():
            raise ValueError(
                f"{m}: {int(stuck.sum())} users' target is the only item with non-zero popularity; "
                "no negative can be drawn for them"
            )

        def draw(size):
            # Integer inverse-CDF: exact, and items with popularity 0 are never drawn.
            return np.searchsorted(cum, rng.integers(0, total, size=size, dtype=np.int64), side="right") + 1

    neg = draw((targets.size, m.n))
    flat = neg.reshape(-1)
    owner = np.repeat(targets, m.n)
    redo = np.flatnonzero(flat == owner)
    while redo.size:
        flat[redo] = draw(redo.size)
        redo = redo[flat[redo] == owner[redo]]
    return neg.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Evaluation of a model


@dataclass
class EvalResult:
    metrics: dict[str, float]  # means over users, e.g. {"ndcg@10": 0.41, ...}
    per_user: pd.DataFrame  # column user (int32) + one float64 column per metric, sorted by user


class _Ranker(Protocol):
    """What `evaluate` reads from a model: every SequentialRecommender and PopularityRanker has it."""

    config: Any  # a model config with `max_length`
    training: bool

    def __call__(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...
    def item_embeddings(self) -> torch.Tensor: ...
    def scores(self, item_seq: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor: ...
    def eval(self) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...


def _unwrap(model: nn.Module) -> _Ranker:
    # DDP hides the recommender (and its config) behind `.module`.
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return cast(_Ranker, model)


def _history_mask(ds: PreparedDataset, split: str, users: np.ndarray, n_cols: int) -> torch.Tensor:
    """[B, n_cols] bool: True at every item a user saw before the split's target."""
    starts = ds.offsets[users].astype(np.int64)
    counts = ds.lengths[users] - (2 if split == "valid" else 1)
    total = int(counts.sum())
    rows = np.repeat(np.arange(users.size), counts)
    pos = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    mask = torch.zeros(users.size, n_cols, dtype=torch.bool)
    mask[torch.from_numpy(rows), torch.from_numpy(ds.values[pos].astype(np.int64))] = True
    return mask


def evaluate(
    model: nn.Module,
    ds: PreparedDataset,
    split: str,
    mode: str = "full",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 2048,
    device: str | torch.device = "cpu",
    seed: int = 0,
    users: Sequence[int] | np.ndarray | None = None,
    progress: bool = False,
    exclude_history: bool = False,
) -> EvalResult:
    """Rank each user's validation or test target and average the metrics.

    The model must already live on `device`; it runs in eval mode without gradients and gets its
    training mode back afterwards. Inputs are truncated to `model.config.max_length`. `users`
    restricts the evaluation to those user ids (the candidates of a user do not depend on it).
    `exclude_history` (full mode only) removes the user's earlier items from the candidates.
    """
    net = _unwrap(model)
    _check_split(split)
    m = parse_mode(mode)
    ks = _check_ks(ks)
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    if exclude_history and m.sampled:
        raise ValueError(
            f"exclude_history applies to full ranking only; {m} follows RecBole and excludes only the target"
        )
    n_items = ds.n_items
    model_items = getattr(net, "n_items", n_items)
    if model_items != n_items:
        raise ValueError(f"the model was built for {model_items} items but the dataset has {n_items}")

    if users is None:
        sel = np.arange(ds.n_users, dtype=np.int64)
    else:
        sel = np.unique(np.asarray(users, dtype=np.int64))
        if sel.size == 0 or sel[0] < 0 or sel[-1] >= ds.n_users:
            raise ValueError(f"users must be a non-empty set of ids in 0..{ds.n_users - 1}")

    batch = split_inputs(ds, split, int(net.config.max_length))
    row_of = np.empty(ds.n_users, dtype=np.int64)
    row_of[batch.users.numpy()] = np.arange(len(batch))
    rows = torch.from_numpy(row_of[sel])
    negatives = torch.from_numpy(sample_negatives(ds, split, m, seed)[sel]) if m.sampled else None
    # Users of similar history length share a chunk, so each chunk is padded only to about its
    # own length (real logs are heavy-tailed: one long history would pad a whole chunk to L).
    order = torch.from_numpy(np.argsort(batch.lengths[rows].numpy(), kind="stable"))

    was_training = net.training
    net.eval()
    ranks: list[torch.Tensor] = []
    nan_targets = 0
    try:
        with torch.no_grad():
            emb = net.item_embeddings() if m.sampled else None
            starts = range(0, sel.size, batch_size)
            for start in tqdm(starts, desc=f"eval {split} {m}", disable=not progress, leave=False):
                pos = order[start : start + batch_size]  # positions in `sel`
                idx = rows[pos]
                lengths = batch.lengths[idx]
                # Right padding: columns past the longest input of this chunk are all padding.
                item_seq = batch.item_seq[idx, : int(lengths.max())].to(device)
                lengths = lengths.to(device)
                targets = batch.targets[idx].to(device)
                if m.sampled:
                    assert negatives is not None and emb is not None  # both set above when m.sampled
                    neg = negatives[pos].to(device=device, dtype=torch.long)
                    cands = torch.cat([targets.unsqueeze(1), neg], dim=1)
                    rep = net(item_seq, lengths)
                    scores = torch.bmm(F.embedding(cands, emb), rep.unsqueeze(-1)).squeeze(-1).float()
                    r = sampled_ranks(scores, neg)
                    target_scores = scores[:, 0]
                else:
                    scores = net.scores(item_seq, lengths).float()
                    excl = None
                    if exclude_history:
                        chunk_users = sel[pos.numpy()]
                        excl = _history_mask(ds, split, chunk_users, scores.shape[1]).to(device)
                    r = full_ranks(scores, targets, excl)
                    target_scores = scores.gather(1, targets.view(-1, 1))
                nan_targets += int(torch.isnan(target_scores).sum())
                ranks.append(r.cpu())
    finally:
        net.train(was_training)

    if nan_targets:
        warnings.warn(
            f"{nan_targets} of {sel.size} target scores were NaN and were ranked as -inf (misses)",
            RuntimeWarning,
            stacklevel=2,
        )
    sorted_ranks = torch.cat(ranks)
    user_ranks = torch.empty_like(sorted_ranks)
    user_ranks[order] = sorted_ranks  # back to the order of `sel`
    values = metrics_from_ranks(user_ranks, ks)
    per_user = pd.DataFrame({"user": sel.astype(np.int32), **{k: v.numpy() for k, v in values.items()}})
    return EvalResult(metrics=mean_metrics(per_user), per_user=per_user)


# ---------------------------------------------------------------------------------------------
# Per-user vectors on disk


def mean_metrics(df: pd.DataFrame) -> dict[str, float]:
    """Mean of every metric column (all columns but `user`), as plain floats, in column order."""
    return {c: float(df[c].mean()) for c in df.columns if c != "user"}


def write_per_user(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write per-user metrics to Parquet atomically (temporary sibling, then rename)."""
    from glintru.outputs import file_mode

    if "user" not in df.columns:
        raise ValueError(f"per-user metrics need a 'user' column; got columns {list(df.columns)}")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df.astype({"user": np.int32}).reset_index(drop=True), preserve_index=False)
    mode = file_mode(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
