"""Prices in USD from `conf/launch/prices.yaml` (inference) and `conf/launch/instance/*.yaml` (training).

A type without a price is `None`, never a guess: `status` says so and names the file to add it to. A price
that no source quoting AWS confirmed is printed with "(unverified)" beside it (`caveat`), not as fact.
"""

from __future__ import annotations

from functools import cache

from omegaconf import DictConfig, OmegaConf

from dogbreed.container import CONF_DIR
from dogbreed.errors import DogBreedError

PRICES = CONF_DIR / "launch" / "prices.yaml"
SERVERLESS = "serverless"


@cache
def table() -> DictConfig:
    return OmegaConf.load(PRICES)


def inference_hourly(instance_type: str) -> float | None:
    """One instance of an endpoint or a transform job, per hour."""
    entry = table().inference.get(instance_type)
    return None if entry is None else float(entry.usd_per_hour)


@cache
def training_hourly(instance_type: str) -> float | None:
    """One training instance per hour, from the instance config of that type."""
    for path in (CONF_DIR / "launch" / "instance").glob("*.yaml"):
        config = OmegaConf.load(path)
        if config.get("type") == instance_type:
            return float(config.price_per_hour_usd)
    return None


def vcpus(instance_type: str) -> int:
    entry = table().inference.get(instance_type)
    if entry is None:
        raise DogBreedError(
            f"{instance_type} is not in {PRICES}; add its price and vCPUs (see the file's source)"
        )
    return int(entry.vcpus)


def serverless_per_second(memory_mb: int) -> float:
    """One serverless request in flight, per second of compute."""
    return memory_mb / 1024 * float(table().serverless.usd_per_gb_second)


def caveat(instance_type: str) -> str:
    """ " (unverified)" beside a price that prices.yaml marks `verified: false` (`SERVERLESS`: the
    serverless rates); "" for a verified one, or a type without a price (which says so itself)."""
    entry = table().serverless if instance_type == SERVERLESS else table().inference.get(instance_type)
    return "" if entry is None or entry.get("verified", False) else " (unverified)"


def require(price: float | None, instance_type: str) -> float:
    """A price a cost bound needs: a type without one is an error naming the file."""
    if price is None:
        raise DogBreedError(f"no price for {instance_type} in {PRICES}; add it (see the file's source)")
    return price
