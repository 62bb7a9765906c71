"""Errors a user can act on: entry points print their message, without a stack trace, and exit non-zero."""


class DogBreedError(Exception):
    """Base class: the message says what happened and what to do next."""


class DataUnavailableError(DogBreedError):
    """The dataset is neither on disk nor downloadable."""


class DatasetError(DogBreedError):
    """The dataset is on disk but malformed (structure, class lists, bad files in strict mode)."""


class WeightsUnavailableError(DogBreedError):
    """Pretrained weights could neither be found locally nor downloaded."""
