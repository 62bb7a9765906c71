"""Classify images: with a local model, a running server, or a SageMaker endpoint.

    python -m dogbreed.predict MODEL IMAGE... [--top-k 5] [--json]
    python -m dogbreed.predict MODEL FOLDER --out predictions.csv [--batch-size 32 --workers 2]
    python -m dogbreed.predict --url http://127.0.0.1:8080 IMAGE...
    python -m dogbreed.predict --endpoint NAME [--region us-east-1] IMAGE...

MODEL is a `model/` folder, a `model.tar.gz` or a checkpoint; a FOLDER stands for every file under it.
`--out` writes predictions.csv (object, top5, confidence, error: what batch transform's replay writes too);
with a local model the photos are then decoded in DataLoader workers and run in batches. Exit code 1 when
any image failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from dogbreed import command_line
from dogbreed.container import INVOKE_MAX_BODY, SERVERLESS_MAX_BODY
from dogbreed.data.images import content_type
from dogbreed.errors import DogBreedError, exit_on_user_error
from dogbreed.serving.batch import write_predictions

Classifier = Callable[[bytes, str, int], list[dict[str, Any]]]


def local_classifier(model: str, workdir: Path) -> Classifier:
    """The model loaded in this process, answering through the service as the server does (unbatched)."""
    from dogbreed.serving.artifact import resolve_model
    from dogbreed.serving.service import Service, decode

    service = Service(resolve_model(model, workdir))
    return lambda body, kind, top_k: service.predict(decode(body, kind, top_k))[0]


def wait_until_ready(url: str, seconds: float) -> None:
    """Poll `GET /ping` until it answers 200 (the model is loaded and warm)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urlopen(f"{url.rstrip('/')}/ping", timeout=5) as response:
                if response.status == 200:
                    return
        except (URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise DogBreedError(f"{url} did not become ready within {seconds:g} s")
        time.sleep(0.2)


def url_classifier(url: str) -> Classifier:
    """A server with SageMaker's container contract, asked as InvokeEndpoint asks: the image's bytes, and
    `top_k` in CustomAttributes (SageMaker forwards no query string)."""

    def classify(body: bytes, kind: str, top_k: int) -> list[dict[str, Any]]:
        request = Request(f"{url.rstrip('/')}/invocations", data=body, method="POST")
        request.add_header("Content-Type", kind)
        request.add_header("Accept", "application/json")
        request.add_header("X-Amzn-SageMaker-Custom-Attributes", f"top_k={top_k}")
        try:
            with urlopen(request, timeout=60) as response:
                return json.loads(response.read())[0]
        except HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, KeyError, TypeError):
                detail = json.loads(detail)["error"]
            raise DogBreedError(f"server answered {exc.code}: {detail}") from exc
        except URLError as exc:
            raise DogBreedError(
                f"cannot reach {url} ({exc.reason}); is `python -m dogbreed.serve` running?"
            ) from exc

    return classify


def is_serverless(session: Any, name: str) -> bool:
    """Whether the endpoint's variants are serverless; one that may not be described counts as real-time."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = session.client("sagemaker")
    try:
        config = client.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        variants = client.describe_endpoint_config(EndpointConfigName=config)["ProductionVariants"]
    except (BotoCoreError, ClientError):
        return False
    return any(v.get("ServerlessConfig") for v in variants)


def endpoint_classifier(name: str, region: str | None, session: Any = None) -> Classifier:
    """SageMaker `invoke_endpoint` with the image's own bytes and `top_k` in CustomAttributes; a body over
    InvokeEndpoint's limit (4 MB on a serverless endpoint) is refused here, before anything is sent, and
    the first request to a serverless endpoint says that it may wait for a cold start."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError as exc:
        raise DogBreedError("--endpoint needs boto3: pip install 'dogbreed[sagemaker]'") from exc
    session = session or boto3.Session(region_name=region)
    runtime = session.client("sagemaker-runtime")
    serverless = is_serverless(session, name)
    limit, what = (
        (SERVERLESS_MAX_BODY, "a serverless endpoint's")
        if serverless
        else (INVOKE_MAX_BODY, "InvokeEndpoint's")
    )
    cold = [serverless]  # said once, on the first request

    def classify(body: bytes, kind: str, top_k: int) -> list[dict[str, Any]]:
        if len(body) > limit:
            raise DogBreedError(
                f"{len(body):,} bytes is over {what} limit of {limit:,}: not sent; "
                "send a smaller image (resize it, or save it as JPEG)"
            )
        if cold and cold.pop():
            print(
                f"{name} is serverless: the first request after it idles may wait for a cold start "
                "(up to minutes while the model loads)",
                file=sys.stderr,
                flush=True,
            )
        try:
            response = runtime.invoke_endpoint(
                EndpointName=name,
                ContentType=kind,
                Accept="application/json",
                CustomAttributes=f"top_k={top_k}",
                Body=body,
            )
        except (BotoCoreError, ClientError) as exc:
            raise DogBreedError(f"endpoint {name}: {exc}") from exc
        return json.loads(response["Body"].read())[0]

    return classify


def format_predictions(path: str, predictions: list[dict[str, Any]]) -> str:
    lines = [path]
    for rank, p in enumerate(predictions, 1):
        lines.append(f"  {rank}. {p['breed']:<36} {p['probability']:7.2%}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = command_line.parser("dogbreed.predict", __doc__)
    parser.add_argument("paths", nargs="+", metavar="[MODEL] IMAGE", help="MODEL, then images")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running dogbreed.serve (or any SageMaker-contract) server")
    target.add_argument("--endpoint", help="a SageMaker endpoint name")
    parser.add_argument("--region", help="AWS region for --endpoint (default: the AWS configuration)")
    parser.add_argument(
        "--wait", type=command_line.at_least(0, float), default=0, help="with --url: wait this long for /ping"
    )
    parser.add_argument("--top-k", type=command_line.at_least(1), default=5)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, help="write predictions.csv here")
    parser.add_argument(
        "--batch-size", type=command_line.at_least(1), default=32, help="with a local MODEL and --out"
    )
    parser.add_argument(
        "--workers", type=command_line.at_least(0), default=2, help="DataLoader workers decoding photos"
    )
    args = parser.parse_args(argv)
    remote = args.url or args.endpoint
    if not remote and len(args.paths) < 2:
        parser.error("give MODEL and at least one IMAGE (or --url / --endpoint and images)")
    with exit_on_user_error(verbose=args.verbose):
        sys.exit(predict(args, remote))


def predict(args: argparse.Namespace, remote: str | None) -> int:
    """Every image through the model, server or endpoint; 1 when any failed (each failure named)."""
    images, names = photos([Path(p) for p in (args.paths if remote else args.paths[1:])])
    failures, results, rows = 0, [], []
    with tempfile.TemporaryDirectory(prefix="dogbreed-predict-") as workdir:
        if args.out and not remote:
            return predict_to_csv(args, images, names, Path(workdir))
        if args.url:
            wait_until_ready(args.url, args.wait)
            classify = url_classifier(args.url)
        elif args.endpoint:
            classify = endpoint_classifier(args.endpoint, args.region)
        else:
            classify = local_classifier(args.paths[0], Path(workdir))
        for image in images:
            try:
                predictions = classify(image.read_bytes(), content_type(image), args.top_k)
            except (OSError, DogBreedError) as exc:
                failures += 1
                print(f"{image}: error: {exc}", file=sys.stderr)
                rows.append((names[image], None, str(exc)))
                continue
            rows.append((names[image], predictions, None))
            results.append({"image": str(image), "predictions": predictions})
            if not args.json:
                print(format_predictions(str(image), predictions), flush=True)
    if args.json:
        print(json.dumps(results, indent=2))
    if args.out:
        print(f"wrote {write_predictions(args.out, rows)}")
    return 1 if failures else 0


def photos(paths: list[Path]) -> tuple[list[Path], dict[Path, str]]:
    """The images, a folder standing for every file under it; and each one's name in predictions.csv
    (its path under its folder, as batch transform names an object by its key under the input prefix)."""
    from dogbreed.serving.batch import images_in

    images, names = [], {}
    for path in paths:
        found = images_in(path) if path.is_dir() else [path]
        images += found
        names.update({p: (p.relative_to(path).as_posix() if path.is_dir() else str(p)) for p in found})
    return images, names


def predict_to_csv(
    args: argparse.Namespace, images: list[Path], names: dict[Path, str], workdir: Path
) -> int:
    """The local model on every photo in batches, a progress bar, predictions.csv; 1 when any failed."""
    from rich.progress import Progress

    from dogbreed.serving.artifact import resolve_model
    from dogbreed.serving.batch import predict_folder, write_predictions
    from dogbreed.serving.service import Service

    service, rows = Service(resolve_model(args.paths[0], workdir)), []
    with Progress() as progress:
        task = progress.add_task("predict", total=len(images))
        for index, predictions, error in predict_folder(
            service, images, args.batch_size, args.workers, args.top_k
        ):
            rows.append((names[images[index]], predictions, error))
            if error is not None:
                progress.console.print(f"{images[index]}: error: {error}")
            progress.advance(task)
    print(f"wrote {write_predictions(args.out, rows)}")
    return 1 if any(error for _, _, error in rows) else 0


if __name__ == "__main__":
    main()
