"""The wheel: every package inside, every import declared, and an install that runs with the core only."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from importlib import metadata
from importlib.metadata import Distribution, packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import HANG_GUARD_S, REPO

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


# torch and torchvision with what they require are 5.5 GB (a CUDA build): the fresh venv links this
# environment's copies instead of installing them again (two copies filled CI's disk).
LINKED = ("torch", "torchvision")


def requirement_closure(names: tuple[str, ...]) -> list[Distribution]:
    """The installed distributions `names` need, transitively (environment markers applied, no extras)."""
    seen: dict[str, Distribution] = {}
    pending = list(names)
    while pending:
        name = canonicalize_name(pending.pop())
        if name not in seen:
            seen[name] = metadata.distribution(name)
            needs = [Requirement(r) for r in seen[name].requires or []]
            pending += [r.name for r in needs if r.marker is None or r.marker.evaluate({"extra": ""})]
    return list(seen.values())


def link_distributions(distributions: list[Distribution], site_packages: Path) -> list[str]:
    """Symlink each distribution the venv lacks into `site_packages`; the `name==version` pins of those."""
    present = {
        canonicalize_name(d.metadata["Name"]) for d in metadata.distributions(path=[str(site_packages)])
    }
    linked = [d for d in distributions if canonicalize_name(d.metadata["Name"]) not in present]
    for dist in linked:
        root = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            if not (site_packages / top).exists():  # namespace folders (nvidia/) are shared
                (site_packages / top).symlink_to(root / top)
    return [f"{dist.metadata['Name']}=={dist.version}" for dist in linked]


@pytest.mark.slow
def test_the_wheel_trains_and_imports_with_core_dependencies_only(tmp_path: Path) -> None:
    """Build the wheel, install it with its core dependencies into a fresh venv, use it from elsewhere.

    Only LINKED's closure comes from this environment, pinned by a constraints file so that pip never
    replaces it; every other dependency is installed from the wheel's metadata.
    """
    dist, venv, elsewhere = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # from a copy of the tracked tree: a stale build/ of an earlier layout would leak into the wheel
    source = tmp_path / "source"
    listed = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    tracked = subprocess.run(listed, cwd=REPO, capture_output=True, text=True, check=True)
    for name in tracked.stdout.splitlines():
        if not (REPO / name).is_file():
            continue  # deleted in the work tree, not yet in the index
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    run = lambda *args, **kw: subprocess.run(args, capture_output=True, text=True, timeout=HANG_GUARD_S, **kw)  # noqa: E731
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(dist), str(source))
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next(dist.glob("dogbreed-*.whl"))
    assert run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    python = str(venv / "bin" / "python")
    site_packages = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    pins = link_distributions(requirement_closure(LINKED), site_packages)
    (tmp_path / "constraints.txt").write_text("\n".join(pins))
    installed = run(
        python, "-m", "pip", "install", "--quiet", "-c", str(tmp_path / "constraints.txt"), str(wheel)
    )
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
        "data.image_size=64",  # what is checked is the installed wheel, not the demo's resolution
        "hydra.run.dir=run",
        cwd=elsewhere,
        env=env,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "test_acc=" in trained.stdout
    assert (elsewhere / "run" / "model" / "model.pt").is_file()
    assert (elsewhere / "data" / "demo" / "train").is_dir()  # generated where the user stands
    # the installed package's model.tar.gz carries the package data each image reads
    packaged = run(python, "-m", "dogbreed.package", "run/model", "model.tar.gz", cwd=elsewhere, env=env)
    assert packaged.returncode == 0, packaged.stderr[-3000:]
    with tarfile.open(elsewhere / "model.tar.gz") as archive:
        names = set(archive.getnames())
    toolkit = "code/dogbreed/serving/adapters/toolkit"
    assert {f"{toolkit}/ts.properties", f"{toolkit}/plugins/dogbreed-ping.jar", "config.yaml"} <= names
    assert {"code/dogbreed/data/classes.txt", "code/dogbreed/serving/static/index.html"} <= names


def test_container_requirements_are_pyprojects_less_what_the_image_has(tmp_path: Path) -> None:
    from dogbreed.container import CONTAINER_HAS
    from dogbreed.serving.package import add_inference_code
    from launch.commands.train import stage_source

    def expected(requirements: list[str]) -> set[str]:
        return {r for r in requirements if canonicalize_name(Requirement(r).name) not in CONTAINER_HAS}

    def written(path: Path) -> set[str]:
        return written_lines(path.read_text())

    source = stage_source(tmp_path / "job")
    assert written(source / "requirements.txt") == expected(PYPROJECT["project"]["dependencies"])
    assert "pytorch-lightning>=2.6,<2.7" in written(source / "requirements.txt")
    assert not {"torch==2.14.1", "torchvision==0.29.1"} & written(source / "requirements.txt")
    code = add_inference_code(tmp_path / "model")
    endpoint = PYPROJECT["project"]["optional-dependencies"]["endpoint"]
    assert written(code / "requirements.txt") == expected(endpoint) == {"onnxruntime>=1.17"}
    # inside a training job dogbreed is not installed: the staged pyproject.toml is where they come from
    probe = "from dogbreed.container import container_requirements as c; print(c(None, 'x'))"
    inside = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(source)!r}); {probe}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=HANG_GUARD_S,
    )
    assert inside.returncode == 0, inside.stderr[-2000:]
    assert written_lines(inside.stdout) == expected(PYPROJECT["project"]["dependencies"])


def written_lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if line and not line.startswith("#")}


def test_every_image_has_what_the_requirements_leave_out() -> None:
    """requirements.txt never reinstalls CONTAINER_HAS: every image profile must list all of it."""
    from omegaconf import OmegaConf

    from dogbreed.container import CONF_DIR, CONTAINER_HAS

    profiles = sorted((CONF_DIR / "launch" / "images").glob("*.yaml"))
    assert {p.stem for p in profiles} >= {"ray-serve", "pytorch-inference", "pytorch-training"}
    for path in profiles:
        has = {canonicalize_name(name) for name in OmegaConf.load(path).packages}
        assert has >= CONTAINER_HAS, f"{path.name} lacks {CONTAINER_HAS - has}"


def test_serving_onnx_needs_neither_torch_nor_the_training_stack(exported_model: Path) -> None:
    """A core-only install (no torch) serving ONNX, and what the Ray Serve image lacks (omegaconf, Lightning):
    the service and the Ray adapter's imports, and an ONNX model served, with those blocked."""
    blocked = ("torch", "torchvision", "omegaconf", "hydra", "pytorch_lightning")
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "from dogbreed.container import MODEL_DIR, SERVE_CONFIG\n"
        "from dogbreed.serving.service import Service\n"
        f"service = Service({str(exported_model)!r}, 'onnx')\n"
        "service.warm_up()\n"
        "print(service.runtime)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG_GUARD_S, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "onnx"
