"""Preparation: filters, k-core, ordering, duplicates, id remapping, atomic output and provenance."""

from __future__ import annotations

import gzip
import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from glintru.data.dataset import load_dataset
from glintru.data.prepare import format_stats, prepare, prepare_table
from glintru.data.sources import SourceFormatError, make_table


def table(rows):
    """rows: (user, item, timestamp[, rating]) tuples in file order."""
    users, items, ts = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    ratings = [r[3] for r in rows] if all(len(r) > 3 for r in rows) else None
    return make_table(users, items, np.asarray(ts, dtype=np.int64), ratings)


def original_sequences(p):
    """{original user: [original items in prepared order]}."""
    return {p.user_ids[u]: [p.item_ids[i - 1] for i in s] for u, s in enumerate(p.sequences)}


# ---------------------------------------------------------------------------- prepare_table


def test_chronological_order_with_stable_tie_break():
    rows = [("a", "x", 5), ("a", "y", 1), ("a", "z", 5), ("a", "w", 3), ("b", "x", 2), ("b", "y", 2), ("b", "z", 2)]
    p = prepare_table(table(rows))
    # equal timestamps keep their file order (x before z for a; x, y, z for b)
    assert original_sequences(p) == {"a": ["y", "w", "x", "z"], "b": ["x", "y", "z"]}


def test_tie_break_is_deterministic_under_row_shuffles_of_distinct_times():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{rng.integers(50)}", int(t)) for u in range(20) for t in rng.choice(1000, 8, replace=False)]
    base = original_sequences(prepare_table(table(rows), duplicates="keep"))
    for seed in range(3):
        perm = np.random.default_rng(seed).permutation(len(rows))
        assert original_sequences(prepare_table(table([rows[i] for i in perm]), duplicates="keep")) == base


def test_ids_remapped_by_first_appearance_with_zero_free():
    rows = [("u2", "m9", 1), ("u1", "m5", 1), ("u2", "m5", 0), ("u1", "m7", 2), ("u2", "m7", 2), ("u1", "m9", 3)]
    p = prepare_table(table(rows))
    assert p.user_ids == ["u2", "u1"]  # users in order of first appearance in the file
    assert p.item_ids == ["m5", "m9", "m7"]  # items in order of first appearance walking the sorted sequences
    assert [s.tolist() for s in p.sequences] == [[1, 2, 3], [1, 3, 2]]
    assert p.values.dtype == np.int32 and p.values.min() == 1 and p.values.max() == p.n_items


def test_duplicate_policies():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "x", 3), ("a", "z", 4), ("a", "x", 5), ("a", "w", 6)]
    assert original_sequences(prepare_table(table(rows), duplicates="first")) == {"a": ["x", "y", "z", "w"]}
    assert original_sequences(prepare_table(table(rows), duplicates="last")) == {"a": ["y", "z", "x", "w"]}
    assert original_sequences(prepare_table(table(rows), duplicates="keep")) == {"a": ["x", "y", "x", "z", "x", "w"]}
    with pytest.raises(ValueError, match="unknown duplicate policy 'drop'"):
        prepare_table(table(rows), duplicates="drop")


def test_first_is_chronological_not_file_order():
    rows = [("a", "x", 9), ("a", "y", 2), ("a", "x", 1), ("a", "z", 3)]
    assert original_sequences(prepare_table(table(rows), duplicates="first")) == {"a": ["x", "y", "z"]}


def test_min_rating_threshold():
    rows = [("a", "x", 1, 5.0), ("a", "y", 2, 3.0), ("a", "z", 3, 4.0), ("a", "w", 4, 4.5), ("a", "v", 5, 2.0)]
    p = prepare_table(table(rows), min_rating=4)
    assert original_sequences(p) == {"a": ["x", "z", "w"]}
    assert p.counts["after_min_rating"] == 3
    with pytest.raises(ValueError, match="has no ratings"):
        prepare_table(table([(r[0], r[1], r[2]) for r in rows]), min_rating=4)


def test_users_below_three_are_dropped_and_items_follow():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("b", "q", 1), ("b", "x", 2)]
    p = prepare_table(table(rows))
    assert p.user_ids == ["a"] and sorted(p.item_ids) == ["x", "y", "z"]  # q only had user b
    assert p.counts["after_filtering"] == 3


def test_k_core_is_iterated_until_stable():
    # k=2 with the leave-one-out floor of 3 per user. Each removal starves the next: u3 (2 items) goes,
    # then item d (1 user left), then u2 (2 items left), then item c (1 user), then u1 (2 items).
    rows = [
        ("u1", "a", 1),
        ("u1", "b", 2),
        ("u1", "c", 3),
        ("u4", "a", 1),
        ("u4", "b", 2),
        ("u4", "e", 3),
        ("u5", "a", 1),
        ("u5", "b", 2),
        ("u5", "e", 3),
        ("u2", "c", 1),
        ("u2", "d", 2),
        ("u2", "a", 3),
        ("u3", "d", 1),
        ("u3", "f", 2),
    ]
    p = prepare_table(table(rows), k_core=2)
    assert original_sequences(p) == {"u4": ["a", "b", "e"], "u5": ["a", "b", "e"]}
    assert p.counts["filter_rounds"] == 5
    # without k-core only the users below 3 go, in a single pass
    q = prepare_table(table(rows))
    assert set(q.user_ids) == {"u1", "u4", "u5", "u2"} and q.counts["filter_rounds"] == 1


def test_k_core_result_satisfies_both_bounds():
    rng = np.random.default_rng(1)
    n = 4000
    users = rng.zipf(1.6, n) % 300
    items = rng.zipf(1.4, n) % 400
    frame = make_table([f"u{u}" for u in users], [f"i{i}" for i in items], np.arange(n))
    for k in (3, 5):
        p = prepare_table(frame, k_core=k, duplicates="keep")
        lengths = np.diff(p.offsets)
        assert lengths.min() >= k
        assert np.bincount(p.values)[1:].min() >= k
        # maximality: the k-core keeps every interaction of the users and items it keeps
        kept = set(p.user_ids)
        keep_items = set(p.item_ids)
        inside = sum(1 for u, i in zip(users, items) if f"u{u}" in kept and f"i{i}" in keep_items)
        assert inside == p.values.size


def test_nothing_left_is_an_error():
    with pytest.raises(ValueError, match="no interactions left after filtering"):
        prepare_table(table([("a", "x", 1), ("a", "y", 2)]))


def test_accepts_arrow_tables():
    frame = table([("a", "x", 1), ("a", "y", 2), ("a", "z", 3)])
    p = prepare_table(pa.Table.from_pandas(frame, preserve_index=False))
    assert original_sequences(p) == {"a": ["x", "y", "z"]}


# ---------------------------------------------------------------------------- prepare (files in, dataset out)

ML_RATINGS = "".join(
    f"{u}::{m}::{r}::{t}\n"
    for u, m, r, t in [
        (1, 1193, 5, 978300760),
        (1, 661, 3, 978302109),
        (1, 914, 3, 978301968),
        (1, 3408, 4, 978300275),
        (2, 1357, 5, 978298709),
        (2, 3068, 4, 978299000),
        (2, 1193, 2, 978299000),
        (2, 914, 1, 978300000),
        (3, 3421, 4, 978297018),
        (3, 1641, 2, 978298000),
    ]
)
ML_MOVIES = (
    "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
    "914::My Fair Lady (1964)::Musical|Romance\n3408::Erin Brockovich (2000)::Drama\n1357::Shine (1996)::Drama|Romance\n"
    "3068::Verdict, The (1982)::Drama\n3421::Animal House (1978)::Comedy\n"
)


def test_prepare_movielens_directory_with_features_and_meta(tmp_path):
    src = tmp_path / "ml-1m"
    src.mkdir()
    (src / "ratings.dat").write_text(ML_RATINGS)
    (src / "movies.dat").write_bytes(ML_MOVIES.encode("latin-1"))
    out = prepare("movielens", src, tmp_path / "out")
    ds = load_dataset(out)
    assert ds.name == "ml-1m"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 6, 8)  # user 3 has 2 ratings and is dropped
    assert ds.lengths.min() >= 3 and 0 not in ds.values.tolist()
    orig = ds.items.column("original_id").to_pylist()
    assert [orig[i] for i in ds.sequence(0)] == ["3408", "1193", "914", "661"]
    assert [orig[i] for i in ds.sequence(1)] == ["1357", "3068", "1193", "914"]  # tie at 978299000: file order
    assert ds.sequence(0).tolist() == [1, 2, 3, 4] and ds.sequence(1).tolist() == [5, 6, 2, 3]
    assert ds.popularity.tolist() == [0, 1, 2, 2, 1, 1, 1]
    meta = ds.meta
    files = {f["name"]: f for f in meta["source"]["files"]}
    assert files["ratings.dat"]["sha256"] == hashlib.sha256(ML_RATINGS.encode()).hexdigest()
    assert files["movies.dat"]["sha256"] == hashlib.sha256(ML_MOVIES.encode("latin-1")).hexdigest()
    assert meta["source"]["format"] == "movielens"
    assert meta["params"]["duplicates"] == "first" and meta["params"]["k_core"] is None
    assert meta["params"]["min_rating"] is None and "tie_break" in meta["params"]
    assert meta["stats"] == {
        "users": 2,
        "items": 6,
        "interactions": 8,
        "avg_length": 4.0,
        "sparsity": round(1 - 8 / 12, 6),
    }
    assert set(meta["features"]) == {"genre", "year", "title"}
    feats = ds.item_features()
    genre, vocab = feats["genre"]
    assert vocab == 1 + len({"Drama", "Animation", "Children's", "Musical", "Romance"})  # Comedy item was dropped
    assert genre[0].tolist() == [0] * genre.shape[1]  # padding row has no tokens
    assert genre.max() == vocab - 1 and genre.min() == 0
    years, _ = feats["year"]
    assert (years[1:, 0] > 0).all()


def test_prepare_amazon_5core_counts_unchanged(tmp_path):
    # a tiny 5-core file: 6 users x 5 items, every user and item has >= 5 reviews
    rng = np.random.default_rng(0)
    recs = []
    for u in range(6):
        for i in rng.permutation(5):
            recs.append(
                {
                    "reviewerID": f"A{u}XYZ",
                    "asin": f"B00{i}",
                    "overall": float(rng.integers(1, 6)),
                    "unixReviewTime": int(1_300_000_000 + rng.integers(0, 10**7)),
                    "reviewText": "ok",
                }
            )
    p = tmp_path / "reviews_Beauty_5.json.gz"
    p.write_bytes(gzip.compress("\n".join(json.dumps(r) for r in recs).encode()))
    a = load_dataset(prepare("amazon-json", p, tmp_path / "a"))
    b = load_dataset(prepare("amazon-json", p, tmp_path / "b", k_core=5))
    assert a.meta["stats"]["interactions"] == b.meta["stats"]["interactions"] == 30
    assert (a.n_users, a.n_items) == (b.n_users, b.n_items) == (6, 5)
    assert a.name == "reviews_Beauty_5"
    assert b.meta["params"]["k_core"] == 5


def test_prepare_amazon_with_metadata(tmp_path):
    recs = [
        {"reviewerID": "U1", "asin": a, "overall": 5.0, "unixReviewTime": t} for a, t in (("X", 1), ("Y", 2), ("Z", 3))
    ]
    p = tmp_path / "r.json"
    p.write_text("\n".join(json.dumps(r) for r in recs))
    meta = tmp_path / "meta.json.gz"
    meta.write_bytes(
        gzip.compress(
            b"{'asin': 'X', 'categories': [['Beauty', 'Nails']], 'brand': 'OPI'}\n"
            b"{'asin': 'Q', 'categories': [['Toys']]}\n"
            b"{'asin': 'Z', 'categories': [['Beauty']]}\n"
        )
    )
    ds = load_dataset(prepare("amazon-json", p, tmp_path / "out", items_path=meta))
    assert ds.meta["features"] == {"category": 3, "brand": 2}  # {Beauty, Nails} + 0; {OPI} + 0
    cat, _ = ds.item_features()["category"]
    assert cat[1].tolist() == [1, 2] and cat[2].tolist() == [0, 0] and cat[3].tolist() == [1, 0]
    assert ds.meta["params"]["feature_coverage"]["category"] == {"vocab": 3, "items": 2}


def test_failure_leaves_nothing_behind(tmp_path):
    bad = tmp_path / "ratings.dat"
    bad.write_text("1::2::3::4\n1::3::3::5\n1;4;3;6\n")
    out = tmp_path / "data" / "ml"
    with pytest.raises(SourceFormatError, match=r"line 3"):
        prepare("movielens", bad, out)
    assert not out.exists()
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []
    # too few interactions after filtering: also nothing written
    good = tmp_path / "small.dat"
    good.write_text("1::2::3::4\n1::3::3::5\n")
    with pytest.raises(ValueError, match="no interactions left"):
        prepare("movielens", good, out)
    assert not out.exists() and not list(tmp_path.glob("**/.ml.tmp-*"))


def test_existing_output_needs_overwrite(tmp_path):
    src = tmp_path / "ratings.dat"
    src.write_text(ML_RATINGS)
    out = prepare("movielens", src, tmp_path / "out")
    first = (out / "meta.json").read_text()
    with pytest.raises(FileExistsError, match="already exists"):
        prepare("movielens", src, out, k_core=2)
    assert (out / "meta.json").read_text() == first
    prepare("movielens", src, out, overwrite=True, min_rating=3, name="ml-test")
    meta = load_dataset(out).meta
    assert meta["name"] == "ml-test" and meta["params"]["min_rating"] == 3


def _ml_folder(tmp_path):
    """A MovieLens download folder: ratings.dat and a user's notes beside it."""
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "ratings.dat").write_text(ML_RATINGS)
    (folder / "notes.txt").write_text("mine")
    return folder


@pytest.mark.parametrize(
    "out, message",
    [
        ("ml", "holds this command's input (--input "),
        (".", "holds this command's input (--input "),
        ("ml/ratings.dat", "is this command's input (--input "),
        ("other", "holds files glintru did not write (notes.txt), not a prepared dataset"),
        ("to-data", "is a symbolic link to "),
    ],
)
def test_prepare_overwrite_replaces_only_a_prepared_dataset(tmp_path, snapshot, capsys, out, message):
    from glintru.cli import main

    folder = _ml_folder(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    prepare("movielens", folder, tmp_path / "data")
    (tmp_path / "to-data").symlink_to(tmp_path / "data")
    before = snapshot(tmp_path)
    target = tmp_path / out
    argv = ["prepare", "--format", "movielens", "--input", str(folder / "ratings.dat"), "--out", str(target)]
    assert main([*argv, "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {target}") and message in err and len(err.splitlines()) == 1, err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "written-before-markers"])
def test_prepare_overwrite_replaces_a_prepared_dataset(tmp_path, marked):
    from glintru.outputs import MARKER_FILE

    folder = _ml_folder(tmp_path)
    out = prepare("movielens", folder, tmp_path / "data")
    if not marked:
        (out / MARKER_FILE).unlink()
    prepare("movielens", folder, out, overwrite=True, min_rating=3)
    assert load_dataset(out).meta["params"]["min_rating"] == 3 and (out / MARKER_FILE).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "ml"]  # no temporary, old or lock file left
    if not marked:
        (out / MARKER_FILE).unlink()
        (out / "mine.txt").write_text("mine")
        with pytest.raises(ValueError, match="holds a prepared dataset .*, but also files glintru did not write"):
            prepare("movielens", folder, out, overwrite=True)
        assert (out / "mine.txt").read_text() == "mine"


def test_prepare_and_synthetic_are_refused_while_another_command_writes_the_output(tmp_path, holder, snapshot):
    import platform

    from glintru.cli import main
    from glintru.data.synthetic import generate

    folder = _ml_folder(tmp_path)
    out = prepare("movielens", folder, tmp_path / "data")
    proc = holder(out)
    before = snapshot(tmp_path)
    held = f"{out} is being written by another command: pid {proc.pid} on host {platform.node()}"
    with pytest.raises(ValueError, match=held):
        prepare("movielens", folder, out, overwrite=True)
    with pytest.raises(ValueError, match=held):
        generate(out, n_users=20, n_items=10, overwrite=True)
    assert main(["synthetic", "--users", "20", "--items", "10", "--overwrite", "--out", str(out)]) == 2
    assert snapshot(tmp_path) == before


def test_prepare_other_formats_end_to_end(tmp_path):
    (tmp_path / "x.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        + "".join(f"u{u}\ti{(u + k) % 7}\t{k}\n" for u in range(4) for k in range(5))
    )
    (tmp_path / "x.txt").write_text(
        "".join(f"u{u} " + " ".join(f"i{(u + k) % 7}" for k in range(5)) + "\n" for u in range(4))
    )
    (tmp_path / "x.csv").write_text(
        "uid,iid,t\n" + "".join(f"u{u},i{(u + k) % 7},{k}\n" for u in range(4) for k in range(5))
    )
    results = []
    for fmt, name, kw in (
        ("recbole", "x.inter", {}),
        ("seq-txt", "x.txt", {}),
        ("csv", "x.csv", {"columns": "user=uid,item=iid,time=t"}),
    ):
        ds = load_dataset(prepare(fmt, tmp_path / name, tmp_path / f"out-{fmt}", **kw))
        orig = ds.items.column("original_id").to_pylist()
        results.append([[orig[i] for i in ds.sequence(u)] for u in range(ds.n_users)])
        assert ds.meta["source"]["format"] == fmt and ds.meta["stats"]["interactions"] == 20
    assert results[0] == results[1] == results[2]


def test_format_stats(tmp_path):
    src = tmp_path / "ratings.dat"
    src.write_text(ML_RATINGS)
    meta = load_dataset(prepare("movielens", src, tmp_path / "out", name="tiny")).meta
    text = format_stats(meta)
    assert "name          tiny" in text
    assert "users         2" in text and "items         6" in text and "interactions  8" in text
    assert "avg length    4.00" in text and "sparsity      33.3333%" in text
    assert f"movielens: ratings.dat (sha256 {hashlib.sha256(ML_RATINGS.encode()).hexdigest()[:12]})" in text
    assert "duplicates=first" in text


# ---------------------------------------------------------------------------- ML-1M-shaped file


def write_ml1m_shaped(path, seed: int = 0) -> None:
    """ratings.dat with ML-1M's shape: 6,040 users (>= 20 ratings each), 3,706 movies out of ids
    1..3952, 1,000,209 ratings, no repeated (user, movie) pair, many equal timestamps."""
    rng = np.random.default_rng(seed)
    n_users, n_items, n = 6040, 3706, 1_000_209
    lengths = 20 + rng.multinomial(n - 20 * n_users, rng.dirichlet(np.ones(n_users)))
    movies = np.sort(rng.choice(np.arange(1, 3953), n_items, replace=False))
    pos = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    item = movies[(np.repeat(rng.integers(0, n_items, n_users), lengths) + pos) % n_items]
    cols = [
        np.repeat(np.arange(1, n_users + 1), lengths),
        item,
        rng.integers(1, 6, n),
        956_703_932 + rng.integers(0, 10**6, n),
    ]
    line = pc.binary_join_element_wise(*[pc.cast(pa.array(c), pa.string()) for c in cols], "::")
    pacsv.write_csv(
        pa.table({"l": line}), path, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none")
    )
    assert np.unique(item).size == n_items and lengths.max() <= n_items


@pytest.mark.slow
def test_ml1m_shaped_ratings_give_exact_counts(tmp_path):
    src = tmp_path / "ml-1m"
    src.mkdir()
    write_ml1m_shaped(src / "ratings.dat")
    out = prepare("movielens", src, tmp_path / "out")
    ds = load_dataset(out)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (6040, 3706, 1_000_209)
    assert ds.meta["stats"]["avg_length"] == pytest.approx(165.5975, abs=1e-4)
    assert ds.lengths.min() >= 20


# ---------------------------------------------------------------------------- content fingerprint


def test_fingerprint_is_stable_across_prepares_and_changes_with_one_interaction(tmp_path):
    from glintru.data.fingerprint import table_fingerprint

    (tmp_path / "ratings.dat").write_text(ML_RATINGS)
    first = load_dataset(prepare("movielens", tmp_path / "ratings.dat", tmp_path / "a"))
    again = load_dataset(prepare("movielens", tmp_path / "ratings.dat", tmp_path / "b", name="another-name"))
    recorded = json.loads((tmp_path / "a" / "meta.json").read_text())["fingerprint"]
    # the tables' contents alone: the same log gives the same fingerprint whatever the name or path
    assert first.fingerprint == again.fingerprint == recorded == table_fingerprint(first.sequences, first.items)
    assert len(recorded) == 64 and int(recorded, 16) >= 0
    # one interaction later in time reorders user 1's sequence
    (tmp_path / "ratings.dat").write_text(ML_RATINGS.replace("1::661::3::978302109", "1::661::3::978300000"))
    moved = load_dataset(prepare("movielens", tmp_path / "ratings.dat", tmp_path / "c"))
    assert moved.meta["stats"] == first.meta["stats"] and moved.fingerprint != first.fingerprint


def test_synthetic_data_is_fingerprinted_on_the_same_path(tmp_path):
    from glintru.data.fingerprint import table_fingerprint
    from glintru.data.synthetic import generate

    a = load_dataset(generate(tmp_path / "a", n_users=40, n_items=20, avg_length=6, seed=3))
    b = load_dataset(generate(tmp_path / "b", n_users=40, n_items=20, avg_length=6, seed=3))
    c = load_dataset(generate(tmp_path / "c", n_users=40, n_items=20, avg_length=6, seed=4))
    assert a.meta["fingerprint"] == table_fingerprint(a.sequences, a.items) == b.meta["fingerprint"]
    assert c.meta["fingerprint"] != a.meta["fingerprint"]


def test_a_dataset_prepared_before_fingerprints_gets_one_at_load(tmp_path):
    (tmp_path / "ratings.dat").write_text(ML_RATINGS)
    out = prepare("movielens", tmp_path / "ratings.dat", tmp_path / "ds")
    fingerprint = load_dataset(out).fingerprint
    meta = json.loads((out / "meta.json").read_text())
    del meta["fingerprint"]
    (out / "meta.json").write_text(json.dumps(meta))
    before = (out / "meta.json").read_bytes()
    ds = load_dataset(out)
    assert ds.fingerprint == ds.meta["fingerprint"] == fingerprint
    assert (out / "meta.json").read_bytes() == before  # computed in memory, the user's files untouched


def test_stats_prints_the_fingerprint_and_refuses_tables_changed_since_prepare(tmp_path, capsys):
    import pyarrow.parquet as pq

    from glintru.cli import main

    (tmp_path / "ratings.dat").write_text(ML_RATINGS)
    out = prepare("movielens", tmp_path / "ratings.dat", tmp_path / "ds")
    fingerprint = load_dataset(out).fingerprint
    capsys.readouterr()
    assert main(["stats", str(out)]) == 0
    assert f"fingerprint: {fingerprint}\n" in capsys.readouterr().out
    # two items of user 0 swapped: the same counts and popularity, other sequences
    seqs = pq.read_table(out / "sequences.parquet")
    items = seqs.column("items").to_pylist()
    items[0][0], items[0][1] = items[0][1], items[0][0]
    seqs = seqs.set_column(seqs.column_names.index("items"), "items", pa.array(items, pa.list_(pa.int32())))
    pq.write_table(seqs, out / "sequences.parquet")
    assert main(["stats", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: the tables hash to fingerprint ") and err.count("\n") == 1
    assert f"but meta.json records {fingerprint[:8]}; the dataset was changed since it was prepared" in err
