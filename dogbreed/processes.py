"""Child processes that never outlive their parent.

A supervisor, a CI runner or a test stops a command with SIGTERM (or SIGINT); Python's default is to die on
the spot, leaving any child it started running and holding its port. Two guards, used by every command
that starts a process (the launcher's local training and endpoint, `make demo`'s server, DDP workers):

- `die_with_parent()`: the kernel sends this process SIGTERM when its parent dies, however it died
  (SIGKILL included). Linux only; elsewhere a no-op.
- `run_child()`: start a command with that guard, forward SIGTERM/SIGINT to it, and on any way out
  (signal, error, Ctrl-C) terminate it and wait for it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel for `sig` when the parent process exits (and exit at once if it already has)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return  # not fatal: the parent's own handlers still stop us
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


def raise_on_signals() -> None:
    """SIGTERM raises SystemExit in the main thread (SIGINT already raises KeyboardInterrupt), so `finally`
    blocks and `with` exits run and stop what was started."""

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


@contextmanager
def child(command: Sequence[str], stop_timeout: float = 10, **popen: Any) -> Iterator[subprocess.Popen]:
    """A running `command` that is terminated (then killed after `stop_timeout` s) when the block exits."""
    process = subprocess.Popen(list(command), preexec_fn=die_with_parent, **popen)
    try:
        yield process
    finally:
        stop(process, stop_timeout)


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_child(command: Sequence[str], **popen: Any) -> int:
    """Run `command` to its end and return its exit code; a signal to us stops it too."""
    raise_on_signals()
    with child(command, **popen) as process:
        try:
            return process.wait()
        except KeyboardInterrupt:  # SIGINT: the child is stopped on the way out, as for SIGTERM
            stop(process)
            return 128 + signal.SIGINT
