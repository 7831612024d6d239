"""How every command line of glintru ends: the library's log on stderr, one `error: ...` line and exit
code 2 for a user's mistake, 130 for an interruption, 0 for success."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

OK, USER_ERROR, INTERRUPTED = 0, 2, 130
# what a mistake in the flags or the files they name raises (SearchError, SignificanceError,
# DatasetError, OutputError are ValueErrors; a device that is not there a RuntimeError)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, FileExistsError, RuntimeError)


@contextlib.contextmanager
def library_log(level: int = logging.INFO, fmt: str = "%(message)s") -> Iterator[None]:
    """The library's log ("glintru") on stderr while a command runs; removed again on return, as tests
    call a command's main() many times in one process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(fmt))
    logger = logging.getLogger("glintru")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


def _message(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args:  # str() of a KeyError is its repr
        return str(e.args[0])
    return str(e)


def run_command(
    body: Callable[[], int],
    *,
    errors: tuple[type[BaseException], ...] = USER_ERRORS,
    level: int = logging.INFO,
    fmt: str = "%(message)s",
    interrupted: tuple[type[BaseException], ...] = (),
    resume_hint: str = "",
    stopped_early: str = "interrupted",
) -> int:
    """Run a command's body with the library's log shown, and turn how it ends into an exit code.
    `errors`: the exceptions that stand for a user's mistake in this command (anything else is a
    fault of the program, and keeps its traceback).
    `interrupted`: exceptions that mean the command was stopped with its work saved (their message
    says how to go on, `resume_hint` adds a line); they are caught before the user errors.
    `stopped_early`: the line for a Ctrl-C that reaches the command itself."""
    with library_log(level, fmt):
        try:
            return body()
        except interrupted as e:
            print(f"interrupted: {e}" + (f"\n{resume_hint}" if resume_hint else ""), file=sys.stderr)
            return INTERRUPTED
        except KeyboardInterrupt:
            print(stopped_early, file=sys.stderr)
            return INTERRUPTED
        except errors as e:
            print(f"error: {_message(e)}", file=sys.stderr)
            return USER_ERROR
