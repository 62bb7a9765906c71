"""The argparse commands' shared front door: `--verbose`, argument errors in one line, checked numbers.

`python -m dogbreed.serve | predict | export | package | report | evaluate | demo` build their parser with
`parser` and run inside `dogbreed.errors.exit_on_user_error(verbose=args.verbose)`, so each behaves as the
training app does: a user error is one `error:` line with exit code 2, anything else one sentence with exit
code 1, and `--verbose` (or HYDRA_FULL_ERROR=1, Hydra's switch) shows the trace.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from dogbreed.errors import TRACE_ENV, report_user_error


class OneLineParser(argparse.ArgumentParser):
    """argparse's own errors (`--port abc`, a missing argument) as one line too: the usage block it would
    print first is what `--help` is for."""

    def error(self, message: str) -> NoReturn:
        report_user_error(f"{message} (see {self.prog} --help)")
        sys.exit(2)


def parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """The parser of `python -m MODULE`, with its module docstring as the help and `--verbose`."""
    made = OneLineParser(
        prog=f"python -m {module}", description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    made.add_argument(
        "--verbose", action="store_true", help=f"an unexpected error shows its trace (as {TRACE_ENV}=1 does)"
    )
    return made


NAMES = {int: "an integer", float: "a number"}


def at_least(minimum: float, kind: type[int] | type[float] = int) -> Callable[[str], float]:
    """An argument type: a number (`kind`) of at least `minimum`, refused by argparse in one line."""

    def number(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {NAMES[kind]}, not {text!r}") from None
        if not value >= minimum:  # NaN too
            raise argparse.ArgumentTypeError(f"must be ≥ {minimum:g}, not {text}")
        return value

    return number


def port(text: str) -> int:
    """A TCP port: 0 (any free one) to 65535."""
    value = at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port (0 to 65535), not {text}")
    return int(value)
