"""Replay a CreateTransformJob request: every object POSTed to the model's replayed endpoint, as the service
does it, and `<key>.out` written under the request's `S3OutputPath`.

The model is served by `launch.replay.endpoint.endpoint_server` (the stack `deploy=… replay=true` serves);
each object under `TransformInput…S3Uri` is downloaded and sent as one record with the request's
ContentType and TransformOutput.Accept, `MaxConcurrentTransforms` at a time, each retried
`ModelClientConfig.InvocationsMaxRetries` times. A record that fails is printed with its reason and
returned; the others still run, and the caller names every failed one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from launch.replay import ReplayError


def post(url: str, body: bytes, content_type: str, accept: str, timeout: float) -> bytes:
    request = Request(f"{url}/invocations", data=body, method="POST")
    request.add_header("Content-Type", content_type)
    request.add_header("Accept", accept)
    with urlopen(request, timeout=timeout) as response:
        return response.read()


def replay_transform(
    request: dict[str, Any], create_model: dict[str, Any], s3: Any, work: Path, port: int
) -> dict[str, str]:
    """Run the job here; returns {object key under the input prefix: why it failed}."""
    from dogbreed.serving.predict import wait_until_ready
    from launch.replay.endpoint import endpoint_server

    source = request["TransformInput"]["DataSource"]["S3DataSource"]
    if source.get("S3DataType") != "S3Prefix":
        raise ReplayError(
            f"TransformInput.DataSource.S3DataSource.S3DataType={source.get('S3DataType')!r}: "
            "only S3Prefix is replayed"
        )
    in_bucket, _, in_prefix = source["S3Uri"].removeprefix("s3://").partition("/")
    out_bucket, _, out_prefix = (
        request["TransformOutput"]["S3OutputPath"].removeprefix("s3://").partition("/")
    )
    out_prefix = out_prefix.rstrip("/") + "/" if out_prefix else ""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=in_bucket, Prefix=in_prefix)
    keys = [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    if not keys:
        raise ReplayError(f"TransformInput…S3Uri {source['S3Uri']} has no objects")
    kind = request["TransformInput"].get("ContentType", "application/octet-stream")
    accept = request["TransformOutput"].get("Accept", "application/json")
    client = request.get("ModelClientConfig", {})
    timeout, retries = client.get("InvocationsTimeoutInSeconds", 600), client.get("InvocationsMaxRetries", 3)
    limit = request.get("MaxPayloadInMB", 6) * 1024 * 1024
    failures: dict[str, str] = {}

    def one(key: str, url: str) -> None:
        name = key.removeprefix(in_prefix)
        body = s3.get_object(Bucket=in_bucket, Key=key)["Body"].read()
        if len(body) > limit:
            failures[name] = f"{len(body):,} bytes is over MaxPayloadInMB"
            return
        for _ in range(retries + 1):
            try:
                answer = post(url, body, kind, accept, timeout)
            except HTTPError as exc:
                reason = f"{exc.code}: {exc.read().decode('utf-8', 'replace')[:300]}"
                if exc.code < 500:  # the record itself is bad: a retry answers the same
                    break
            except (URLError, OSError) as exc:
                reason = f"no answer ({exc})"
            else:
                s3.put_object(Bucket=out_bucket, Key=f"{out_prefix}{name}.out", Body=answer)
                return
        failures[name] = reason
        print(f"replay: record {name} failed: {reason}", flush=True)

    with endpoint_server(create_model, s3, work, port):
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, 300)
        with ThreadPoolExecutor(request.get("MaxConcurrentTransforms") or 1) as pool:
            list(pool.map(lambda key: one(key, url), keys))
    done = len(keys) - len(failures)
    print(f"replay: transform job {request['TransformJobName']}: {done} of {len(keys)} records done")
    return failures
