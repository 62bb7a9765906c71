"""`transform=default input=s3://…/photos/|<folder>`: a batch transform job, then `predictions.csv`.

Set up as the model's images need: one record per object (`BatchStrategy=SingleRecord`, no splitting),
the content type from the objects' extension (one per job: when they differ, `application/octet-stream`,
which the server sniffs), `MaxPayloadInMB` no larger than the API allows with the concurrency (their
product ≤ 100 MB), the concurrency from the instance's vCPUs. A local folder is uploaded first. The
launcher waits with a live line (objects done/total) and writes `predictions.csv` (`dogbreed.serving.batch`)
from the `.out` files; an object without one is a row naming it as failed. The model is the one that
`deploy=` created (`transform.model=<name>`, or the newest this project made).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
from omegaconf import DictConfig

from dogbreed.errors import DogBreedError
from launch import prices
from launch.command import Command

MAX_PAYLOAD_TIMES_CONCURRENCY_MB = 100  # the API's cap on MaxPayloadInMB × MaxConcurrentTransforms


def concurrency(spec: DictConfig) -> int:
    return spec.max_concurrent or prices.vcpus(spec.instance_type)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def check(cfg: DictConfig) -> None:
    """The input is given and exists; payload and concurrency within the API's limits."""
    spec = cfg.transform
    if not cfg.input:
        raise DogBreedError(
            "transform= needs input=s3://<bucket>/<prefix>/ or input=<local folder of photos>"
        )
    if not str(cfg.input).startswith("s3://") and not Path(cfg.input).is_dir():
        raise DogBreedError(f"input={cfg.input} is neither an s3:// prefix nor a local folder")
    if not 1 <= spec.max_payload_mb * concurrency(spec) <= MAX_PAYLOAD_TIMES_CONCURRENCY_MB:
        raise DogBreedError(
            f"transform.max_payload_mb={spec.max_payload_mb} × {concurrency(spec)} concurrent is over the "
            f"API's {MAX_PAYLOAD_TIMES_CONCURRENCY_MB} MB: lower one (transform.max_concurrent=…)"
        )


def input_objects(cfg: DictConfig, boto: boto3.Session) -> tuple[str, dict[str, int]]:
    """The input prefix's URI and its objects' keys and sizes; a local folder is uploaded first."""
    from launch.aws import sync_to_s3

    if str(cfg.input).startswith("s3://"):
        uri = str(cfg.input).rstrip("/") + "/"
    else:
        folder = Path(cfg.input)
        uri = sync_to_s3(boto, folder, cfg.bucket, f"{cfg.prefix}/transform-input/{folder.name}")
        if cfg.dry_run:  # nothing was uploaded, so nothing can be listed: the folder says what would be
            return uri, {
                f"{split_s3(uri)[1]}{p.relative_to(folder).as_posix()}": p.stat().st_size
                for p in folder.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            }
    bucket, prefix = split_s3(uri)
    pages = boto.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    objects = {
        o["Key"]: o["Size"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")
    }
    if not objects and not cfg.dry_run:
        raise DogBreedError(f"input={uri} has no objects: nothing to transform; check the prefix")
    return uri, objects


def content_type(keys: list[str]) -> str:
    """The objects' type by extension when they agree; otherwise bytes for the server to sniff."""
    from dogbreed.data.images import content_type as by_suffix

    kinds = {by_suffix(Path(k)) for k in keys}
    return kinds.pop() if len(kinds) == 1 else "application/octet-stream"


def the_model(cfg: DictConfig, boto: boto3.Session) -> str:
    """`transform.model`, or the newest model this project created."""
    from launch.inventory import find

    if cfg.transform.model:
        return cfg.transform.model
    if cfg.dry_run:
        raise DogBreedError(
            "a dry run cannot look up models: name one with transform.model=<SageMaker model name>"
        )
    models = sorted(find(boto, cfg.prefix, ("model",)), key=lambda f: f.created)
    if not models:
        raise DogBreedError(
            "no model of this project: deploy one first (deploy=default) or pass transform.model="
        )
    return models[-1].name


def send(cfg: DictConfig, boto: boto3.Session, requests: Any, run_dir: Path) -> str:
    """CreateTransformJob over the input prefix; returns the job name."""
    from sagemaker.core.resources import TransformJob
    from sagemaker.core.shapes import (
        ModelClientConfig,
        TransformDataSource,
        TransformInput,
        TransformOutput,
        TransformResources,
        TransformS3DataSource,
    )

    from launch.aws import job_name
    from launch.capture import keep_member

    spec = cfg.transform
    # retries=0 would never reach the request, and the service's default (3) would apply
    keep_member(boto, "CreateTransformJob", "ModelClientConfig.InvocationsMaxRetries", spec.retries)
    model = the_model(cfg, boto)
    uri, objects = input_objects(cfg, boto)
    too_big = [k for k, size in objects.items() if size > spec.max_payload_mb * 1024 * 1024]
    if too_big:
        raise DogBreedError(
            f"{len(too_big)} objects are over transform.max_payload_mb={spec.max_payload_mb} MB "
            f"(first: {too_big[0]}): resize them or raise it"
        )
    name = job_name(cfg, "tf")
    TransformJob.create(
        transform_job_name=name,
        model_name=model,
        transform_input=TransformInput(
            data_source=TransformDataSource(
                s3_data_source=TransformS3DataSource(s3_data_type="S3Prefix", s3_uri=uri)
            ),
            content_type=content_type(list(objects)),
            split_type="None",
            compression_type="None",
        ),
        transform_output=TransformOutput(
            s3_output_path=f"s3://{cfg.bucket}/{cfg.prefix}/transform/{name}/",
            accept="application/json",
            assemble_with="None",
        ),
        transform_resources=TransformResources(
            instance_type=spec.instance_type, instance_count=spec.instance_count
        ),
        max_concurrent_transforms=concurrency(spec),
        max_payload_in_mb=spec.max_payload_mb,  # every object is within it (checked above)
        batch_strategy="SingleRecord",
        model_client_config=ModelClientConfig(
            invocations_timeout_in_seconds=spec.invocation_timeout_s, invocations_max_retries=spec.retries
        ),
        session=boto,
    )
    print(f"transform job {name}: {len(objects)} objects under {uri} with model {model}")
    return name


def intent(cfg: DictConfig) -> dict[str, dict[str, tuple[str, Any]]]:
    """What CreateTransformJob must carry of `transform.*` (`Command.intent`): `max_concurrent` null is sent
    as the instance's vCPUs; a dry run names its model (`the_model`)."""
    spec = cfg.transform
    named = {"ModelName": ("transform.model", spec.model)} if spec.model else {}
    return {
        "CreateTransformJob": {
            **named,
            "TransformResources.InstanceType": ("transform.instance_type", spec.instance_type),
            "TransformResources.InstanceCount": ("transform.instance_count", spec.instance_count),
            "MaxPayloadInMB": ("transform.max_payload_mb", spec.max_payload_mb),
            "MaxConcurrentTransforms": ("transform.max_concurrent", concurrency(spec)),
            "ModelClientConfig.InvocationsTimeoutInSeconds": (
                "transform.invocation_timeout_s",
                spec.invocation_timeout_s,
            ),
            "ModelClientConfig.InvocationsMaxRetries": ("transform.retries", spec.retries),
        }
    }


def outputs(s3: Any, job: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(input key relative to the prefix → full key, its `.out` key when it has one)."""
    in_bucket, in_prefix = split_s3(job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"])
    out_bucket, out_prefix = split_s3(job["TransformOutput"]["S3OutputPath"])
    out_prefix = out_prefix.rstrip("/") + "/" if out_prefix else ""

    def keys(bucket: str, prefix: str) -> list[str]:
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    inputs = {k.removeprefix(in_prefix): k for k in keys(in_bucket, in_prefix) if not k.endswith("/")}
    done = {
        k.removeprefix(out_prefix).removesuffix(".out"): k
        for k in keys(out_bucket, out_prefix)
        if k.endswith(".out")
    }
    return inputs, done


def write_csv(
    s3: Any, job: dict[str, Any], run_dir: Path, failures: dict[str, str] | None = None
) -> list[str]:
    """predictions.csv from the `.out` files; returns the objects that have none (failed records)."""
    from dogbreed.serving.batch import write_predictions

    inputs, done = outputs(s3, job)
    bucket = split_s3(job["TransformOutput"]["S3OutputPath"])[0]
    rows, failed = [], []
    for name in inputs:
        if name in done:
            body = s3.get_object(Bucket=bucket, Key=done[name])["Body"].read()
            rows.append((name, json.loads(body)[0], None))
        else:
            failed.append(name)
            reason = (failures or {}).get(name, "no .out: the record failed (see the job's log)")
            rows.append((name, None, reason))
    print(
        f"wrote {write_predictions(run_dir / 'predictions.csv', rows)}: {len(done)} of {len(inputs)} objects"
    )
    return failed


def summary(name: str, failed: list[str], total: int, reason: str = "") -> None:
    """The end of a job: every failed record named; a job with failures ends as an error."""
    if failed:
        raise DogBreedError(
            f"transform job {name}: {len(failed)} of {total} records failed ({', '.join(failed)})"
            + (f"; {reason}" if reason else "")
            + "; predictions.csv has the others"
        )
    print(f"transform job {name}: all {total} records done")


def follow(cfg: DictConfig, boto: boto3.Session, name: str, run_dir: Path) -> None:
    """A live line (objects done/total) until the job ends, then predictions.csv."""
    client, s3 = boto.client("sagemaker"), boto.client("s3")
    while True:
        job = client.describe_transform_job(TransformJobName=name)
        inputs, done = outputs(s3, job)
        print(f"\r{name}: {job['TransformJobStatus']}, {len(done)}/{len(inputs)} objects", end="", flush=True)
        if job["TransformJobStatus"] not in ("InProgress", "Stopping"):
            break
        time.sleep(cfg.poll_seconds)
    print()
    failed = write_csv(s3, job, run_dir)
    summary(name, failed, len(inputs), job.get("FailureReason", ""))


def replay(cfg: DictConfig, requests: Any, run_dir: Path) -> None:
    """The job run here as the service runs it (`launch.replay.transform`), then predictions.csv."""
    from launch.replay import s3_client
    from launch.replay.transform import replay_transform

    request = requests.of("CreateTransformJob")[-1]
    model = (
        boto3.Session(region_name=cfg.region)
        .client("sagemaker")
        .describe_model(ModelName=request["ModelName"])
    )
    s3 = s3_client(cfg)
    failures = replay_transform(request, model, s3, run_dir / "replay", cfg.local_port)
    failed = write_csv(s3, request, run_dir, failures)
    summary(request["TransformJobName"], failed, len(outputs(s3, request)[0]))


def cost(cfg: DictConfig) -> tuple[float, str]:
    """Per hour while the job runs; it stops by itself when the objects are done."""
    spec = cfg.transform
    price = prices.require(prices.inference_hourly(spec.instance_type), spec.instance_type)
    each = f"${price}/h{prices.caveat(spec.instance_type)}"
    return price * spec.instance_count, (
        f"/h while it runs ({spec.instance_count} × {spec.instance_type} at {each}; it ends when done)"
    )


COMMAND = Command(
    key="transform",
    usage="transform=default input=s3://…/|<folder>",
    send=send,
    follow=follow,
    replay=replay,
    cost=cost,
    check=check,
    intent=intent,
)
