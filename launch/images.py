"""Which SageMaker image runs each job and endpoint (the URIs come from the SDK's own image tables)."""

from __future__ import annotations

from omegaconf import DictConfig


def pytorch_image(cfg: DictConfig, region: str, instance_type: str, scope: str) -> str:
    """SageMaker's PyTorch image (CPU or GPU by instance type) for `training` or `inference`."""
    from sagemaker.core import image_uris

    return image_uris.retrieve(
        "pytorch",
        region=region,
        version=cfg.framework_version,
        py_version=cfg.py_version,
        instance_type=instance_type,
        image_scope=scope,
    )
