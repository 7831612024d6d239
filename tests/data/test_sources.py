"""Readers on small files written in each real format, and their error messages."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glintru.data.sources import (
    SourceFormatError,
    parse_columns,
    read_amazon_items,
    read_bytes,
    read_interactions,
    read_item_features,
    read_movielens_items,
    resolve_input,
)


def write(path, text: str, *, gz: bool = False, encoding: str = "utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def rows(df: pd.DataFrame) -> list[tuple]:
    return [
        (u, i, int(t), None if np.isnan(r) else float(r))
        for u, i, t, r in df[["user", "item", "timestamp", "rating"]].itertuples(index=False)
    ]


def check_schema(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["user", "item", "timestamp", "rating"]
    assert df["timestamp"].dtype == np.int64 and df["rating"].dtype == np.float64
    assert all(isinstance(x, str) for x in df["user"]) and all(isinstance(x, str) for x in df["item"])


# ---------------------------------------------------------------------------- MovieLens

ML_DAT = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978300000\n"


def test_movielens_dat_and_gzip(tmp_path):
    for p in (write(tmp_path / "ratings.dat", ML_DAT), write(tmp_path / "gz" / "ratings.dat.gz", ML_DAT, gz=True)):
        df = read_interactions("movielens", p)
        check_schema(df)
        assert rows(df) == [("1", "1193", 978300760, 5.0), ("1", "661", 978302109, 3.0), ("2", "1193", 978300000, 4.0)]


def test_movielens_100k_tab_and_directory_detection(tmp_path):
    write(tmp_path / "ml-100k" / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    df = read_interactions("movielens", tmp_path / "ml-100k")
    assert rows(df) == [("196", "242", 881250949, 3.0), ("186", "302", 891717742, 3.0)]
    assert resolve_input("movielens", tmp_path / "ml-100k").name == "u.data"


def test_movielens_csv_with_header(tmp_path):
    p = write(
        tmp_path / "ml-latest" / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,296,5.0,1147880044\n1,306,3.5,1147868817\n",
    )
    df = read_interactions("movielens", tmp_path / "ml-latest")
    assert rows(df) == [("1", "296", 1147880044, 5.0), ("1", "306", 1147868817, 3.5)]
    assert rows(read_interactions("movielens", p)) == rows(df)


def test_movielens_wrong_delimiter_names_line(tmp_path):
    p = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n2\t1193\t4\t978300000\n")
    with pytest.raises(SourceFormatError) as e:
        read_interactions("movielens", p)
    msg = str(e.value)
    assert "ratings.dat line 3:" in msg
    assert "expected 4 '::'-separated fields user::item::rating::timestamp" in msg
    assert "got 1 field (wrong delimiter?)" in msg
    assert e.value.line == 3


def test_movielens_non_integer_id(tmp_path):
    p = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n\nabc::661::3::978302109\n")
    with pytest.raises(SourceFormatError, match=r"ratings\.dat line 3: user id 'abc' is not an integer"):
        read_interactions("movielens", p)
    p = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\tx9\t3\t891717742\n")
    with pytest.raises(SourceFormatError, match=r"u\.data line 2: item id 'x9' is not an integer; expected 4 tab"):
        read_interactions("movielens", p)


def test_movielens_short_line_and_missing_header_column(tmp_path):
    p = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(SourceFormatError, match=r"line 2: expected 4 '::'-separated .* got 3 fields$"):
        read_interactions("movielens", p)
    p = write(tmp_path / "ratings.csv", "userId,itemId,rating,timestamp\n1,2,3,4\n")
    with pytest.raises(SourceFormatError, match=r"ratings\.csv line 1: missing column 'movieId'"):
        read_interactions("movielens", p)


def test_empty_file_and_blank_file(tmp_path):
    for text in ("", "\n\n  \n"):
        p = write(tmp_path / "ratings.dat", text)
        with pytest.raises(SourceFormatError, match=r"ratings\.dat line 1: file is empty; expected MovieLens"):
            read_interactions("movielens", p)
    p = write(tmp_path / "r.json", "")
    with pytest.raises(SourceFormatError, match=r"r\.json line 1: file is empty; expected one review object"):
        read_interactions("amazon-json", p)


def test_truncated_gzip_names_line(tmp_path):
    text = "".join(f"{u}::{u + 10}::4::97830{u:04d}\n" for u in range(2000))
    full = gzip.compress(text.encode())
    p = tmp_path / "ratings.dat.gz"
    p.write_bytes(full[: len(full) // 2])
    with pytest.raises(SourceFormatError) as e:
        read_interactions("movielens", p)
    assert "truncated gzip file" in str(e.value) and "ratings.dat.gz line" in str(e.value)
    # the named line is the first one that is not complete before the cut
    prefix = zlib.decompressobj(wbits=31).decompress(full[: len(full) // 2])
    assert e.value.line == prefix.count(b"\n") + 1
    assert e.value.line in range(2, 2001)


def test_multi_member_gzip(tmp_path):
    p = tmp_path / "ratings.dat.gz"
    p.write_bytes(gzip.compress(b"1::2::3::4\n") + gzip.compress(b"5::6::7::8\n"))
    assert read_bytes(p) == b"1::2::3::4\n5::6::7::8\n"


def test_unknown_format_and_mapping_misuse(tmp_path):
    p = write(tmp_path / "ratings.dat", ML_DAT)
    with pytest.raises(ValueError, match="unknown format 'lastfm'"):
        read_interactions("lastfm", p)
    with pytest.raises(ValueError, match="only applies to --format csv"):
        read_interactions("movielens", p, columns={"user": "a", "item": "b"})


# ---------------------------------------------------------------------------- Amazon

REVIEWS_2014 = [
    {
        "reviewerID": "A1YJEY40YUW4SE",
        "asin": "7806397051",
        "reviewerName": "Andrea",
        "helpful": [3, 4],
        "reviewText": "Very oily and creamy. Not at all what I expected...",
        "overall": 1.0,
        "summary": "Don't waste your money",
        "unixReviewTime": 1391040000,
        "reviewTime": "01 30, 2014",
    },
    {
        "reviewerID": "A60XNB876KYML",
        "asin": "7806397051",
        "reviewerName": "Jessica H.",
        "helpful": [1, 1],
        "reviewText": "This palette was a decent price",
        "overall": 3.0,
        "summary": "OK Palette!",
        "unixReviewTime": 1397779200,
        "reviewTime": "04 18, 2014",
    },
    {
        "reviewerID": "A1YJEY40YUW4SE",
        "asin": "9759091062",
        "helpful": [0, 0],
        "reviewText": "Cheap",
        "overall": 4.0,
        "summary": "Fine",
        "unixReviewTime": 1378425600,
        "reviewTime": "09 6, 2013",
    },
]


def test_amazon_2014_json_gzip(tmp_path):
    p = write(tmp_path / "reviews_Beauty_5.json.gz", "\n".join(json.dumps(r) for r in REVIEWS_2014) + "\n", gz=True)
    df = read_interactions("amazon-json", p)
    check_schema(df)
    assert rows(df) == [
        ("A1YJEY40YUW4SE", "7806397051", 1391040000, 1.0),
        ("A60XNB876KYML", "7806397051", 1397779200, 3.0),
        ("A1YJEY40YUW4SE", "9759091062", 1378425600, 4.0),
    ]


def test_amazon_python_literal_variant(tmp_path):
    p = write(tmp_path / "reviews.json", "\n".join(repr(r) for r in REVIEWS_2014) + "\n")
    assert "'reviewerID'" in p.read_text()
    df = read_interactions("amazon-json", p)
    assert rows(df)[1] == ("A60XNB876KYML", "7806397051", 1397779200, 3.0)


def test_amazon_2018_extra_keys(tmp_path):
    recs = [
        {
            "overall": 5.0,
            "vote": "2",
            "verified": True,
            "reviewTime": "11 27, 2015",
            "reviewerID": "AQ2V0",
            "asin": "0700026657",
            "style": {"Format:": " Video Game"},
            "reviewerName": "Lu",
            "reviewText": "x",
            "summary": "y",
            "unixReviewTime": 1448582400,
        },
        {
            "overall": 4.0,
            "verified": False,
            "reviewerID": "AB3",
            "asin": "0700026657",
            "unixReviewTime": 1448582401,
            "image": ["https://example.org/a.jpg"],
        },
    ]
    p = write(tmp_path / "Video_Games_5.json", "\n".join(json.dumps(r) for r in recs))
    assert rows(read_interactions("amazon-json", p)) == [
        ("AQ2V0", "0700026657", 1448582400, 5.0),
        ("AB3", "0700026657", 1448582401, 4.0),
    ]


def test_amazon_2023_parent_asin_and_ms(tmp_path):
    recs = [
        {
            "rating": 5.0,
            "title": "Such a lovely scent",
            "text": "...",
            "images": [],
            "asin": "B00YQ6X8EO",
            "parent_asin": "B00YQ6X8EO",
            "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
            "timestamp": 1588687728923,
            "helpful_vote": 0,
            "verified_purchase": True,
        },
        {
            "rating": 4.0,
            "asin": "B081TJ8YS3",
            "parent_asin": "B08BZ63GMJ",
            "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ",
            "timestamp": 1588615855070,
            "helpful_vote": 1,
            "verified_purchase": True,
        },
    ]
    p = write(tmp_path / "All_Beauty.jsonl", "\n".join(json.dumps(r) for r in recs) + "\n")
    assert rows(read_interactions("amazon-json", p)) == [
        ("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B00YQ6X8EO", 1588687728923, 5.0),
        ("AGKHLEW2SOWHNMFQIJGBECAF7INQ", "B08BZ63GMJ", 1588615855070, 4.0),
    ]


def test_amazon_invalid_json_and_missing_key(tmp_path):
    good = [json.dumps(r) for r in REVIEWS_2014]
    p = write(tmp_path / "r.json", "\n".join([good[0], good[1], '{"reviewerID": "A", "asin": "B", "overall": 4.0,']))
    with pytest.raises(
        SourceFormatError, match=r"r\.json line 3: invalid JSON \(.*\); expected one review object per line"
    ):
        read_interactions("amazon-json", p)
    broken = dict(REVIEWS_2014[1])
    del broken["asin"]
    p = write(tmp_path / "r2.json.gz", "\n".join([good[0], json.dumps(broken), good[2]]), gz=True)
    with pytest.raises(SourceFormatError, match=r"r2\.json\.gz line 2: missing key 'asin'"):
        read_interactions("amazon-json", p)
    p = write(tmp_path / "r3.json", "user,item,rating,timestamp\n")
    with pytest.raises(SourceFormatError, match=r"r3\.json line 1: invalid JSON"):
        read_interactions("amazon-json", p)
    p = write(tmp_path / "r4.json", '{"user": "a", "item": "b"}\n')
    with pytest.raises(SourceFormatError, match=r"r4\.json line 1: no 'reviewerID' or 'user_id' key"):
        read_interactions("amazon-json", p)


def test_amazon_csv(tmp_path):
    p = write(
        tmp_path / "ratings_Beauty.csv",
        "A39HTATAQ9V7YF,0205616461,5.0,1369699200\nA3JM6GV9MNOF9X,0558925278,3.0,1355443200\n",
    )
    assert rows(read_interactions("amazon-csv", p)) == [
        ("A39HTATAQ9V7YF", "0205616461", 1369699200, 5.0),
        ("A3JM6GV9MNOF9X", "0558925278", 1355443200, 3.0),
    ]
    bad = write(
        tmp_path / "bad.csv", "A39HTATAQ9V7YF,0205616461,5.0,1369699200\nA3JM6GV9MNOF9X;0558925278;3.0;1355443200\n"
    )
    with pytest.raises(
        SourceFormatError,
        match=r"bad\.csv line 2: expected 4 comma-separated fields user,item,rating,"
        r"timestamp .*got 1 field \(wrong delimiter\?\)",
    ):
        read_interactions("amazon-csv", bad)
    header = write(tmp_path / "header.csv", "user,item,rating,timestamp\nA,B,5.0,1369699200\n")
    with pytest.raises(SourceFormatError, match=r"header\.csv line 1: rating 'rating' is not a number"):
        read_interactions("amazon-csv", header)


# ---------------------------------------------------------------------------- RecBole, sequence text


def test_recbole_inter(tmp_path):
    p = write(
        tmp_path / "ml-1m.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t1193\t5\t978300760\n1\t661\t3\t978302109.0\n",
    )
    assert rows(read_interactions("recbole", p)) == [("1", "1193", 978300760, 5.0), ("1", "661", 978302109, 3.0)]
    p = write(tmp_path / "no_time.inter", "session_id:token\tuser_id:token\titem_id:token\nS\tu1\ti1\nS\tu1\ti2\n")
    assert rows(read_interactions("recbole", p)) == [("u1", "i1", 0, None), ("u1", "i2", 1, None)]


def test_recbole_fractional_timestamps_keep_order(tmp_path):
    p = write(tmp_path / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\na\tx\t2.5\na\ty\t1.25\na\tz\t2.5\n")
    ts = read_interactions("recbole", p)["timestamp"].tolist()
    assert ts[1] < ts[0] == ts[2]


def test_recbole_errors(tmp_path):
    p = write(tmp_path / "a.inter", "user_id\titem_id\n1\t2\n")
    with pytest.raises(SourceFormatError, match=r"a\.inter line 1: header field 'user_id' has no ':token'"):
        read_interactions("recbole", p)
    p = write(tmp_path / "b.inter", "user_id:token\ttimestamp:float\n1\t2\n")
    with pytest.raises(SourceFormatError, match=r"b\.inter line 1: missing column 'item_id:token'"):
        read_interactions("recbole", p)
    p = write(tmp_path / "c.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\tnoon\n")
    with pytest.raises(SourceFormatError, match=r"c\.inter line 3: timestamp:float 'noon' is not a number"):
        read_interactions("recbole", p)


def test_seq_txt_and_user_item_pairs(tmp_path):
    p = write(tmp_path / "Beauty.txt", "1 1 2 3 4\n2 5 3 6\n")
    df = read_interactions("seq-txt", p)
    assert rows(df) == [
        ("1", "1", 0, None),
        ("1", "2", 1, None),
        ("1", "3", 2, None),
        ("1", "4", 3, None),
        ("2", "5", 4, None),
        ("2", "3", 5, None),
        ("2", "6", 6, None),
    ]
    p = write(tmp_path / "ml-1m.txt", "1 10\n1 11\n2 10\n1 12\n")
    df = read_interactions("seq-txt", p)
    assert df[df.user == "1"]["item"].tolist() == ["10", "11", "12"]
    bad = write(tmp_path / "bad.txt", "1 1 2 3\n2,5,3,6\n")
    with pytest.raises(
        SourceFormatError, match=r"bad\.txt line 2: expected one user per line.*got 1 field \(wrong delimiter\?\)"
    ):
        read_interactions("seq-txt", bad)


# ---------------------------------------------------------------------------- generic CSV / Parquet


def test_parse_columns():
    assert parse_columns("user=uid,item=iid,time=ts") == {"user": "uid", "item": "iid", "time": "ts"}
    assert parse_columns({"user": "a", "timestamp": "t", "item": "b"}) == {"user": "a", "time": "t", "item": "b"}
    assert parse_columns(None) is None
    with pytest.raises(ValueError, match="unknown column mapping key 'who'"):
        parse_columns("who=x")
    with pytest.raises(ValueError, match="bad column mapping 'user'"):
        parse_columns("user")


def test_csv_with_mapping_tab_and_dates(tmp_path):
    p = write(tmp_path / "log.tsv", "uid\tiid\tscore\tts\nu1\tA\t4\t2020-01-02 10:00:00\nu1\tB\t\t2020-01-01\n")
    df = read_interactions("csv", p, columns="user=uid,item=iid,rating=score,time=ts")
    assert df["user"].tolist() == ["u1", "u1"] and df["item"].tolist() == ["A", "B"]
    assert df["timestamp"].iloc[1] < df["timestamp"].iloc[0]
    assert df["rating"].iloc[0] == 4.0 and np.isnan(df["rating"].iloc[1])


def test_csv_default_names_quotes_and_positional(tmp_path):
    p = write(tmp_path / "a.csv", 'user_id,item_id,timestamp\n"x, y",i1,5\nz,i2,3\n')
    assert rows(read_interactions("csv", p)) == [("x, y", "i1", 5, None), ("z", "i2", 3, None)]
    p = write(tmp_path / "b.csv", "i1,x,5.0,100\ni2,y,3.0,90\n")  # 2018 Amazon ratings order: item,user
    df = read_interactions("csv", p, columns={"user": "1", "item": "0", "rating": "2", "time": "3"})
    assert rows(df) == [("x", "i1", 100, 5.0), ("y", "i2", 90, 3.0)]


def test_csv_errors(tmp_path):
    p = write(tmp_path / "a.csv", "uid,iid,ts\n1,2,3\n")
    with pytest.raises(
        SourceFormatError, match=r"a\.csv line 1: missing column 'item' for item \(columns: uid, iid, ts\)"
    ):
        read_interactions("csv", p, columns="user=uid,item=item")
    p = write(tmp_path / "b.csv", "uid,iid,ts\n1,2,3\n4,,5\n")
    with pytest.raises(SourceFormatError, match=r"b\.csv line 3: empty item column 'iid'"):
        read_interactions("csv", p, columns="user=uid,item=iid,time=ts")
    p = write(tmp_path / "c.csv", "a,b\n1,2\n")
    with pytest.raises(SourceFormatError, match=r"c\.csv line 1: no user column \(columns: a, b\)"):
        read_interactions("csv", p)
    p = write(tmp_path / "d.csv", "uid,iid,ts\n1,2,2020-01-01\n1,3,soon\n")
    with pytest.raises(SourceFormatError, match=r"d\.csv line 3: time 'soon' is neither a number nor a date"):
        read_interactions("csv", p, columns="user=uid,item=iid,time=ts")


def test_parquet_with_mapping(tmp_path):
    p = tmp_path / "log.parquet"
    pq.write_table(pa.table({"uid": [7, 7, 8], "iid": ["a", "b", "a"], "ts": [3.0, 1.0, 2.0]}), p)
    assert rows(read_interactions("csv", p, columns="user=uid,item=iid,time=ts")) == [
        ("7", "a", 3, None),
        ("7", "b", 1, None),
        ("8", "a", 2, None),
    ]
    with pytest.raises(SourceFormatError, match=r"log\.parquet: missing column 'who'"):
        read_interactions("csv", p, columns="user=who,item=iid")
    q = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"user": ["a", None], "item": ["x", "y"]}), q)
    with pytest.raises(SourceFormatError, match=r"nulls\.parquet row 2: empty user"):
        read_interactions("csv", q)


# ---------------------------------------------------------------------------- item features


def test_movielens_movies_dat_latin1(tmp_path):
    text = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "11::American President, The (1995)::Comedy|Drama|Romance\n"
        "3952::Contender, The (2000)::Drama|Thriller\n"
        "1041::Secrets & Lies (1996)::Drama\n"
        "3::Misérables, Les (1995)::Drama\n"
    )
    write(tmp_path / "ml-1m" / "movies.dat", text, encoding="latin-1")
    f = read_movielens_items(tmp_path / "ml-1m")
    assert f["genre"]["1"] == ["Animation", "Children's", "Comedy"]
    assert f["year"]["11"] == ["1995"] and f["year"]["3952"] == ["2000"]
    assert f["title"]["11"] == ["american", "president", "the"]
    assert f["title"]["3"] == ["mis", "rables", "les"]  # non-ASCII letters split words
    assert set(read_item_features("movielens", tmp_path / "ml-1m" / "movies.dat", items=["1"])["genre"]) == {"1"}
    bad = write(tmp_path / "movies.dat", "1::Toy Story (1995)|Animation\n", encoding="latin-1")
    with pytest.raises(SourceFormatError, match=r"movies\.dat line 1: expected 3 '::'-separated fields MovieID::Title"):
        read_movielens_items(bad)


def test_movielens_movies_csv_and_u_item(tmp_path):
    p = write(
        tmp_path / "movies.csv",
        'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n2,"Heat, The",(no genres listed)\n',
    )
    f = read_movielens_items(p)
    assert f["genre"] == {"1": ["Adventure", "Animation"], "2": []}
    assert f["year"] == {"1": ["1995"], "2": []} and f["title"]["2"] == ["heat", "the"]
    flags = "|".join("1" if g in (3, 4) else "0" for g in range(19))
    p = write(
        tmp_path / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy|{flags}\n",
        encoding="latin-1",
    )
    f = read_movielens_items(p)
    assert f["genre"]["1"] == ["Animation", "Children's"] and f["year"]["1"] == ["1995"]


def test_amazon_metadata_variants(tmp_path):
    m2014 = [
        {
            "asin": "7806397051",
            "title": "Palette",
            "price": 6.99,
            "salesRank": {"Beauty": 1},
            "categories": [["Beauty", "Makeup", "Face"], ["Beauty", "Tools"]],
            "brand": "Sleek",
        },
        {"asin": "0000000001", "categories": [["Books"]]},
        {"asin": "9759091062", "categories": [["Beauty", "Skin Care"]]},
    ]
    p = write(tmp_path / "meta_Beauty.json.gz", "\n".join(repr(m) for m in m2014) + "\n", gz=True)
    f = read_amazon_items(p, items=["7806397051", "9759091062"])
    assert f["category"] == {"7806397051": ["Beauty", "Makeup", "Face", "Tools"], "9759091062": ["Beauty", "Skin Care"]}
    assert f["brand"] == {"7806397051": ["Sleek"], "9759091062": []}
    m2018 = {"category": ["Video Games", "PC"], "brand": "Sierra", "asin": "0700026657", "title": "Game"}
    m2023 = {
        "main_category": "All Beauty",
        "categories": [],
        "store": "Howard",
        "details": {"Brand": "HOWARD"},
        "parent_asin": "B01CUPMQZE",
    }
    p = write(tmp_path / "meta.jsonl", json.dumps(m2018) + "\n" + json.dumps(m2023) + "\n")
    f = read_item_features("amazon-json", p)
    assert f["category"] == {"0700026657": ["Video Games", "PC"], "B01CUPMQZE": []}
    assert f["brand"] == {"0700026657": ["Sierra"], "B01CUPMQZE": ["HOWARD"]}
    bad = write(tmp_path / "meta_bad.json", json.dumps(m2018) + "\n{'asin': \n")
    with pytest.raises(SourceFormatError, match=r"meta_bad\.json line 2: invalid JSON"):
        read_amazon_items(bad)


def test_recbole_item_file(tmp_path):
    p = write(
        tmp_path / "ml-1m.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tgenre:token_seq\t"
        "score:float\n1\tToy Story\t1995\tAnimation Comedy\t0.5\n",
    )
    f = read_item_features("recbole", p)
    assert f == {
        "movie_title": {"1": ["Toy", "Story"]},
        "release_year": {"1": ["1995"]},
        "genre": {"1": ["Animation", "Comedy"]},
    }


def test_generic_item_table(tmp_path):
    p = write(tmp_path / "items.csv", "iid,genre,brand\nA,Rock|Pop,Sony\nB,,\nC,Jazz,Blue Note\n")
    f = read_item_features("csv", p, items=["A", "B"], item_column="iid")
    assert f == {"genre": {"A": ["Rock", "Pop"], "B": []}, "brand": {"A": ["Sony"], "B": []}}
    q = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item": ["A", "C"], "tags": ["x|y", "z"]}), q)
    assert read_item_features("seq-txt", q) == {"tags": {"A": ["x", "y"], "C": ["z"]}}
