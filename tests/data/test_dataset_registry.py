"""The dataset registry: consistent entries, the paper's Table 1 counts, count comparison, the
`glintru datasets` listing, and (when the public copy is at hand) the real preprocessed Beauty."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from glintru.cli import main
from glintru.data import registry, sources
from glintru.data.registry import DATASETS, DatasetSpec, Recipe, RemoteFile, compare_counts, get_dataset

REAL_BEAUTY = Path(os.environ.get("GLINTRU_BEAUTY_TXT", "/tmp/real/Beauty.txt"))


def test_registry_is_consistent():
    registry.check_registry()
    assert {s.format for s in DATASETS.values()} <= set(sources.FORMATS)
    for s in DATASETS.values():
        assert s.files[0].url.startswith(("https://", "http://"))
        if any(f.sha256 for f in s.files):
            assert s.checksum_source, f"{s.name}: a checksum needs its public source"
    assert {
        "ml-100k",
        "ml-1m",
        "ml-20m",
        "beauty",
        "video-games",
        "all-beauty-2018",
        "luxury-beauty-2018",
        "video-games-2018",
        "beauty-seq",
    } <= set(DATASETS)


def test_check_registry_rejects_a_bad_entry(monkeypatch):
    bad = DatasetSpec(
        "bad", "bad", "xml", (RemoteFile("https://example.invalid/a.xml"),), input="a.xml", recipe=Recipe(), counts=None
    )
    monkeypatch.setitem(DATASETS, "bad", bad)
    with pytest.raises(ValueError, match="bad: unknown format 'xml'"):
        registry.check_registry()
    monkeypatch.setitem(
        DATASETS,
        "bad",
        DatasetSpec(
            "bad", "bad", "csv", (RemoteFile("https://e.invalid/a.csv"),), input="b.csv", recipe=Recipe(), counts=None
        ),
    )
    with pytest.raises(ValueError, match="input 'b.csv' is not the downloaded file 'a.csv'"):
        registry.check_registry()


def test_paper_table1_counts_and_recipes():
    # GLINT-RU, Table 1 (the paper counts the padding id too: 6,041 / 3,707 for ML-1M)
    table1 = {"ml-1m": (6040, 3706, 1000209), "beauty": (22363, 12101, 198502), "video-games": (24303, 10672, 231780)}
    for name, (users, items, interactions) in table1.items():
        c = get_dataset(name).counts
        assert (c.users, c.items, c.interactions) == (users, items, interactions)
        assert c.source == "GLINT-RU paper, Table 1"
    assert get_dataset("ml-1m").recipe == Recipe()  # every rating kept
    assert get_dataset("beauty").recipe.k_core == 5 and get_dataset("video-games").recipe.k_core == 5
    assert get_dataset("beauty-seq").counts == get_dataset("beauty").counts


def test_published_checksums():
    # tensorflow/datasets url_checksums/movielens.txt; salesforce/ICLRec data/Beauty.txt at a pinned commit
    assert get_dataset("ml-1m").files[0].sha256 == "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
    assert get_dataset("ml-1m").files[0].size == 5917549
    for name in ("beauty", "video-games", "all-beauty-2018", "luxury-beauty-2018", "video-games-2018"):
        assert all(f.sha256 is None for f in get_dataset(name).files)  # nothing published: reported, not checked
    assert "/ICLRec/2890e6c3" in get_dataset("beauty-seq").files[0].url  # pinned, so the checksum holds


def test_other_registries_agree_with_the_dataset_registry():
    from glintru.data.synthetic import SHAPES
    from glintru.models import DATASET_PRESETS

    for name, shape in SHAPES.items():  # synthetic logs shaped like the paper's datasets
        counts = get_dataset(name).counts
        assert (shape.n_users, shape.n_items, shape.n_interactions) == (
            counts.users,
            counts.items,
            counts.interactions,
        ), name
    assert set(DATASET_PRESETS) <= set(DATASETS)  # each model preset names a dataset one can download


def test_compare_counts_messages():
    spec = get_dataset("beauty")
    same = {"users": 22363, "items": 12101, "interactions": 198502, "avg_length": 8.88}
    match, msg = compare_counts(spec, same)
    assert match is True
    assert msg == (
        "beauty: counts match the registered counts (GLINT-RU paper, Table 1): "
        "22,363 users, 12,101 items, 198,502 interactions"
    )
    match, msg = compare_counts(spec, {**same, "users": 22300, "interactions": 198000})
    assert match is False
    assert msg.endswith("users 22,300 (expected 22,363); interactions 198,000 (expected 198,502)")
    assert "items" not in msg.split(":", 2)[2]  # only the numbers that differ
    match, msg = compare_counts(get_dataset("video-games-2018"), same)
    assert match is None and "no published counts" in msg


def test_input_and_item_paths(tmp_path):
    spec = get_dataset("ml-1m")
    (tmp_path / "ml-1m").mkdir()
    (tmp_path / "ml-1m" / "ratings.dat").write_text("1::1::5::1\n")
    assert spec.input_path(tmp_path) == tmp_path / "ml-1m" / "ratings.dat"  # the download directory
    assert spec.input_path(tmp_path / "x.dat") == tmp_path / "x.dat"  # a file is taken as given
    assert spec.items_path(tmp_path / "ml-1m" / "ratings.dat") is None
    (tmp_path / "ml-1m" / "movies.dat").write_text("1::A (1990)::Drama\n")
    assert spec.items_path(tmp_path / "ml-1m" / "ratings.dat") == tmp_path / "ml-1m" / "movies.dat"
    f = RemoteFile("https://host/a/b/file.gz")
    assert f.filename == "file.gz" and f.url_from(None) == f.url
    assert f.url_from("http://127.0.0.1:8000/mirror/") == "http://127.0.0.1:8000/mirror/file.gz"


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'ml-2m'; known datasets: ml-100k, ml-1m"):
        get_dataset("ml-2m")


def test_cli_datasets_table_and_json(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for s in DATASETS.values():
        assert s.name in out and s.files[0].url in out
    assert "22,363" in out and "chronological leave-one-out" in out
    assert main(["datasets", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in entries] == list(DATASETS)
    beauty = next(e for e in entries if e["name"] == "beauty")
    assert beauty["counts"]["users"] == 22363 and beauty["recipe"]["k_core"] == 5 and beauty["format"] == "amazon-json"
    assert main(["datasets", "ml-1m"]) == 0
    one = capsys.readouterr().out
    assert "ml-1m.zip" in one and "beauty" not in one


@pytest.mark.skipif(not REAL_BEAUTY.is_file(), reason=f"the public Beauty.txt is not at {REAL_BEAUTY}")
def test_real_preprocessed_beauty_matches_the_registry(tmp_path, capsys):
    from glintru.data.download import sha256_file

    spec = get_dataset("beauty-seq")
    assert sha256_file(REAL_BEAUTY) == spec.files[0].sha256
    assert main(["prepare", "--dataset", "beauty-seq", "--input", str(REAL_BEAUTY), "--out", str(tmp_path / "b")]) == 0
    captured = capsys.readouterr()
    assert "beauty-seq: counts match the registered counts" in captured.out and "warning" not in captured.err
