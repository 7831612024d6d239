"""Downloads against a local HTTP server on 127.0.0.1: resume, servers that ignore Range or drop the
connection, HTTP errors, checksum mismatches, zip extraction, and the `glintru download` command."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import socket
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from glintru.cli import main
from glintru.data import registry
from glintru.data.download import ChecksumError, DownloadError, download, extract, fetch, sha256_file
from glintru.data.registry import Counts, DatasetSpec, Recipe, RemoteFile

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes, every offset distinguishable enough


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileServer:
    """Serves `files` ({"/name": bytes}). Options: honour Range or ignore it, and cut the body of the
    next `drops` responses after `cut` bytes (then close the connection). Records each request."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.ranges = True
        self.drops = 0
        self.failures = 0  # answer the next requests with 503
        self.cut = 0
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.sent = 0  # body bytes handed to the socket
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                data = owner.files.get(self.path)
                if owner.failures > 0:
                    owner.failures -= 1
                    self.send_error(503, "Service Unavailable")
                    return
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if m and owner.ranges:
                    start = int(m.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.drops > 0:
                    owner.drops -= 1
                    body = body[: owner.cut]
                # Counted before writing: the client may read the last byte (and the test go on to
                # check the count) before this thread runs another line after the write.
                owner.sent += len(body)
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def quick(**kw):
    """fetch options for tests: no waiting between attempts, no progress bar, messages collected."""
    return {"retry_wait": 0.0, "progress": False, "timeout": 10.0, **kw}


def listing(path):
    return sorted(p.name for p in path.iterdir())


# ----------------------------------------------------------------------------- fetch


def test_fetch_writes_the_file_and_verifies_it(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    r = fetch(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=sha(PAYLOAD), size=len(PAYLOAD), **quick())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert r.verified and not r.reused and r.sha256 == sha(PAYLOAD) and r.bytes == len(PAYLOAD)
    assert listing(tmp_path) == ["data.bin"]  # no .part left


def test_fetch_without_checksum_reports_the_computed_one(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    r = fetch(f"{server.url}/data.bin", tmp_path / "data.bin", **quick())
    assert not r.verified and r.sha256 == sha(PAYLOAD) == sha256_file(tmp_path / "data.bin")


def test_partial_file_is_resumed_with_a_range_request(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:4000])
    fetch(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=sha(PAYLOAD), **quick())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.requests == [("/data.bin", "bytes=4000-")]
    assert server.sent == len(PAYLOAD) - 4000  # only the missing bytes travelled
    assert listing(tmp_path) == ["data.bin"]


def test_server_ignoring_range_starts_over(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.ranges = False
    (tmp_path / "data.bin.part").write_bytes(b"x" * 4000)  # stale bytes that must not survive
    said = []
    fetch(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=sha(PAYLOAD), say=said.append, **quick())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.sent == len(PAYLOAD)
    assert any("does not resume" in s for s in said)


def test_complete_part_file_gets_416_and_is_accepted(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD)
    r = fetch(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=sha(PAYLOAD), **quick())
    assert r.verified and (tmp_path / "data.bin").read_bytes() == PAYLOAD and server.sent == 0


def test_dropped_connection_is_retried_from_where_it_stopped(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.drops, server.cut = 2, 3000
    said = []
    fetch(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=sha(PAYLOAD), attempts=3, say=said.append, **quick())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert [r for _, r in server.requests] == [None, "bytes=3000-", "bytes=6000-"]
    assert sum("retrying" in s for s in said) == 2
    assert listing(tmp_path) == ["data.bin"]


def test_connection_that_keeps_dropping_leaves_only_the_part_file(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.drops, server.cut = 2, 2500
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=r"after 2 attempts.*keeps the 5,000 bytes.*run the same command again"):
        fetch(f"{server.url}/data.bin", dest, sha256=sha(PAYLOAD), attempts=2, **quick())
    assert not dest.exists()
    assert (tmp_path / "data.bin.part").read_bytes() == PAYLOAD[:5000]
    # the same call later resumes at byte 5000 and completes
    fetch(f"{server.url}/data.bin", dest, sha256=sha(PAYLOAD), **quick())
    assert dest.read_bytes() == PAYLOAD and server.requests[-1] == ("/data.bin", "bytes=5000-")
    assert listing(tmp_path) == ["data.bin"]


def test_http_404_is_one_clear_error_and_writes_nothing(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing.bin: HTTP 404 Not Found"):
        fetch(f"{server.url}/missing.bin", tmp_path / "missing.bin", **quick())
    assert listing(tmp_path) == []
    assert len(server.requests) == 1  # a 404 is final, not retried


def test_server_errors_are_retried_then_reported(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    server.failures = 1
    fetch(f"{server.url}/data.bin", tmp_path / "data.bin", attempts=2, **quick())
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD and len(server.requests) == 2
    server.failures = 2
    with pytest.raises(
        DownloadError, match=r"other.bin: download failed after 2 attempts: HTTP 503 Service Unavailable"
    ):
        fetch(f"{server.url}/other.bin", tmp_path / "other.bin", attempts=2, **quick())
    assert listing(tmp_path) == ["data.bin"]


def test_checksum_mismatch_removes_the_download(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    wrong = sha(b"something else")
    with pytest.raises(ChecksumError) as exc:
        fetch(f"{server.url}/data.bin", tmp_path / "data.bin", sha256=wrong, **quick())
    assert sha(PAYLOAD) in str(exc.value) and wrong in str(exc.value)
    assert listing(tmp_path) == []


def test_size_mismatch_removes_the_download(server, tmp_path):
    server.files["/data.bin"] = PAYLOAD
    with pytest.raises(ChecksumError, match=r"received 10,240 bytes, the registered file has 10,241"):
        fetch(f"{server.url}/data.bin", tmp_path / "data.bin", size=len(PAYLOAD) + 1, **quick())
    assert listing(tmp_path) == []


def test_unreachable_server_is_a_network_error(tmp_path):
    with socket.socket() as s:  # a port nobody listens on once this socket closes
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"after 2 attempts: cannot connect .*nothing was written"):
        fetch(f"http://127.0.0.1:{port}/data.bin", tmp_path / "data.bin", attempts=2, **quick())
    assert listing(tmp_path) == []


def test_existing_file_is_reused_or_rejected(server, tmp_path):
    dest = tmp_path / "data.bin"
    dest.write_bytes(PAYLOAD)
    r = fetch(f"{server.url}/data.bin", dest, sha256=sha(PAYLOAD), **quick())
    assert r.reused and r.verified and server.requests == []
    with pytest.raises(ChecksumError, match="exists but its sha256"):
        fetch(f"{server.url}/data.bin", dest, sha256=sha(b"other"), **quick())
    assert dest.read_bytes() == PAYLOAD  # left for the user to inspect


# ----------------------------------------------------------------------------- datasets and zips


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


RATINGS = "".join(f"{u}::{i}::{1 + (u + i) % 5}::{1000 * u + i}\n" for u in range(1, 6) for i in range(1, 9))
MOVIES = "".join(f"{i}::Movie {i} (199{i})::Drama|Comedy\n" for i in range(1, 9))


def toy_spec(archive: bytes, **kw) -> DatasetSpec:
    fields = dict(
        name="toy-ml",
        title="toy MovieLens",
        format="movielens",
        files=(RemoteFile("https://example.invalid/toy.zip", sha256=sha(archive), size=len(archive), unzip=True),),
        input="toy/ratings.dat",
        items="toy/movies.dat",
        recipe=Recipe(),
        counts=Counts(5, 8, 40, "the test"),
    )
    fields.update(kw)
    return DatasetSpec(**fields)


def test_download_verifies_and_unzips_then_reuses(server, tmp_path):
    archive = zip_bytes({"toy/ratings.dat": RATINGS.encode(), "toy/movies.dat": MOVIES.encode()})
    server.files["/toy.zip"] = archive
    spec = toy_spec(archive)
    out = tmp_path / "dl"
    [r] = download(spec, out, base_url=server.url + "/", **quick())
    assert r.verified and (out / "toy.zip").read_bytes() == archive
    assert (out / "toy" / "ratings.dat").read_text() == RATINGS
    assert (out / "toy" / "movies.dat").read_text() == MOVIES
    assert listing(out) == [".glintru.json", "toy", "toy.zip"]  # the marker; no temporary extraction folder
    [again] = download(spec, out, base_url=server.url, **quick())
    assert again.reused and len(server.requests) == 1


def test_download_skips_item_files_on_request(server, tmp_path):
    server.files["/r.json"] = b"{}\n"
    server.files["/meta.json"] = b"{}\n"
    spec = DatasetSpec(
        "toy-amazon",
        "toy",
        "amazon-json",
        (RemoteFile("https://example.invalid/r.json"), RemoteFile("https://example.invalid/meta.json", role="items")),
        input="r.json",
        recipe=Recipe(k_core=5),
        counts=None,
        items="meta.json",
    )
    download(spec, tmp_path, base_url=server.url, items=False, **quick())
    assert listing(tmp_path) == ["r.json"]
    download(spec, tmp_path, base_url=server.url, **quick())
    assert listing(tmp_path) == ["meta.json", "r.json"]


def test_archive_without_the_registered_member_is_an_error(server, tmp_path):
    archive = zip_bytes({"other/ratings.dat": RATINGS.encode()})
    server.files["/toy.zip"] = archive
    with pytest.raises(DownloadError, match=r"has no toy/ratings.dat, toy/movies.dat; the registry entry 'toy-ml'"):
        download(toy_spec(archive), tmp_path, base_url=server.url, **quick())


def test_extract_rejects_paths_outside_and_broken_archives(tmp_path):
    evil = tmp_path / "evil.zip"
    evil.write_bytes(zip_bytes({"../escape.txt": b"x"}))
    (tmp_path / "out").mkdir()
    with pytest.raises(DownloadError, match="points outside"):
        extract(evil, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and listing(tmp_path / "out") == []
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really a zip")
    with pytest.raises(DownloadError, match="not a valid zip archive"):
        extract(broken, tmp_path / "out")


def test_extraction_stops_past_the_ratio_or_the_cap_and_writes_nothing(tmp_path, monkeypatch):
    from glintru.data import download as dl

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bomb/zeros.bin", b"\0" * 5_000_000)  # a few KB that expand a thousandfold
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(buf.getvalue())
    (tmp_path / "out").mkdir()
    with pytest.raises(DownloadError, match=r"bomb.zip: the archive expands to 5,000,000 bytes, more than the"):
        extract(bomb, tmp_path / "out")
    assert listing(tmp_path / "out") == []
    small = tmp_path / "small.zip"
    small.write_bytes(zip_bytes({"toy/ratings.dat": RATINGS.encode()}))  # stored: a ratio of about 1
    monkeypatch.setattr(dl, "MAX_EXTRACTED_BYTES", 100)
    with pytest.raises(DownloadError, match=rf"expands to {len(RATINGS):,} bytes, more than the 100 allowed"):
        extract(small, tmp_path / "out")
    assert listing(tmp_path / "out") == []


def test_extraction_replaces_an_earlier_extraction_but_never_a_folder_it_did_not_make(tmp_path, snapshot):
    archive = tmp_path / "toy.zip"
    archive.write_bytes(zip_bytes({"toy/ratings.dat": RATINGS.encode(), "toy/movies.dat": MOVIES.encode()}))
    out = tmp_path / "out"
    (out / "toy").mkdir(parents=True)
    (out / "toy" / "ratings.dat").write_text("an earlier, damaged extraction")
    extract(archive, out)  # only the archive's own paths there: replaced
    assert (out / "toy" / "ratings.dat").read_text() == RATINGS and listing(out / "toy") == [
        "movies.dat",
        "ratings.dat",
    ]
    (out / "toy" / "my-notes.txt").write_text("mine")
    before = snapshot(tmp_path)
    with pytest.raises(DownloadError, match=r"out/toy exists and holds toy/my-notes.txt, which is not in toy.zip"):
        extract(archive, out)
    assert snapshot(tmp_path) == before
    (out / "toy" / "my-notes.txt").unlink()
    (out / "toy" / "movies.dat").unlink()
    (out / "toy" / "movies.dat").mkdir()  # a folder where the archive has a file
    with pytest.raises(DownloadError, match=r"holds toy/movies.dat, which is not in toy.zip"):
        extract(archive, out)


HTML = b"<!DOCTYPE html><html><head><title>Moved</title></head><body>gone</body></html>\n"


@pytest.mark.parametrize(
    "body, problem",
    [
        (HTML, r"no gzip data \(it starts '<!DOCTYPE html>.*', an HTML page\)"),
        (gzip.compress(HTML), r"a first line that is not a review object \('<!DOCTYPE html>.*', an HTML page\)"),
        (b"", r"an empty file"),
    ],
    ids=["html", "gzipped-html", "empty"],
)
def test_a_file_without_checksum_that_is_not_its_format_never_takes_its_name(server, tmp_path, capsys, body, problem):
    server.files["/reviews_Beauty_5.json.gz"] = body  # served with status 200, as an error page may be
    dl = tmp_path / "dl"
    assert main(["download", "beauty", "--out", str(dl), "--base-url", server.url, "--quiet", "--no-items"]) == 2
    err = capsys.readouterr().err
    assert re.search(rf"error: {server.url}/reviews_Beauty_5.json.gz: the server sent {problem}; nothing was kept", err)
    assert listing(dl) == [".glintru.json"]  # no reviews_*.json.gz, no .part
    (dl / "reviews_Beauty_5.json.gz").write_bytes(HTML)  # one left by an earlier version: reported, kept
    assert main(["download", "beauty", "--out", str(dl), "--base-url", server.url, "--quiet", "--no-items"]) == 2
    assert "reviews_Beauty_5.json.gz exists but holds no gzip data" in capsys.readouterr().err
    assert (dl / "reviews_Beauty_5.json.gz").read_bytes() == HTML


def test_download_refuses_another_kind_of_output_and_a_folder_being_written(server, tmp_path, holder, snapshot):
    import platform

    from glintru.data.synthetic import generate

    server.files["/r.json"] = b"{}\n"
    spec = DatasetSpec(
        "toy-amazon", "toy", "amazon-json", (RemoteFile("https://example.invalid/r.json"),), "r.json", Recipe(), None
    )
    data = generate(tmp_path / "data", n_users=20, n_items=10, features=False)
    before = snapshot(data)
    with pytest.raises(ValueError, match=r"--out .*data holds a prepared dataset .*, not a download folder"):
        download(spec, data, base_url=server.url, **quick())
    assert snapshot(data) == before
    proc = holder(tmp_path / "dl")
    held = rf"dl is being written by another command: pid {proc.pid} on host {re.escape(platform.node())}"
    with pytest.raises(ValueError, match=held):
        download(spec, tmp_path / "dl", base_url=server.url, **quick())
    assert not (tmp_path / "dl").exists() and server.requests == []


# ----------------------------------------------------------------------------- the command line


def test_cli_download_then_prepare_reports_matching_counts(server, tmp_path, capsys, monkeypatch):
    archive = zip_bytes({"toy/ratings.dat": RATINGS.encode(), "toy/movies.dat": MOVIES.encode()})
    server.files["/toy.zip"] = archive
    monkeypatch.setitem(registry.DATASETS, "toy-ml", toy_spec(archive))
    dl = tmp_path / "dl"
    assert main(["download", "toy-ml", "--out", str(dl), "--base-url", server.url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"{dl / 'toy.zip'}: downloaded, {len(archive):,} bytes, sha256 verified" in out
    assert f"glintru prepare --dataset toy-ml --input {dl / 'toy/ratings.dat'}" in out

    assert main(["prepare", "--dataset", "toy-ml", "--input", str(dl), "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert "toy-ml: counts match the registered counts (the test): 5 users, 8 items, 40 interactions" in captured.out
    assert "warning" not in captured.err
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["name"] == "toy-ml" and meta["features"]  # movies.dat beside the ratings gave side features


def test_cli_download_checksum_failure_exits_2_and_leaves_nothing(server, tmp_path, capsys):
    # a registered dataset with a published checksum, served with other bytes
    spec = registry.get_dataset("ml-100k")
    server.files["/ml-100k.zip"] = zip_bytes({"ml-100k/u.data": b"1\t1\t5\t1\n"})
    assert spec.files[0].sha256 is not None
    code = main(["download", "ml-100k", "--out", str(tmp_path), "--base-url", server.url, "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ml-100k.zip" in err and "the registered file has 4,924,029" in err
    assert listing(tmp_path) == []


def test_cli_download_404_and_unknown_name(server, tmp_path, capsys):
    assert main(["download", "beauty", "--out", str(tmp_path), "--base-url", server.url, "--quiet"]) == 2
    assert "reviews_Beauty_5.json.gz: HTTP 404 Not Found" in capsys.readouterr().err
    assert listing(tmp_path) == []
    with pytest.raises(SystemExit):
        main(["download", "no-such-dataset", "--out", str(tmp_path)])
    assert "invalid choice" in capsys.readouterr().err


def test_cli_prepare_warns_when_counts_differ(server, tmp_path, capsys):
    # a tiny log served under the registered Beauty file name: prepares fine, counts differ from Table 1
    lines = [
        json.dumps({"reviewerID": f"U{u}", "asin": f"I{i}", "overall": 5.0, "unixReviewTime": 100 * u + i})
        for u in range(6)
        for i in range(6)
    ]
    server.files["/reviews_Beauty_5.json.gz"] = gzip.compress(("\n".join(lines) + "\n").encode())
    server.files["/meta_Beauty.json.gz"] = gzip.compress(
        "".join(
            f"{{'asin': 'I{i}', 'categories': [['Beauty', 'Skin']], 'brand': 'B{i % 2}'}}\n" for i in range(6)
        ).encode()
    )
    dl = tmp_path / "dl"
    assert main(["download", "beauty", "--out", str(dl), "--base-url", server.url, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "no registered checksum to verify" in out and sha(server.files["/reviews_Beauty_5.json.gz"]) in out
    assert (
        main(
            [
                "prepare",
                "--dataset",
                "beauty",
                "--input",
                str(dl / "reviews_Beauty_5.json.gz"),
                "--out",
                str(tmp_path / "p"),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert (
        "warning: beauty: prepared counts differ from the registered counts (GLINT-RU paper, Table 1): "
        "users 6 (expected 22,363); items 6 (expected 12,101); interactions 36 (expected 198,502)"
    ) in captured.err
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["params"]["k_core"] == 5 and meta["params"]["format"] == "amazon-json"
    assert set(meta["features"]) == {"category", "brand"}  # the registered metadata file beside the input
