"""Errors a user can act on: entry points print their message, without a stack trace, and exit non-zero."""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from dogbreed.requirements import extra_providing


class DogBreedError(Exception):
    """Base class: the message says what happened and what to do next."""


class DataUnavailableError(DogBreedError):
    """The dataset is neither on disk nor downloadable."""


class DatasetError(DogBreedError):
    """The dataset is on disk but malformed (structure, class lists, bad files in strict mode)."""


class WeightsUnavailableError(DogBreedError):
    """Pretrained weights could neither be found locally nor downloaded."""


class StorageError(DogBreedError, OSError):
    """A write failed: the disk is full, the folder read-only or missing (`dogbreed.storage`). An OSError
    too, so that code which tolerates a failed write (a cache) still does."""


# torch.save's C++ writer reports a short write without an errno
TORCH_SHORT_WRITE = re.compile(r"unexpected pos|file write failed|No space left")
WHY = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOTDIR: "a parent is a file, not a folder",
    errno.ENOENT: "a parent folder is missing",
}


def fault(exc: BaseException) -> str | None:
    """What a write error means for the user (`dogbreed.storage` says it with the path), or None when it
    is no storage fault."""
    if isinstance(exc, OSError) and exc.errno in WHY:
        return WHY[exc.errno]
    if isinstance(exc, RuntimeError) and TORCH_SHORT_WRITE.search(str(exc)):
        return "the disk is full"
    return None


# Hydra's switch for its own trace; every command honours it, the argparse ones take `--verbose` too
TRACE_ENV = "HYDRA_FULL_ERROR"


@contextmanager
def exit_on_user_error(
    *also: type[Exception], log: logging.Logger | None = None, verbose: bool | None = None
) -> Iterator[None]:
    """For command-line mains: a DogBreedError (or one of `also`) becomes `error: …` on stderr — or an error
    record of `log`, for apps whose log is a file too (Hydra's) — and exit code 2.

    Any other exception — from PyTorch, Lightning, the SDK — is one sentence too, with exit code 1, unless
    the user asked for the trace: `verbose` (the command's `--verbose`; None for the Hydra apps, which have
    no such flag) or TRACE_ENV=1. Then it propagates with its trace.
    """
    try:
        yield
    except (DogBreedError, *also) as exc:
        report_user_error(exc, log)
        sys.exit(2)
    except Exception as exc:
        if verbose or os.environ.get(TRACE_ENV) == "1":
            raise
        if (hint := missing_extra(exc)) is not None:
            report_user_error(hint, log)
            sys.exit(2)
        if fault(exc) is not None:  # a write outside our own writers: the path and why, as theirs say it
            where = getattr(exc, "filename", None) or "a file"
            report_user_error(f"cannot write {where}: {fault(exc)} ({exc})", log)
            sys.exit(2)
        said = " ".join(str(exc).split())  # one line, the cause Hydra's instantiate appends included
        said = said if len(said) <= 400 else said[:399] + "…"
        switch = f"{TRACE_ENV}=1" if verbose is None else "--verbose"
        report_user_error(f"{type(exc).__name__}: {said} ({switch} shows the trace)", log)
        sys.exit(1)


def missing_extra(exc: BaseException) -> str | None:
    """For a package that one of dogbreed's extras installs and this install lacks: which, and the pip
    command; else None."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    extra = extra_providing(exc.name)
    if extra is None:
        return None
    return f"{exc.name} is not installed; the `{extra}` extra has it: pip install 'dogbreed[{extra}]'"


def report_user_error(exc: BaseException | str, log: logging.Logger | None = None) -> None:
    """The one way a command shows an error the user can act on (no stack trace)."""
    if log is not None:
        log.error("%s", exc)
    else:
        print(f"error: {exc}", file=sys.stderr)
