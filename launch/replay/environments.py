"""Environments with a SageMaker image's Python and packages, built from the package index, apart from .venv.

A replayed stack runs on what its image has, not on this repository's `.venv`: `environment(spec)` is a
virtual environment with the Python of the image's profile (`conf/launch/images/<name>.yaml`) and exactly
the profile's packages (what the image has, at its versions, of what the stack's code path could use),
plus what the stack needs that the image gets some other way. It is cached under `stacks_root()`, keyed
by its content (Python version and requirement lines), and only used once its build finished
(`.complete` is written last, under a lock).

`overlay(base, folder)` is a throwaway environment on top of a cached one: the model's
`code/requirements.txt` is installed into it the way the image installs it (`pip install -r`), and
packages the base already satisfies are not installed again, so the cached environment stays clean.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dogbreed.errors import DogBreedError
from launch.images import IMAGES, profile

COMPLETE = ".complete"  # written last: an environment without it is a half-built one
BUILD_GB = 8  # the most one build takes, pip's unpacking included (Ray Serve's is 7.4 GB built)
VERSION = "import sys; print('%d.%d' % sys.version_info[:2])"


@dataclass(frozen=True)
class StackEnvironment:
    """What one stack's environment holds, relative to its image's profile."""

    image: str  # the profile's name
    extras: dict[str, str] = field(default_factory=dict)  # package → the pip extra the image installs
    added: tuple[str, ...] = ()  # requirement lines the image has without naming them


def requirements(spec: StackEnvironment) -> list[str]:
    """The requirement lines: the profile's packages, pinned where it says the version."""
    lines = []
    for name, version in profile(spec.image).packages.items():
        extra = f"[{spec.extras[name]}]" if name in spec.extras else ""
        lines.append(f"{name}{extra}=={version}" if version else f"{name}{extra}")
    return [*lines, *spec.added]


def stacks_root() -> Path:
    """Where stack environments are cached: `DOGBREED_STACKS`, else the user's cache folder."""
    if os.environ.get("DOGBREED_STACKS"):
        return Path(os.environ["DOGBREED_STACKS"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dogbreed" / "stacks"


def isolated_environ(*also: str) -> dict[str, str]:
    """This machine's variables less what points a Python at another environment (and any `also`
    prefixes): `.venv`'s PYTHONPATH would otherwise leak this repository into the image's environment."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", *also))}


def run(command: list, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, env=isolated_environ(), check=kwargs.pop("check", True), **kwargs)


@functools.cache  # subprocesses each time; `location` asks once per stack, `make stacks` twice
def find_python(version: str) -> Path:
    """An interpreter of `version` ("3.13"): pyenv's, then one on PATH; none is one line saying what to do."""
    candidates = []
    pyenv_root = os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv"
    candidates += sorted(Path(pyenv_root).glob(f"versions/{version}.*/bin/python{version}"), reverse=True)
    if shutil.which("pyenv"):
        prefixes = run(
            ["pyenv", "prefix", version], capture_output=True, text=True, check=False
        ).stdout.split(":")
        candidates += [Path(p.strip()) / "bin" / f"python{version}" for p in prefixes if p.strip()]
    on_path = shutil.which(f"python{version}")
    candidates += [Path(on_path)] if on_path else []
    for candidate in candidates:
        probe = run([candidate, "-c", VERSION], capture_output=True, text=True, check=False)
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    raise DogBreedError(
        f"the replay stack needs Python {version} and none is installed: install it "
        f"(`pyenv install {version}`, or your system's python{version} package) and run again"
    )


@functools.cache
def python_version(python: Path) -> str:
    probe = "import platform; print(platform.python_version())"
    return run([python, "-c", probe], capture_output=True, text=True).stdout.strip()


def location(spec: StackEnvironment) -> tuple[Path, Path, list[str], str]:
    """Where `spec`'s environment is cached (a folder named by its image and content), the interpreter it
    is built with, its requirement lines and its key; nothing is built."""
    python = find_python(str(profile(spec.image).python))
    lines = requirements(spec)
    content = {"python": python_version(python), "requirements": lines}
    key = json.dumps(content, sort_keys=True)
    return stacks_root() / f"{spec.image}-{hashlib.sha256(key.encode()).hexdigest()[:12]}", python, lines, key


def environment(spec: StackEnvironment) -> Path:
    """The cached environment of `spec`, built first if it is not there yet (minutes: see the README)."""
    target, python, lines, key = location(spec)
    if (target / COMPLETE).is_file():
        return target
    check_space(1)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path(target), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second builder waits, then finds it complete
        if not (target / COMPLETE).is_file():
            build(target, python, lines, key)
    return target


def missing(specs: list[StackEnvironment]) -> int:
    """How many of `specs` are not built yet."""
    return sum(not (location(spec)[0] / COMPLETE).is_file() for spec in specs)


def check_space(builds: int) -> None:
    """Room for `builds` environments under `stacks_root()` (`BUILD_GB` each), or one line saying what to
    do: a build that fills the disk fails half-way, and a full disk fails everything else on it too."""
    root = stacks_root()
    existing = next(p for p in (root, *root.parents) if p.exists())
    free_gb, need_gb = shutil.disk_usage(existing).free / 1e9, builds * BUILD_GB
    if free_gb < need_gb:
        raise DogBreedError(
            f"building {builds} replay environment(s) takes up to {need_gb} GB and {existing} has "
            f"{free_gb:.1f} GB free: free some space, prune old ones (python -m launch.replay.stacks "
            "--prune), or set DOGBREED_STACKS to a folder on a larger disk"
        )


def lock_path(target: Path) -> Path:
    return target.with_name(f"{target.name}.lock")


def build_log(target: Path) -> Path:
    return target.with_name(f"{target.name}.build.log")


def stale(current: list[Path]) -> list[Path]:
    """The cached environments of known images that none of `current` is: what an older profile built
    (each up to 7.5 GB), or a build that never finished."""
    images = {p.stem for p in IMAGES.glob("*.yaml")}
    root = stacks_root()
    found = root.iterdir() if root.is_dir() else []
    named = (
        (p, re.fullmatch(r"(.+)-[0-9a-f]{12}", p.name)) for p in found if p.is_dir() and p not in current
    )
    return sorted(p for p, match in named if match and match[1] in images)


def remove(target: Path) -> bool:
    """Deletes a cached environment, its lock and build log; False (nothing deleted) while a build of it
    holds the lock. A replay that still runs on it loses its packages: prune between replays."""
    with open(lock_path(target), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        (target / COMPLETE).unlink(missing_ok=True)  # half-deleted is never taken for built
        shutil.rmtree(target)
        build_log(target).unlink(missing_ok=True)
        lock_path(target).unlink()
    return True


def build(target: Path, python: Path, lines: list[str], key: str) -> None:
    log = build_log(target)
    print(f"building the replay environment {target} (Python {python}); pip's log: {log}", flush=True)
    started = time.monotonic()
    shutil.rmtree(target, ignore_errors=True)  # what an interrupted build left
    run([python, "-m", "venv", target])
    (target / "requirements.txt").write_text("\n".join(lines) + "\n")
    pip = [target / "bin" / "python", "-m", "pip", "--disable-pip-version-check"]
    with log.open("w") as out:
        install = run(
            [*pip, "install", "-r", target / "requirements.txt"], stdout=out, stderr=out, check=False
        )
    if install.returncode != 0:
        raise DogBreedError(f"pip could not build the replay environment {target}: see {log}")
    check = run([*pip, "check"], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise DogBreedError(f"the replay environment {target} is inconsistent: {check.stdout.strip()}")
    record = {**json.loads(key), "built_s": round(time.monotonic() - started)}
    (target / COMPLETE).write_text(json.dumps(record) + "\n")
    print(f"built {target} in {record['built_s']} s", flush=True)


def site_packages(python: Path) -> str:
    probe = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return run([python, "-c", probe], capture_output=True, text=True).stdout.strip()


def overlay(base: Path, folder: Path) -> Path:
    """A fresh environment in `folder` that sees everything `base` has; returns its python. What pip
    installs there shadows `base` and never changes it (pip does not uninstall outside its prefix)."""
    run([base / "bin" / "python", "-m", "venv", "--without-pip", folder])
    python = folder / "bin" / "python"
    # a `.pth` puts the base's site-packages on sys.path after the overlay's own
    (Path(site_packages(python)) / "stack-base.pth").write_text(site_packages(base / "bin" / "python") + "\n")
    return python
