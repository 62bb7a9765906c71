"""What pyproject.toml declares, read from the source tree when it is there (a checkout, or the source a
training job runs), else from the installed package's metadata: the core dependencies, each extra's, and
which extra installs a package. Imports nothing of dogbreed, so that `dogbreed.errors` can name the extra
of a missing package."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def declared_requirements(extra: str | None = None) -> list[str]:
    """`pyproject.toml`'s core dependencies (or one extra's): from the source tree when it is there (a
    checkout, or the source a training job runs), else from the installed package's metadata."""
    if PYPROJECT.is_file():
        project = tomllib.loads(PYPROJECT.read_text())["project"]
        return list(project["optional-dependencies"][extra] if extra else project["dependencies"])
    out = []
    for line in metadata.requires("dogbreed") or []:
        spec, _, marker = line.partition(";")
        wanted = _EXTRA.search(marker)
        if (wanted.group(1) if wanted else None) == extra:
            out.append(spec.strip())
    return out


def requirement_name(spec: str) -> str:
    return re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower().replace("_", "-")


def declared_extras() -> list[str]:
    """The extras' names, in pyproject.toml's order (from the source tree, else the installed metadata)."""
    if PYPROJECT.is_file():
        return list(tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"])
    return metadata.metadata("dogbreed").get_all("Provides-Extra") or []


def extra_providing(module: str) -> str | None:
    """The first extra that installs `module` (every extra's packages import under their own names)."""
    name = requirement_name(module.split(".")[0])
    for extra in declared_extras():
        if any(requirement_name(spec) == name for spec in declared_requirements(extra)):
            return extra
    return None
