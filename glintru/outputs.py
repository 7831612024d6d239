"""Output directories: a marker file that says which kind of output a directory is, so that a command
replaces only its own kind and never its input, and an exclusive lock held while a command writes one."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from types import TracebackType

log = logging.getLogger("glintru")

MARKER_FILE = ".glintru.json"
LOCK_SUFFIX = ".lock"  # the lock of DIR is the file .DIR.lock beside it

RUN, DATASET, SEARCH, REPORT, DOWNLOAD = "run", "dataset", "search", "report", "download"
KINDS = {
    RUN: "a run directory (glintru train)",
    DATASET: "a prepared dataset (glintru prepare, glintru synthetic)",
    SEARCH: "a search experiment (tune/search.py)",
    REPORT: "a report (analysis/report.py)",
    DOWNLOAD: "a download folder (glintru download)",
}
REPLACEABLE = (RUN, DATASET, REPORT)  # kinds that --overwrite replaces whole


class OutputError(ValueError):
    """An output directory that a command must not write or replace, or one that another command holds."""


@dataclass(frozen=True)
class _Layout:
    required: tuple[tuple[str, ...], ...]  # each group: at least one of these names is there
    allowed: tuple[str, ...] | None  # patterns every top-level entry matches; None: anything


# Directories written before markers existed, recognised by the files glintru.train, glintru.data.dataset
# and analysis/report.py write there (tests/test_outputs.py checks these against what they write).
UNMARKED = {
    RUN: _Layout(
        (("config.json",), ("metrics.json", "checkpoint")),
        (
            "config.json",
            "metrics.json",
            "model.pt",
            "env.json",
            "test_users.parquet",
            "failed.json",  # a run stopped by an error, resumable once it is fixed
            "checkpoint",
            "eval-*.json",
            "eval-*_users.parquet",
            "*.tmp",  # left by a run killed while writing a file
            ".*.tmp-*",
        ),
    ),
    DATASET: _Layout(
        (("meta.json",), ("sequences.parquet",), ("items.parquet",)),
        ("meta.json", "sequences.parquet", "items.parquet"),
    ),
    REPORT: _Layout((("report.json",),), ("report.json", "report.md", "report.html", "tables", "figures")),
    SEARCH: _Layout((("experiment.json",),), None),
}


def marker_text(kind: str) -> str:
    """The marker's content, which depends on the kind alone (no time, no host), so that two equal
    outputs stay byte for byte equal."""
    return json.dumps({"kind": kind, "about": f"{KINDS[kind]}, written by glintru"}, indent=2) + "\n"


def mark(directory: str | os.PathLike, kind: str) -> None:
    """Write the marker of `kind` into `directory` (kept when already there)."""
    path = Path(directory) / MARKER_FILE
    if path.exists():
        return
    tmp = path.with_name(f"{MARKER_FILE}.tmp-{os.getpid()}")
    tmp.write_text(marker_text(kind))
    os.replace(tmp, path)


def _marked_kind(path: Path) -> str | None:
    try:
        kind = json.loads(path.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in KINDS else None


def _entry_names(directory: Path, names: list[str], shown: int = 4) -> str:
    labels = [n + "/" if (directory / n).is_dir() and not (directory / n).is_symlink() else n for n in names]
    more = f" and {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more


def _laid_out_as(names: list[str]) -> str | None:
    """The first kind whose required files a directory holding `names` has (extra files or not)."""
    return next(
        (kind for kind, layout in UNMARKED.items() if all(any(n in names for n in g) for g in layout.required)),
        None,
    )


def _foreign(names: list[str], layout: _Layout | None) -> list[str]:
    """The entries of a `layout` directory that its command does not write (none when it allows anything)."""
    if layout is None or layout.allowed is None:
        return []
    allowed = (*layout.allowed, MARKER_FILE, f"{MARKER_FILE}.tmp-*")
    return [n for n in names if not any(fnmatch(n, p) for p in allowed)]


def describe(directory: str | os.PathLike) -> tuple[str | None, str]:
    """(kind, what it holds in words) of an existing, non-empty directory; kind None for anything
    glintru did not write, and for an output that also holds files its command does not write (a
    user's notes, another output put inside it), which replacing it would delete. The marker
    decides the kind; without one, the files of an earlier glintru output."""
    d = Path(directory)
    names = sorted(os.listdir(d))
    if MARKER_FILE in names:
        kind = _marked_kind(d / MARKER_FILE)
        if kind is None:
            return None, f"a damaged {MARKER_FILE} marker"
    else:
        kind = _laid_out_as(names)
        if kind is None:
            return None, f"files glintru did not write ({_entry_names(d, names)})"
    extra = _foreign(names, UNMARKED.get(kind))
    if extra:
        return None, f"{KINDS[kind]}, but also files glintru did not write ({_entry_names(d, extra)})"
    return kind, KINDS[kind]


def output_around(path: str | os.PathLike) -> tuple[str, Path] | None:
    """(kind, directory) of the nearest glintru output that holds `path` (resolved), marked or
    laid out as one; None when no folder above it is one. A file written there is not its
    command's, and replacing that output would delete it."""
    for above in Path(path).parents:
        try:
            names = os.listdir(above)
        except OSError:
            continue
        kind = _marked_kind(above / MARKER_FILE) if MARKER_FILE in names else None
        kind = kind or _laid_out_as(names)
        if kind is not None:
            return kind, above
    return None


def file_mode(path: str | os.PathLike) -> int:
    """The permissions a file written at `path` gets: those of the file it replaces, else what the
    umask leaves of rw-rw-rw- (a plain open's; the temporary file it is written through has 0600)."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def resolve(path: str | os.PathLike, flag: str = "--out") -> Path:
    """The absolute path with every symbolic link resolved (the output as the filesystem sees it)."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as e:  # a symbolic link loop
        raise OutputError(f"{flag} {path}: cannot resolve it ({e}); choose another {flag}") from None


def check_output(
    path: str | os.PathLike,
    kind: str,
    *,
    inputs: Mapping[str, str | os.PathLike | None] | Iterable[tuple[str, str | os.PathLike | None]] = (),
    replace: bool = False,
    allow_foreign: bool = False,
    flag: str = "--out",
) -> Path:
    """`path` resolved, once it is fit to be written as `kind`: absent, an empty directory, or a
    directory of that kind. OutputError naming the path and what it holds otherwise: the command's
    own input (`inputs`: {flag: path} or (label, path) pairs) or a folder above it, a place inside a
    run, dataset or report, a file, another kind of output, files glintru did not write (unless
    `allow_foreign`: a command that only adds files), and with `replace` (what is there is about to
    be deleted) a symbolic link, which a recursive delete must never follow."""
    given = Path(path)
    real = resolve(given, flag)
    for name, value in inputs.items() if isinstance(inputs, Mapping) else inputs:
        if value is None:
            continue
        source = resolve(value, name)
        if source == real:
            raise OutputError(f"{flag} {given} is this command's input ({name} {value}); choose another {flag}")
        if real in source.parents:
            raise OutputError(f"{flag} {given} holds this command's input ({name} {value}); choose another {flag}")
    for above in real.parents:
        holder = _marked_kind(above / MARKER_FILE) if (above / MARKER_FILE).is_file() else None
        if holder in REPLACEABLE:  # a later --overwrite of that one would delete this one with it
            raise OutputError(f"{flag} {given} is inside {KINDS[holder]}, {above}; choose another {flag}")
    if not real.exists():
        return real
    if not real.is_dir():
        raise OutputError(f"{flag} {given}: exists and is not a directory; choose another {flag}")
    if replace and given.is_symlink():
        raise OutputError(
            f"{flag} {given} is a symbolic link to {real}; replacing it would delete through the link: "
            f"pass {flag} {real} to replace that directory, or choose another {flag}"
        )
    if not os.listdir(real):
        return real
    found, what = describe(real)
    if found == kind or (allow_foreign and found is None):
        return real
    unlike = "" if what.startswith(KINDS[kind]) else f", not {KINDS[kind]}"
    raise OutputError(f"{flag} {given} holds {what}{unlike}; choose another {flag}")


def remove_output(real: Path) -> None:
    """Delete a directory that `check_output(..., replace=True)` passed (its resolved path)."""
    if real.is_symlink():  # made since the check: a link is never followed by rmtree
        raise OutputError(f"{real} became a symbolic link; nothing was removed")
    shutil.rmtree(real)


def replace_dir(new: Path, out: Path) -> None:
    """Put the finished directory `new` at `out` (a sibling), setting aside what `out` held and
    deleting that only once `new` is in place, so a failure leaves one or the other whole."""
    old = None
    if out.exists():
        if out.is_symlink():
            raise OutputError(f"{out} became a symbolic link; nothing was replaced")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()  # a free name beside `out`, for the rename
        os.rename(out, old)
    try:
        os.rename(new, out)
    except BaseException:
        if old is not None:
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old)


# -- the lock ---------------------------------------------------------------------------------------


def lock_path(real: Path) -> Path:
    """The lock file of output directory `real`: beside it, so that renaming a finished temporary
    directory onto `real` (or setting the old one aside) leaves the lock where it was."""
    return real.parent / f".{real.name}{LOCK_SUFFIX}"


def _holder(fd: int) -> dict[str, object]:
    try:
        info = json.loads(os.pread(fd, 1 << 16, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _runs_here(info: Mapping[str, object]) -> bool | None:
    """Whether the holder's pid runs on this host; None when it was another host."""
    pid = info.get("pid")
    if info.get("host") != platform.node() or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _who(info: Mapping[str, object]) -> str:
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on host {info.get('host')}"


class OutputLock:
    """An exclusive advisory lock (flock) on an output directory, held while a command writes it.

    A second command is refused with an OutputError naming the holder's pid and host. The kernel
    frees a flock when its process dies, so a lock file left by a killed command is stale: the next
    command takes it over and says so. The lock file is removed on release; parent folders created
    for it are removed again if they stayed empty."""

    def __init__(self, path: str | os.PathLike, *, flag: str = "--out") -> None:
        self.flag = flag
        self.real = resolve(path, flag)
        if not self.real.name:
            raise OutputError(f"{flag} {path}: not a directory a command can write; choose another {flag}")
        self.file = lock_path(self.real)
        self._fd: int | None = None
        self._made: list[Path] = []

    def _make_parents(self) -> None:
        missing = [p for p in [self.file.parent, *self.file.parent.parents] if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            self._made.append(p)

    def _open_locked(self) -> int | None:
        """An fd holding the flock of the current lock file; None where the filesystem has no locks."""
        while True:
            fd = os.open(self.file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                info = _holder(fd)
                os.close(fd)
                gone = " (it no longer runs, but a process it started still holds the lock)"
                raise OutputError(
                    f"{self.real} is being written by another command: {_who(info)}"
                    + (f", since {info['since']}" if "since" in info else "")
                    + (f" ({info['command']})" if info.get("command") else "")
                    + (gone if _runs_here(info) is False else "")
                    + f"; wait for it to finish or choose another {self.flag}"
                ) from None
            except OSError as e:
                os.close(fd)
                if e.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    log.warning("%s: this filesystem has no file locks; writing without one", self.real)
                    return None
                raise
            # The holder we raced with may have removed the file (release) after our open: then this
            # flock is on a deleted file and another command may hold a new one; try again.
            try:
                same = os.stat(self.file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def acquire(self) -> OutputLock:
        try:
            self._make_parents()
            fd = self._open_locked()
        except OutputError:
            self._remove_parents()
            raise
        except OSError as e:
            self._remove_parents()
            raise OutputError(
                f"{self.flag} {self.real}: cannot create the lock file {self.file} ({e.strerror or e}); "
                f"choose another {self.flag}"
            ) from None
        self._fd = fd
        if fd is None:
            return self
        left = _holder(fd)
        if left:
            state = "no longer runs" if _runs_here(left) is False else "no longer holds it"
            log.warning("%s: taking over the stale lock of %s, which %s", self.real, _who(left), state)
        info = {
            "pid": os.getpid(),
            "host": platform.node(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300] if sys.argv else "",
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            # removed while still held: a command that opened it meanwhile sees the file gone and retries
            self.file.unlink(missing_ok=True)
            os.close(fd)
        self._remove_parents()

    def _remove_parents(self) -> None:
        for p in reversed(self._made):
            try:
                p.rmdir()
            except OSError:  # the command wrote into it
                break
        self._made = []

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def locked(path: str | os.PathLike, *, flag: str = "--out") -> OutputLock:
    """`with locked(out):` holds the lock of output directory `out` for the block."""
    return OutputLock(path, flag=flag)
