"""No process we start outlives its parent: SIGTERM, SIGINT and SIGKILL to the parent alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, ctrl_c_reaches

# A parent that starts a long child through run_child and prints the child's pid.
PARENT = """
import sys, threading, time
from dogbreed.processes import run_child
import psutil
def report():
    while not (kids := psutil.Process().children()):
        time.sleep(0.01)
    print(kids[0].pid, flush=True)
threading.Thread(target=report, daemon=True).start()
sys.exit(run_child([sys.executable, "-c", "import time; time.sleep(120)"]))
"""


def gone(pid: int, within: float = 60) -> bool:
    """The process ended (or is a zombie) within `within` s: a hang guard, generous for a loaded machine."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_child_ends_with_its_parent(sig: signal.Signals) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
        preexec_fn=ctrl_c_reaches,
    )
    try:
        child_pid = int(parent.stdout.readline())
        parent.send_signal(sig)
        parent.wait(10)
        assert gone(child_pid), f"child {child_pid} outlived its parent ({sig.name})"
    finally:
        parent.kill()
        parent.wait()


def test_die_with_parent_reaches_a_grandchild_whose_parent_is_killed(tmp_path: Path) -> None:
    # the child asks for it itself (as a DDP worker does); its parent is SIGKILLed without any cleanup
    child = "from dogbreed.processes import die_with_parent; die_with_parent(); print('armed', flush=True); "
    child += "import time; time.sleep(120)"
    code = f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {child!r}]); "
    code += "print(p.pid, flush=True); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        lines = {parent.stdout.readline().strip() for _ in range(2)}  # the child's pid, and its "armed"
        assert "armed" in lines
        child_pid = int(next(line for line in lines if line != "armed"))
        parent.kill()
        parent.wait(10)
        assert gone(child_pid)
    finally:
        parent.kill()
        parent.wait()
