"""The AWS side every command shares: checks before anything is created, the session, S3 sync, names.

Checks give one clear line each (no credentials, no region, bad role ARN, bucket missing or not
accessible, empty data channel) before any resource exists. SDK telemetry is off unless `telemetry=true`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

import boto3
from botocore.exceptions import ClientError
from omegaconf import DictConfig, OmegaConf
from rich.progress import Progress

from dogbreed.errors import DogBreedError
from launch.capture import RequestLog
from launch.tags import tag_requests

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
DRY_RUN_REGION = "us-east-1"


def sdk_environment(telemetry: bool, run_dir: Path) -> None:
    """Before importing the SageMaker SDK: telemetry off through its config file, no IAM role lookup.

    The file lives in the run's folder: a fixed name in a shared /tmp fails for the second user.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "sagemaker-sdk.yaml"
    config.write_text(
        f"SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n"
        f"      TelemetryOptOut: {'false' if telemetry else 'true'}\n"
    )
    os.environ.setdefault("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    os.environ.setdefault("SAGEMAKER_VALIDATE_ROLE", "false")


def preflight(cfg: DictConfig) -> str:
    """Settings every cloud command needs; returns the region. Checks that need AWS wait for `session`."""
    region = cfg.region or (DRY_RUN_REGION if cfg.dry_run else None)
    if not region:
        raise DogBreedError("no AWS region: set AWS_DEFAULT_REGION or pass region=us-east-1")
    if not cfg.role_arn:
        raise DogBreedError(
            "no role ARN: set SAGEMAKER_ROLE_ARN or pass role_arn=arn:aws:iam::<account>:role/<name>"
        )
    if not ROLE_ARN.match(cfg.role_arn):
        raise DogBreedError(
            f"role_arn={cfg.role_arn!r} is not an IAM role ARN (arn:aws:iam::<12 digits>:role/<name>)"
        )
    if not cfg.bucket:
        raise DogBreedError("no S3 bucket: set DOGBREED_BUCKET or pass bucket=<name>")
    return region


def session(cfg: DictConfig, run_dir: Path) -> tuple[boto3.Session, RequestLog]:
    """A boto3 session with every request recorded under `<run dir>/requests/` (and stopped in dry-run)."""
    region = preflight(cfg)
    boto = boto3.Session(region_name=region)
    tag_requests(boto, cfg, run_dir)  # first: the recorded request is the tagged one
    requests = RequestLog(boto, run_dir / "requests", cfg.dry_run)
    if cfg.dry_run:
        return boto, requests
    if boto.get_credentials() is None:
        raise DogBreedError("no AWS credentials: run `aws configure` / `aws sso login` or set AWS_PROFILE")
    try:
        boto.client("s3").head_bucket(Bucket=cfg.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        what = "does not exist" if code in ("404", "NoSuchBucket") else f"is not accessible ({code})"
        raise DogBreedError(f"bucket {cfg.bucket} {what}; create it or pass bucket=<another>") from exc
    return boto, requests


def job_output_path(cfg: DictConfig) -> str:
    """Training jobs' S3OutputPath: each job writes `<it>/<job name>/output/model.tar.gz`."""
    return f"s3://{cfg.bucket}/{cfg.prefix}/jobs"


def job_name(cfg: DictConfig, kind: str, stamp: bool = True, max_length: int = 63) -> str:
    """`<prefix>-<kind>-<config hash>[-<time>]`: unique, and the hash says which config made it.

    Over `max_length` (tuning jobs allow 32 characters), the prefix is shortened, never the hash or time.
    """
    settings = OmegaConf.to_container(cfg, resolve=True)
    job = {k: v for k, v in settings.items() if k not in ("dry_run", "wait", "telemetry")}  # how, not what
    text = json.dumps(job, sort_keys=True, default=str)
    tail = f"-{kind}-{hashlib.sha256(text.encode()).hexdigest()[:6]}"
    tail += f"-{time.strftime('%y%m%d%H%M%S')}" if stamp else ""
    return cfg.prefix[: max(1, max_length - len(tail))] + tail


def sync_to_s3(boto: boto3.Session, folder: Path, bucket: str, prefix: str) -> str:
    """Upload `folder` under `s3://bucket/prefix/`, skipping objects already there with the same size and
    MD5 (their ETag, for single-part uploads). Returns the S3 URI. Re-running uploads nothing twice."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DogBreedError(f"empty data channel: {folder} has no files")
    s3 = boto.client("s3")
    existing: dict[str, tuple[int, str]] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            existing[obj["Key"]] = (obj["Size"], obj.get("ETag", "").strip('"'))
    uploaded = 0
    with Progress() as progress:
        task = progress.add_task(f"sync {folder.name} → s3://{bucket}/{prefix}", total=len(files))
        for path in files:
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            data = path.read_bytes()
            if existing.get(key) != (len(data), hashlib.md5(data).hexdigest()):
                s3.put_object(Bucket=bucket, Key=key, Body=data)
                uploaded += 1
            progress.advance(task)
    print(f"data: {uploaded} of {len(files)} files uploaded to s3://{bucket}/{prefix}/ (the rest were there)")
    return f"s3://{bucket}/{prefix}/"
