"""Which SageMaker image runs each job and endpoint: one profile per image in `conf/launch/images/`.

A profile names the image's URI recipe (for `sagemaker.core.image_uris.retrieve`), its Python, and the
packages it has (with versions where the sources say them), with the source it was read from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from omegaconf import DictConfig, OmegaConf
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from dogbreed.container import CONF_DIR
from dogbreed.errors import DogBreedError

IMAGES = CONF_DIR / "launch" / "images"


def profile(name: str) -> DictConfig:
    """The profile `conf/launch/images/<name>.yaml`; an unknown name lists the known ones."""
    path = IMAGES / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in IMAGES.glob("*.yaml")))
        raise DogBreedError(f"no image profile {name!r} in {IMAGES}; known: {known}")
    return OmegaConf.load(path)


def image_uri(name: str, region: str, instance_type: str | None) -> str:
    """The image's URI in `region`, CPU or GPU by `instance_type` (None: serverless, always CPU), from the
    SDK's own image tables."""
    from sagemaker.core import image_uris

    uri = profile(name).uri
    return image_uris.retrieve(
        uri.framework,
        region=region,
        version=uri.version,
        py_version=uri.get("py_version"),
        instance_type=instance_type,
        image_scope=uri.scope,
        # the SDK only asks whether a serverless config is given (then it picks the CPU image)
        serverless_inference_config=True if instance_type is None else None,
    )


def pins(name: str) -> dict[str, str]:
    """The packages the image has at a known version (canonical name → version): a requirement on any of
    them is never reinstalled there, so it must agree."""
    return {canonicalize_name(k): str(v) for k, v in profile(name).packages.items() if v is not None}


def requirement_lines(text: str, where: str) -> Iterator[tuple[int, str, Requirement]]:
    """Each requirement of a requirements.txt with its line number; a line that is none is one error."""
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            yield number, line, Requirement(line)
        except InvalidRequirement as exc:
            raise DogBreedError(f"{where} line {number} {line!r} is not a requirement ({exc})") from exc


def check_pins(text: str, where: str, name: str, error: type[DogBreedError] = DogBreedError) -> None:
    """Every requirement on a package the image pins is satisfied by that pin, else one line naming both
    (as `error`)."""
    pinned = pins(name)
    for number, line, requirement in requirement_lines(text, where):
        version = pinned.get(canonicalize_name(requirement.name))
        if version is not None and not requirement.specifier.contains(version, prereleases=True):
            raise error(
                f"{where} line {number} {line!r} conflicts with the image {name}, which has "
                f"{requirement.name} {version} ({IMAGES / name}.yaml): loosen the requirement or pick "
                "another image"
            )


def profile_of(uri: str, instance_type: str, scope: str) -> str | None:
    """The profile whose image `uri` is (for `instance_type`, in the URI's region), or None."""
    match = re.search(r"\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com", uri)
    if match is None:
        return None
    for path in sorted(IMAGES.glob("*.yaml")):
        if profile(path.stem).uri.scope == scope and image_uri(path.stem, match[1], instance_type) == uri:
            return path.stem
    return None
