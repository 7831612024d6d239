"""Downloads of registered datasets: HTTP with a progress bar, resume of a partial file, checksum
verification and zip extraction; a file appears under its final name only once it is complete.

A download writes NAME.part, resumes it with an HTTP Range request when it is there (a server that
ignores Range answers 200 and the file starts over), checks the size and sha256 where the registry
knows them, and only then renames NAME.part to NAME. A broken connection is retried from where it
stopped; when the attempts are spent the .part file stays, and the same command resumes it.
"""

from __future__ import annotations

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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from glintru.data.registry import DatasetSpec, RemoteFile

CHUNK = 1 << 16
USER_AGENT = "glintru-download"


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
) -> FetchResult:
    """Download `url` to `dest` (via dest.part, resumed when present), verify it, then rename.

    An existing `dest` is reused after checking its sha256 (when known). A wrong size or sha256
    removes the .part file and raises ChecksumError; a connection that keeps failing raises
    DownloadError and leaves the .part file for the next call to resume."""
    dest = Path(dest)
    if dest.exists():
        digest = sha256_file(dest)
        if sha256 is not None and digest != sha256:
            raise ChecksumError(
                f"{dest} exists but its sha256 is {digest}, not the registered {sha256}; remove it and download again"
            )
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
    os.replace(part, dest)
    return FetchResult(dest, digest, got, verified=sha256 is not None, reused=False)


def _safe_members(archive: zipfile.ZipFile, path: Path) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    for m in members:
        p = PurePosixPath(m.filename)
        if p.is_absolute() or ".." in p.parts:
            raise DownloadError(f"{path}: archive member {m.filename!r} points outside the archive's folder")
    return members


def extract(zip_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """Unpack a zip into `out_dir` through a temporary folder, so an unreadable archive leaves nothing;
    returns the top-level paths it created or replaced."""
    zip_path, out = Path(zip_path), Path(out_dir)
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile:
        raise DownloadError(f"{zip_path}: not a valid zip archive; remove it and download again") from None
    with archive, tempfile.TemporaryDirectory(prefix=f".{zip_path.name}.", dir=out) as tmp:
        try:
            archive.extractall(tmp, members=_safe_members(archive, zip_path))
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
    Returns one FetchResult per file; the file to prepare is `out_dir / spec.input`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = []
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
    result = fetch(url, out / f.filename, sha256=f.sha256, size=f.size, progress=progress, say=say, **fetch_options)
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
