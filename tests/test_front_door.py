"""InvokeEndpoint's rules, as the replayed endpoint's front door applies them and as our client keeps them."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import httpx
import pytest
import uvicorn
from botocore.response import StreamingBody
from botocore.stub import Stubber
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from dogbreed.container import INVOKE_MAX_BODY
from dogbreed.errors import DogBreedError
from dogbreed.serving.predict import endpoint_classifier
from launch.replay.front_door import front_door
from launch.replay.stacks import free_port


@contextmanager
def container() -> Iterator[tuple[str, list[dict]]]:
    """A stand-in model container that records what reaches it; `/invocations?hang` never answers."""
    seen: list[dict] = []
    release = asyncio.Event()

    async def invocations(request: Request) -> JSONResponse:
        body = await request.body()
        seen.append({"headers": dict(request.headers), "query": str(request.url.query), "size": len(body)})
        if body == b"hang":
            await release.wait()
        return JSONResponse([[{"breed": "Brittany"}]])

    async def ping(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"]), Route("/ping", ping)])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def door() -> Iterator[tuple[str, list[dict]]]:
    with container() as (inner, seen), front_door(free_port(), inner, timeout_s=1.0) as url:
        yield url, seen


def test_only_what_sagemaker_forwards_reaches_the_container(door) -> None:
    url, seen = door
    headers = {
        "Content-Type": "image/jpeg",
        "Accept": "application/json",
        "X-Amzn-SageMaker-Custom-Attributes": "top_k=3",
        "X-Amzn-SageMaker-Inference-Id": "abc",
        "X-Top-K": "1",  # our own server's header: SageMaker drops it
        "Authorization": "secret",
    }
    answer = httpx.post(f"{url}/invocations?top_k=1", content=b"jpeg", headers=headers)
    assert answer.status_code == 200 and answer.json() == [[{"breed": "Brittany"}]]
    (got,) = seen
    assert got["query"] == ""  # InvokeEndpoint has no query string
    forwarded = {
        k
        for k in got["headers"]
        if k not in ("host", "content-length", "user-agent", "accept-encoding", "connection")
    }
    assert forwarded == {
        "content-type",
        "accept",
        "x-amzn-sagemaker-custom-attributes",
        "x-amzn-sagemaker-inference-id",
    }
    assert got["headers"]["x-amzn-sagemaker-custom-attributes"] == "top_k=3"  # verbatim
    assert httpx.get(f"{url}/ping").status_code == 200


def test_a_body_over_the_limit_never_reaches_the_container(door) -> None:
    url, seen = door
    answer = httpx.post(f"{url}/invocations", content=b"x" * (INVOKE_MAX_BODY + 1))
    assert answer.status_code == 413 and "6,291,456" in answer.json()["error"]
    assert seen == []
    assert httpx.post(f"{url}/invocations", content=b"x" * INVOKE_MAX_BODY).status_code == 200  # at the limit


def test_custom_attributes_over_1024_characters_are_refused(door) -> None:
    url, seen = door
    answer = httpx.post(
        f"{url}/invocations", content=b"x", headers={"X-Amzn-SageMaker-Custom-Attributes": "a" * 1025}
    )
    assert answer.status_code == 400 and "1024" in answer.json()["error"] and seen == []


def test_a_container_that_never_answers_is_a_504(door) -> None:
    url, _ = door
    answer = httpx.post(f"{url}/invocations", content=b"hang", timeout=30)
    assert answer.status_code == 504 and "did not answer" in answer.json()["error"]


def test_the_client_refuses_a_body_over_the_limit_before_sending() -> None:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
    classify = endpoint_classifier("ep", "us-east-1", session)
    with pytest.raises(DogBreedError, match="over InvokeEndpoint's limit of 6,291,456: not sent"):
        classify(b"x" * (INVOKE_MAX_BODY + 1), "image/jpeg", 5)


DESCRIBED_ENDPOINT = {
    "EndpointName": "ep",
    "EndpointArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint/ep",
    "EndpointConfigName": "ep",
    "EndpointStatus": "InService",
    "CreationTime": "2026-12-01T00:00:00Z",
    "LastModifiedTime": "2026-12-01T00:00:00Z",
}
DESCRIBED_CONFIG = {
    "EndpointConfigName": "ep",
    "EndpointConfigArn": "arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/ep",
    "ProductionVariants": [{"VariantName": "AllTraffic", "InstanceType": "ml.m5.xlarge"}],
    "CreationTime": "2026-12-01T00:00:00Z",
}


def test_the_client_sends_the_image_bytes_and_top_k_in_custom_attributes() -> None:
    session = boto3.Session(aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
    runtime = session.client("sagemaker-runtime")
    stub = Stubber(runtime)
    answer = json.dumps([[{"breed": "Brittany", "probability": 0.9}]]).encode()
    stub.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"},
        {
            "EndpointName": "ep",
            "ContentType": "image/jpeg",
            "Accept": "application/json",
            "CustomAttributes": "top_k=3",
            "Body": b"\xff\xd8jpeg",
        },
    )
    sagemaker = session.client("sagemaker")  # a real-time endpoint, as DescribeEndpoint(Config) say
    described = Stubber(sagemaker)
    described.add_response("describe_endpoint", DESCRIBED_ENDPOINT, {"EndpointName": "ep"})
    described.add_response("describe_endpoint_config", DESCRIBED_CONFIG, {"EndpointConfigName": "ep"})
    clients = {"sagemaker-runtime": runtime, "sagemaker": sagemaker}
    session.client = lambda service, **kw: clients[service]  # the classifier asks the session for them
    with stub, described:
        assert endpoint_classifier("ep", "us-east-1", session)(b"\xff\xd8jpeg", "image/jpeg", 3) == [
            {"breed": "Brittany", "probability": 0.9}
        ]
