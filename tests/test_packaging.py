"""The wheel: every package inside, every import declared, and an install that runs with the core only."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
EXTRA_NAMED = re.compile(r"the `(\w+)` extra")


def declared(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def top_level_imports(path: Path) -> set[str]:
    """Modules a file imports when it is loaded (statements in the module body, not inside functions)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_wheel_lists_every_package_under_dogbreed() -> None:
    on_disk = {
        ".".join(init.parent.relative_to(REPO).parts) for init in (REPO / "dogbreed").rglob("__init__.py")
    }
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"]) - {"dogbreed.conf"}
    assert listed == on_disk


def test_every_third_party_import_is_declared_where_its_module_says() -> None:
    core = declared(PYPROJECT["project"]["dependencies"])
    extras = {name: declared(reqs) for name, reqs in PYPROJECT["project"]["optional-dependencies"].items()}
    distributions = packages_distributions()
    problems = []
    for path in sorted((REPO / "dogbreed").rglob("*.py")):
        named = EXTRA_NAMED.findall(ast.get_docstring(ast.parse(path.read_text())) or "")
        allowed = core.union(*(extras[name] for name in named))
        for module in sorted(top_level_imports(path) - set(sys.stdlib_module_names) - {"dogbreed"}):
            owners = {canonicalize_name(d) for d in distributions.get(module, [module])}
            if not owners & allowed:
                where = f"the {named} extra(s)" if named else "the core dependencies"
                problems.append(f"{path.relative_to(REPO)} imports {module} ({owners}), not in {where}")
    assert problems == [], "\n".join(problems)


@pytest.mark.slow
def test_the_wheel_trains_and_imports_with_core_dependencies_only(tmp_path: Path) -> None:
    """Build the wheel, install it with its core dependencies into a fresh venv, use it from elsewhere."""
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = lambda *args, **kw: subprocess.run(args, capture_output=True, text=True, timeout=900, **kw)  # noqa: E731
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(REPO))
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("dogbreed-*.whl"))
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    python = str(venv / "bin" / "python")
    installed = run(python, "-m", "pip", "install", "--quiet", str(wheel))
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["TORCH_HOME"] = str(tmp_path / "torch_home")
    extras = run(python, "-c", "import optuna", cwd=elsewhere, env=env)
    assert extras.returncode != 0, "an extra's package was installed: the venv is not core-only"
    code = "import dogbreed\nfrom dogbreed import DogBreedClassifier, DogBreedDataModule\n"
    code += "print(dogbreed.__file__)"
    imported = run(
        python,
        "-c",
        code,
        cwd=elsewhere,
        env=env,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert str(venv) in imported.stdout  # the installed copy, not the source tree
    trained = run(
        python,
        "-m",
        "dogbreed.train",
        "+experiment=demo",
        "trainer.max_epochs=1",
        "hydra.run.dir=run",
        cwd=elsewhere,
        env=env,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "test_acc=" in trained.stdout
    assert (elsewhere / "run" / "model" / "model.pt").is_file()
    assert (elsewhere / "data" / "demo" / "train").is_dir()  # generated where the user stands
