"""Downloads of registered datasets: HTTP with a progress bar, resume of a partial file, checksum
verification and zip extraction; a file appears under its final name only once it is complete.

A download writes NAME.part, resumes it with an HTTP Range request when it is there (a server that
ignores Range answers 200 and the file starts over), checks the size and sha256 where the registry
knows them, and only then renames NAME.part to NAME. A file without a registered sha256 is checked
for its format instead (`file_problem`: the gzip or zip magic number, a first line that parses as
the dataset's format), so that an error page served with status 200 never takes a data file's name.
A broken connection is retried from where it stopped; when the attempts are spent the .part file
stays, and the same command resumes it. The download folder is locked while a download writes it.

Extraction stops with an error, before writing anything, when an archive would expand to more than
MAX_EXTRACT_RATIO times its own size or to more than MAX_EXTRACTED_BYTES in all (zipped text stays
far below both). It replaces an existing entry of the folder only when every file in it is a file
of the archive (an earlier extraction); anything else there stops it.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from glintru.data.registry import DatasetSpec, RemoteFile
from glintru.data.sources import SourceFormatError
from glintru.data.sources.readers import parse_record
from glintru.outputs import DOWNLOAD, check_output, locked, mark

CHUNK = 1 << 16
USER_AGENT = "glintru-download"
MAX_EXTRACT_RATIO = 100  # expanded bytes per archive byte; deflated text is about 3 to 10
MAX_EXTRACTED_BYTES = 32 << 30  # 32 GiB expanded, whatever the archive's size


class DownloadError(RuntimeError):
    """A download failed; the message names the address, what went wrong and what to do."""


class ChecksumError(DownloadError):
    """The downloaded bytes are not the registered file (wrong size or sha256)."""


class _Interrupted(Exception):
    """A transfer stopped early for a reason worth retrying (connection dropped, timed out)."""


@dataclass(frozen=True)
class FetchResult:
    path: Path
    sha256: str
    bytes: int
    verified: bool  # the sha256 was compared with a registered one
    reused: bool  # the file was already there; nothing was transferred


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header such as 'bytes 100-199/2000' or 'bytes */2000'."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _transfer(url: str, part: Path, *, timeout: float, progress: bool, say: Callable[[str], None]) -> None:
    """Fetch `url` into `part`, continuing it when it exists. Raises _Interrupted on a transient failure."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            _, total = _content_range(exc.headers.get("Content-Range"))
            if total == offset:  # the part already holds every byte
                return
            part.unlink()
            raise _Interrupted(f"the server cannot resume at byte {offset:,}; starting over") from None
        if exc.code >= 500:  # the server's trouble, often passing
            raise _Interrupted(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(
            f"{url}: HTTP {exc.code} {exc.reason}; check the address (or pass --base-url for a mirror)"
        ) from None
    except (TimeoutError, urllib.error.URLError, http.client.HTTPException, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Interrupted(f"cannot connect ({reason})") from None

    with resp:
        total_header = resp.headers.get("Content-Length")
        length = int(total_header) if total_header and total_header.isdigit() else None
        if offset and resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _Interrupted(f"the server resumed at byte {start} instead of {offset:,}; starting over")
            mode = "ab"
        else:
            if offset:
                say(f"{url}: the server does not resume downloads; starting over")
            offset, total, mode = 0, length, "wb"
        received = 0
        with (
            open(part, mode) as f,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    block = resp.read(CHUNK)
                except (TimeoutError, http.client.IncompleteRead, ConnectionError, OSError) as exc:
                    raise _Interrupted(f"connection lost after {offset + received:,} bytes ({exc!r})") from None
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and offset + received < total:
        raise _Interrupted(f"connection closed after {offset + received:,} of {total:,} bytes")


def fetch(
    url: str,
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    attempts: int = 4,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    progress: bool = True,
    say: Callable[[str], None] = print,
    check: Callable[[Path], str | None] | None = None,
) -> FetchResult:
    """Download `url` to `dest` (via dest.part, resumed when present), verify it, then rename.

    An existing `dest` is reused after checking its sha256 (when known). A wrong size or sha256
    removes the .part file and raises ChecksumError; a connection that keeps failing raises
    DownloadError and leaves the .part file for the next call to resume. Without a sha256, `check`
    (e.g. `file_problem`) says what is wrong with the bytes, if anything: then the .part file is
    removed and DownloadError raised."""
    dest = Path(dest)
    if dest.exists():
        digest = sha256_file(dest)
        if sha256 is not None and digest != sha256:
            raise ChecksumError(
                f"{dest} exists but its sha256 is {digest}, not the registered {sha256}; remove it and download again"
            )
        problem = check(dest) if check is not None and sha256 is None else None
        if problem:
            raise DownloadError(f"{dest} exists but holds {problem}; remove it and download again")
        return FetchResult(dest, digest, dest.stat().st_size, verified=sha256 is not None, reused=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, part, timeout=timeout, progress=progress, say=say)
            break
        except _Interrupted as exc:
            kept = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                where = (
                    f"{part} keeps the {kept:,} bytes received; run the same command again to resume"
                    if kept
                    else "nothing was written"
                )
                raise DownloadError(f"{url}: download failed after {attempts} attempts: {exc}; {where}") from None
            say(f"{url}: {exc}; retrying ({attempt + 1} of {attempts})")
            time.sleep(retry_wait * attempt)

    got = part.stat().st_size
    if size is not None and got != size:
        part.unlink()
        raise ChecksumError(
            f"{url}: received {got:,} bytes, the registered file has {size:,}; "
            "the partial file was removed, download again"
        )
    digest = sha256_file(part)
    if sha256 is not None and digest != sha256:
        part.unlink()
        raise ChecksumError(
            f"{url}: sha256 {digest} does not match the registered {sha256}; the download was "
            "removed (the file changed or was corrupted in transit)"
        )
    problem = check(part) if check is not None and sha256 is None else None
    if problem:
        part.unlink()
        raise DownloadError(
            f"{url}: the server sent {problem}; nothing was kept (check the address, or pass --base-url for a mirror)"
        )
    os.replace(part, dest)
    return FetchResult(dest, digest, got, verified=sha256 is not None, reused=False)


def _safe_members(archive: zipfile.ZipFile, path: Path) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    for m in members:
        p = PurePosixPath(m.filename)
        if p.is_absolute() or ".." in p.parts:
            raise DownloadError(f"{path}: archive member {m.filename!r} points outside the archive's folder")
    return members


def _check_size(members: list[zipfile.ZipInfo], path: Path) -> int:
    """The most bytes the archive may expand to; DownloadError when its members declare more."""
    limit = min(MAX_EXTRACTED_BYTES, MAX_EXTRACT_RATIO * path.stat().st_size)
    declared = sum(m.file_size for m in members)
    if declared > limit:
        raise DownloadError(
            f"{path}: the archive expands to {declared:,} bytes, more than the {limit:,} allowed "
            f"({MAX_EXTRACT_RATIO} times its size, at most {MAX_EXTRACTED_BYTES:,}); nothing was extracted. "
            "Remove it and download again (a damaged or hostile archive)"
        )
    return limit


def _unpack(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], into: Path, limit: int, path: Path) -> None:
    """Every member under `into`, counting the bytes written, which must stay within `limit`."""
    written = 0
    for m in members:
        target = into / m.filename
        if m.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(m) as src, open(target, "wb") as dst:
            for block in iter(lambda: src.read(CHUNK), b""):
                written += len(block)
                if written > limit:
                    raise DownloadError(f"{path}: the archive expands past the {limit:,} bytes allowed; stopped")
                dst.write(block)


def _foreign(target: Path, files: set[str], folders: set[str], root: Path) -> str | None:
    """The first path under `target` that is not the archive's own (`files` and `folders`, relative
    to `root`), or None when `target` holds only those: what an earlier extraction made."""
    for p in [target, *(sorted(target.rglob("*")) if target.is_dir() and not target.is_symlink() else [])]:
        name = p.relative_to(root).as_posix()
        own = folders if p.is_dir() else files
        if p.is_symlink() or name not in own:
            return name
    return None


def extract(zip_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Unpack a zip into `out_dir` through a temporary folder, so an unreadable, oversized or refused
    archive leaves nothing; returns the top-level paths it created or replaced. An existing entry is
    replaced only when it holds nothing but the archive's own paths."""
    zip_path, out = Path(zip_path), Path(out_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise DownloadError(f"{zip_path}: not a valid zip archive; remove it and download again") from None
    with archive, tempfile.TemporaryDirectory(prefix=f".{zip_path.name}.", dir=out) as tmp:
        members = _safe_members(archive, zip_path)
        limit = _check_size(members, zip_path)
        paths = [PurePosixPath(m.filename) for m in members]
        files = {p.as_posix() for p, m in zip(paths, members) if not m.is_dir()}
        folders = {q.as_posix() for p in paths for q in p.parents if q != PurePosixPath(".")}
        folders |= {p.as_posix() for p, m in zip(paths, members) if m.is_dir()}
        for name in sorted({p.parts[0] for p in paths if p.parts}):  # all checked before anything is replaced
            target = out / name
            if target.exists() or target.is_symlink():
                foreign = _foreign(target, files, folders, out)
                if foreign is not None:
                    raise DownloadError(
                        f"{target} exists and holds {foreign}, which is not in {zip_path.name}; glintru "
                        "replaces only what an earlier extraction made: move it away (or choose another --out) "
                        "and download again"
                    )
        try:
            _unpack(archive, members, Path(tmp), limit, zip_path)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DownloadError(f"{zip_path}: cannot extract ({exc}); remove it and download again") from None
        top = []
        for entry in sorted(Path(tmp).iterdir()):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(entry, target)
            top.append(target)
    return top


# -- what a downloaded file must look like when no checksum is registered --------------------------


def _record(line: str) -> bool:
    """A line of an Amazon review or metadata dump, parsed as the reader parses it (JSON, or the
    Python literals of the 2014 files)."""
    try:
        parse_record(Path("-"), 1, line, "an object")
    except SourceFormatError:
        return False
    return True


# (format, role) -> (what its lines are, a check of one line)
FIRST_LINES: dict[tuple[str, str], tuple[str, Callable[[str], bool]]] = {
    ("amazon-json", "interactions"): ("a review object", _record),
    ("amazon-json", "items"): ("an item object", _record),
    ("seq-txt", "interactions"): ("'user item item ...'", lambda line: len(line.split()) >= 2),
}


def _shown(data: bytes) -> str:
    text = data[:40].decode("utf-8", "replace").replace("\n", " ").strip()
    return f"{text!r}" + (", an HTML page" if text.lower().startswith(("<!doctype", "<html", "<?xml", "<head")) else "")


def file_problem(path: Path, f: RemoteFile, fmt: str) -> str | None:
    """What is wrong with `path` as the registered file `f` of a dataset of format `fmt`, in words
    (None when it looks right): a zip or gzip file must start with its magic number, and the first
    line of the (decompressed) text must parse as the format's lines."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "an empty file"
    if f.unzip or f.filename.endswith(".zip"):
        return None if zipfile.is_zipfile(path) else f"no zip archive (it starts {_shown(head)})"
    if f.filename.endswith(".gz"):
        if head[:2] != b"\x1f\x8b":
            return f"no gzip data (it starts {_shown(head)})"
        try:
            with gzip.open(path) as g:
                first = g.readline(1 << 20)
        except (OSError, EOFError, zlib.error) as e:
            return f"gzip data that does not decompress ({e})"
    else:
        with open(path, "rb") as fh:
            first = fh.readline(1 << 20)
    try:
        line = first.decode("utf-8").strip()
    except UnicodeDecodeError:
        return f"no text (it starts {_shown(first)})"
    expected = FIRST_LINES.get((fmt, f.role))
    if expected is not None and not expected[1](line):
        return f"a first line that is not {expected[0]} ({_shown(first)})"
    if expected is None and _shown(first).endswith("an HTML page"):
        return f"an HTML page ({_shown(first)})"
    return None


def download(
    spec: DatasetSpec,
    out_dir: str | os.PathLike,
    *,
    base_url: str | None = None,
    items: bool = True,
    progress: bool = True,
    say: Callable[[str], None] = print,
    **fetch_options,
) -> list[FetchResult]:
    """Fetch every file of a registered dataset into `out_dir` (item files only with `items`),
    verify each, and unzip archives. `base_url` replaces the directory of every address (a mirror).
    Returns one FetchResult per file; the file to prepare is `out_dir / spec.input`. `out_dir` may
    be any folder but another kind of glintru output; one this call creates is marked a download."""
    out = Path(out_dir)
    real = check_output(out, DOWNLOAD, allow_foreign=True)  # files are only added: other files may be there
    results = []
    with locked(out):
        if not real.exists():
            real.mkdir()
            mark(real, DOWNLOAD)
        for f in spec.files:
            if f.role != "interactions" and not items:
                continue
            results.append(_download_one(spec, f, out, base_url, progress, say, fetch_options))
    return results


def _download_one(
    spec: DatasetSpec,
    f: RemoteFile,
    out: Path,
    base_url: str | None,
    progress: bool,
    say: Callable[[str], None],
    fetch_options: dict,
) -> FetchResult:
    url = f.url_from(base_url)
    result = fetch(
        url,
        out / f.filename,
        sha256=f.sha256,
        size=f.size,
        progress=progress,
        say=say,
        check=lambda path: file_problem(path, f, spec.format),
        **fetch_options,
    )
    if f.unzip:
        wanted = [p for p in (spec.input, spec.items) if p]
        if result.reused and all((out / p).exists() for p in wanted):
            return result
        extract(result.path, out)
        missing = [p for p in wanted if not (out / p).exists()]
        if missing:
            raise DownloadError(
                f"{result.path}: the archive has no {', '.join(missing)}; the registry entry "
                f"{spec.name!r} does not match this file"
            )
    return result
