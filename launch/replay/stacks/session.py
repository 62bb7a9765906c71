"""Run a command as the leader of a new session and, on any way out, stop every process of that session.

    python session.py COMMAND [ARG…]      (standard library only: it runs before any stack environment)

Ray's daemons (gcs_server, raylet, the dashboard and its agents, `ray::` workers) outlive the `ray start`
that forked them, and its workers lead process groups of their own, so neither the command's end nor a
signal to its process group reaches them. They all keep the session id of whoever started them, which is
this process: when the command ends, or on SIGTERM, SIGINT or SIGHUP (and on the parent's death, through
the parent-death signal its starter sets), `stop_session` sends SIGTERM to every process of the session,
waits, and SIGKILLs the rest. `ray stop` is never used: it kills every Ray process on the machine. This
process is also the session's child subreaper, so the daemons' zombies are reaped here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36


def session_processes(sid: int) -> list[int]:
    """The live processes whose session id is `sid` (zombies are gone already)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, _pgrp, session = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(session) == sid and state != "Z":
            found.append(int(entry))
    return found


def reap() -> None:
    """Collect exited children (ours, and the orphans this subreaper inherited)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


def stop_session(sid: int, grace: float = 3.0, reaper: bool = False) -> list[int]:
    """SIGTERM every process of session `sid` but this one, wait up to `grace` s, SIGKILL what is left;
    returns what was still alive after that (nothing, unless a process is stuck in the kernel). Only the
    session's `reaper` collects exit statuses (elsewhere that would take other children's)."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        targets = [pid for pid in session_processes(sid) if pid != os.getpid()]
        for pid in targets:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while targets and time.monotonic() < deadline:
            time.sleep(0.1)
            if reaper:
                reap()
            targets = [pid for pid in session_processes(sid) if pid != os.getpid()]
        if not targets:
            return []
    return targets


def main(command: list[str]) -> int:
    if os.getsid(0) != os.getpid():
        os.setsid()
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, leave)
    code = 1
    try:
        leader = os.posix_spawnp(command[0], command, os.environ)
        while True:
            pid, status = os.waitpid(-1, 0)
            if pid == leader:
                code = os.waitstatus_to_exitcode(status)
                break
    except SystemExit as stop:
        code = int(stop.code or 0)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the stop short
        left = stop_session(os.getpid(), reaper=True)
        if left:
            print(f"session.py: processes {left} survived SIGKILL", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
