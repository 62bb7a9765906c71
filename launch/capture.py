"""Recording every AWS request at the botocore layer, and `dry_run`: stopping them before they are sent.

The handlers sit on the boto3 session that the SageMaker SDK and our own code use, so what is recorded is
what the real code path sends. botocore validates each request against the service model before the
`before-call` event, so an invalid request fails here too. In dry-run, `before-call` answers with a
response shaped by the operation's output model and nothing leaves the machine: no credentials needed.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.model import OperationModel, Shape

log = logging.getLogger(__name__)
UPLOADS = {"PutObject", "UploadPart"}  # their Body is file bytes: recorded as a size


def _jsonable(operation: str, params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    if operation in UPLOADS and "Body" in out:
        body = out["Body"]
        if str(out.get("Key", "")).endswith((".json", ".sh")) and hasattr(body, "seek"):  # small texts: keep
            start = body.tell()
            out["Body"] = body.read().decode("utf-8", "replace")
            body.seek(start)
        else:
            out["Body"] = f"<{len(body)} bytes>" if isinstance(body, bytes | str) else "<stream>"
    elif isinstance(out.get("Body"), bytes):
        out["Body"] = out["Body"].decode("utf-8", "replace")
    return json.loads(json.dumps(out, default=str))


def fake_value(shape: Shape, name: str, depth: int = 0) -> Any:
    """A placeholder value of `shape` with every required member filled (what the SDK parses)."""
    if shape.type_name == "structure":
        members = shape.required_members if depth else list(shape.members)
        return {m: fake_value(shape.members[m], m, depth + 1) for m in members if depth < 6}
    if shape.type_name == "list":
        return []
    if shape.type_name == "map":
        return {}
    if shape.type_name in ("integer", "long"):
        return 0
    if shape.type_name in ("double", "float"):
        return 0.0
    if shape.type_name == "boolean":
        return False
    if shape.type_name == "timestamp":
        return datetime.now(UTC)
    if shape.enum:
        return shape.enum[0]
    if name.endswith("Arn"):
        return "arn:aws:sagemaker:us-east-1:000000000000:dry-run/dry-run"
    return "dry-run"


class RequestLog:
    """Writes each request to `<out_dir>/<Operation>.json` (repeats of an operation as `_2`, `_3`…)."""

    def __init__(self, session: boto3.Session, out_dir: Path, dry_run: bool) -> None:
        self.out_dir, self.dry_run = Path(out_dir), dry_run
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        session.events.register("provide-client-params.*.*", self._record)
        if dry_run:
            session.events.register("before-call.*.*", self._stop)

    def _record(self, params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        body = _jsonable(model.name, params)
        self.requests.append((model.service_model.service_name, model.name, body))
        count = sum(1 for _, op, _ in self.requests if op == model.name)
        name = model.name if count == 1 else f"{model.name}_{count}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{name}.json").write_text(json.dumps(body, indent=2, sort_keys=True))

    def _stop(self, model: OperationModel, **_: Any) -> tuple[Any, dict[str, Any]]:
        response = fake_value(model.output_shape, model.name) if model.output_shape is not None else {}
        response["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": "dry-run"}
        http = type("DryRunResponse", (), {"status_code": 200, "headers": {}, "content": b""})()
        return http, response

    def of(self, operation: str) -> list[dict[str, Any]]:
        return [body for _, op, body in self.requests if op == operation]
