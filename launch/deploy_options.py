"""What `deploy=` sets up beyond one instance-backed variant: serverless, autoscaling, and their cost.

- `deploy=serverless` (`deploy.serverless.memory_mb`, `.max_concurrency`): a `ServerlessConfig` variant,
  no instance type. The limits are the service's: memory 1024–6144 MB in 1 GB steps, concurrency 1–200.
- `deploy.autoscaling.max=N` (with `min`, `target_invocations`, cooldowns): the variant registered with
  Application Auto Scaling and a target-tracking policy on `SageMakerVariantInvocationsPerInstance`.
  Registering needs the endpoint InService, so the launcher waits for it first.
The checks run before anything is uploaded or sent, each one line naming the key.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from dogbreed.container import SERVERLESS_MAX_BODY
from dogbreed.errors import DogBreedError
from launch import prices
from launch.teardown import SCALING, scaling_resource

VARIANT = "AllTraffic"


def serverless(spec: DictConfig) -> DictConfig | None:
    return spec.get("serverless")


def serverless_limits(spec: DictConfig) -> str:
    """The serverless limits that bite this model, said before the endpoint is created."""
    return (
        f"serverless endpoint: {spec.serverless.memory_mb} MB, up to {spec.serverless.max_concurrency} "
        f"requests at once; CPU only (no GPU), request bodies up to {SERVERLESS_MAX_BODY // 2**20} MB, and "
        "after idling a cold start: the model downloads and /ping must answer within 3 minutes"
    )


def autoscaled(spec: DictConfig) -> bool:
    return bool(spec.get("autoscaling") and spec.autoscaling.max)


def check(cfg: DictConfig) -> None:
    """One line per combination of settings that would not do what it says (each setting's own type and
    range is `launch.schema`'s, checked before)."""
    spec = cfg.deploy
    if serverless(spec) is not None and autoscaled(spec):
        raise DogBreedError(
            "deploy.autoscaling is for instance-backed endpoints; a serverless one scales by itself "
            "up to deploy.serverless.max_concurrency: drop deploy.autoscaling.max"
        )
    if autoscaled(spec):
        low, high = spec.autoscaling.min, spec.autoscaling.max
        if high < low:
            raise DogBreedError(
                f"deploy.autoscaling.max={high} is below deploy.autoscaling.min={low}: raise max or lower min"
            )
        if not low <= spec.initial_instance_count <= high:
            raise DogBreedError(
                f"deploy.initial_instance_count={spec.initial_instance_count} is outside "
                f"deploy.autoscaling min {low} … max {high}"
            )


def production_variant(spec: DictConfig, model_name: str) -> Any:
    """The one variant: serverless (memory, concurrency, no instance) or instances of a type."""
    from sagemaker.core.shapes import ProductionVariant, ProductionVariantServerlessConfig
    from sagemaker.core.utils.utils import SPECIAL_SNAKE_TO_PASCAL_MAPPINGS

    if serverless(spec) is not None:
        # sagemaker-core 2.27 spells this nested member `MemorySizeInMb` (its generic snake → Pascal rule),
        # which botocore rejects; its own table of exceptions lacks it
        SPECIAL_SNAKE_TO_PASCAL_MAPPINGS.setdefault("memory_size_in_mb", "MemorySizeInMB")
        return ProductionVariant(
            variant_name=VARIANT,
            model_name=model_name,
            serverless_config=ProductionVariantServerlessConfig(
                memory_size_in_mb=spec.serverless.memory_mb, max_concurrency=spec.serverless.max_concurrency
            ),
        )
    return ProductionVariant(
        variant_name=VARIANT,
        model_name=model_name,
        initial_instance_count=spec.initial_instance_count,
        instance_type=spec.instance_type,
    )


def register_autoscaling(boto: Any, spec: DictConfig, endpoint: str) -> None:
    """RegisterScalableTarget (min…max instances) and PutScalingPolicy (target tracking, cooldowns)."""
    scaling, client = spec.autoscaling, boto.client("application-autoscaling")
    resource = scaling_resource(endpoint, VARIANT)
    client.register_scalable_target(
        ResourceId=resource, MinCapacity=scaling.min, MaxCapacity=scaling.max, **SCALING
    )
    client.put_scaling_policy(
        PolicyName=f"{endpoint}-invocations",
        PolicyType="TargetTrackingScaling",
        ResourceId=resource,
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": float(scaling.target_invocations),
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleInCooldown": scaling.scale_in_cooldown_s,
            "ScaleOutCooldown": scaling.scale_out_cooldown_s,
        },
        **SCALING,
    )
    print(
        f"autoscaling {resource}: {scaling.min} … {scaling.max} instances, "
        f"{scaling.target_invocations:g} invocations per instance per minute"
    )


def autoscaling_intent(spec: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    """What `register_autoscaling`'s requests must carry of `deploy.autoscaling.*` (`Command.intent`); the
    target is sent as a float, as the API types it."""
    scaling, policy = spec.autoscaling, "TargetTrackingScalingPolicyConfiguration"
    return {
        "RegisterScalableTarget": {
            "MinCapacity": ("deploy.autoscaling.min", scaling.min),
            "MaxCapacity": ("deploy.autoscaling.max", scaling.max),
        },
        "PutScalingPolicy": {
            f"{policy}.TargetValue": (
                "deploy.autoscaling.target_invocations",
                float(scaling.target_invocations),
            ),
            f"{policy}.ScaleInCooldown": (
                "deploy.autoscaling.scale_in_cooldown_s",
                scaling.scale_in_cooldown_s,
            ),
            f"{policy}.ScaleOutCooldown": (
                "deploy.autoscaling.scale_out_cooldown_s",
                scaling.scale_out_cooldown_s,
            ),
        },
    }


def cost(cfg: DictConfig) -> tuple[float, str]:
    """Per hour while it runs: `max` instances when autoscaled; serverless at full concurrency."""
    spec = cfg.deploy
    if serverless(spec) is not None:
        memory, concurrency = spec.serverless.memory_mb, spec.serverless.max_concurrency
        hourly = prices.serverless_per_second(memory) * concurrency * 3600
        return hourly, (
            f"/h with {concurrency} requests always in flight ({memory} MB at "
            f"${prices.serverless_per_second(memory):.6f}/s each{prices.caveat(prices.SERVERLESS)}); "
            "$0 while idle"
        )
    count = spec.autoscaling.max if autoscaled(spec) else spec.initial_instance_count
    price = prices.require(prices.inference_hourly(spec.instance_type), spec.instance_type)
    why = ", deploy.autoscaling.max" if autoscaled(spec) else ""
    each = f"${price}/h{prices.caveat(spec.instance_type)}"
    return price * count, f"/h while it runs ({count} × {spec.instance_type} at {each}{why})"
