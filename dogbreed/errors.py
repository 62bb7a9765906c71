"""Errors a user can act on: entry points print their message, without a stack trace, and exit non-zero."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class DogBreedError(Exception):
    """Base class: the message says what happened and what to do next."""


class DataUnavailableError(DogBreedError):
    """The dataset is neither on disk nor downloadable."""


class DatasetError(DogBreedError):
    """The dataset is on disk but malformed (structure, class lists, bad files in strict mode)."""


class WeightsUnavailableError(DogBreedError):
    """Pretrained weights could neither be found locally nor downloaded."""


@contextmanager
def exit_on_user_error(*also: type[Exception], log: logging.Logger | None = None) -> Iterator[None]:
    """For command-line mains: a DogBreedError (or one of `also`) becomes `error: …` on stderr — or an error
    record of `log`, for apps whose log is a file too (Hydra's) — and exit code 2."""
    try:
        yield
    except (DogBreedError, *also) as exc:
        report_user_error(exc, log)
        sys.exit(2)


def report_user_error(exc: BaseException | str, log: logging.Logger | None = None) -> None:
    """The one way a command shows an error the user can act on (no stack trace)."""
    if log is not None:
        log.error("%s", exc)
    else:
        print(f"error: {exc}", file=sys.stderr)
