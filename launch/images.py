"""Which SageMaker image runs each job and endpoint: one profile per image in `conf/launch/images/`.

A profile names the image's URI recipe (for `sagemaker.core.image_uris.retrieve`), its Python, and the
packages it has (with versions where the sources say them), with the source it was read from.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

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
