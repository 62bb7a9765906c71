"""Errors a user can act on: entry points print their message, without a stack trace, and exit non-zero."""

from __future__ import annotations

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
def exit_on_user_error(*also: type[Exception]) -> Iterator[None]:
    """For command-line mains: a DogBreedError (or one of `also`) becomes `error: …` on stderr and exit 2."""
    try:
        yield
    except (DogBreedError, *also) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
