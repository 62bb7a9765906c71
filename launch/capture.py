"""Recording every AWS request at the botocore layer, and `dry_run`: stopping them before they are sent.

The handlers sit on the boto3 session that the SageMaker SDK and our own code use, so what is recorded is
what the real code path sends. botocore checks types and required members; `violations` adds what its
validator leaves to the service — string patterns, lengths, enums and number ranges — and every recorded
request must pass it, so a request the API would reject fails here, in dry-run too, before anything is
created. In the same place each request is compared with what the config set (`RequestLog.expect`, a
command's `intent`): a value the SDK dropped or changed on the way names the field and the key. In
dry-run, `before-call` answers with a response shaped by the operation's output model and nothing leaves
the machine: no credentials needed.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore.model import OperationModel, Shape

from dogbreed.errors import DogBreedError

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
    elif isinstance(out.get("Body"), bytes):  # InvokeEndpoint's: text as text, an image as its size
        try:
            out["Body"] = out["Body"].decode("utf-8")
        except UnicodeDecodeError:
            out["Body"] = f"<{len(out['Body'])} bytes>"
    return json.loads(json.dumps(out, default=str))


@cache
def _pattern(pattern: str) -> Any:
    """AWS patterns are Java regexes (`\\p{L}`…): the `regex` module reads them, `re` most of them.
    None when neither can: that pattern is not judged, and the log says so."""
    try:
        import regex

        return regex.compile(pattern)
    except ImportError:
        pass
    except Exception:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None


def violations(shape: Shape | None, value: Any, where: str = "") -> list[str]:
    """Where `value` breaks its shape's pattern, length, enum or range constraints (empty: it passes)."""
    if shape is None or value is None:
        return []
    meta, kind, problems = shape.metadata, shape.type_name, []
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            problems += violations(member, value.get(name), f"{where}.{name}".lstrip("."))
    elif kind == "list" and isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problems += violations(shape.member, item, f"{where}[{i}]")
    elif kind == "map" and isinstance(value, dict):
        for key, item in value.items():
            problems += violations(shape.key, key, f"{where} key {key!r}")
            problems += violations(shape.value, item, f"{where}[{key!r}]")
    if kind == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            problems.append(f"{where}={value!r} is not one of {shape.enum}")
        if "pattern" in meta:
            compiled = _pattern(meta["pattern"])
            if compiled is None:
                log.warning(
                    "%s: pattern %r not checked (no regex engine here reads it)", where, meta["pattern"]
                )
            elif not compiled.fullmatch(value):
                problems.append(f"{where}={value!r} does not match the pattern {meta['pattern']!r}")
    sized = kind in ("string", "list", "map") and isinstance(value, str | list | tuple | dict)
    if sized and not meta.get("min", 0) <= len(value) <= meta.get("max", len(value)):
        problems.append(f"{where} has length {len(value)}, outside [{meta.get('min', 0)}, {meta.get('max')}]")
    number = kind in ("integer", "long", "double", "float") and isinstance(value, int | float)
    if number and not meta.get("min", value) <= value <= meta.get("max", value):
        problems.append(f"{where}={value} is outside [{meta.get('min')}, {meta.get('max')}]")
    return problems


def check_request(model: OperationModel, params: dict[str, Any]) -> None:
    """Refuse a request the service would reject on a constraint botocore does not check."""
    problems = violations(model.input_shape, params)
    if problems:
        raise DogBreedError(
            f"{model.service_model.service_name} {model.name} request would be rejected: "
            + "; ".join(problems)
        )


ABSENT = object()


def lookup(params: Any, path: str) -> Any:
    """The value at `ResourceConfig.InstanceCount` or `ProductionVariants[0].InstanceType`, or ABSENT."""
    value = params
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        index: Any = int(part[1:-1]) if part.startswith("[") else part
        listed = isinstance(value, list) and isinstance(index, int) and index < len(value)
        if not (listed or (isinstance(value, dict) and index in value)):
            return ABSENT
        value = value[index]
    return value


def _canonical(value: Any) -> Any:
    """Lists of named members (parameter ranges) compared whatever their order."""
    if isinstance(value, list) and all(isinstance(v, dict) and "Name" in v for v in value):
        return sorted((_canonical(v) for v in value), key=lambda v: v["Name"])
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def differences(params: dict[str, Any], expected: dict[str, tuple[str, Any]]) -> list[str]:
    """Where a request lacks or changed what the config set: `field is missing (hpo.max_jobs=20)`.
    A false flag may be absent: false is the service's default."""
    out = []
    for path, (key, want) in expected.items():
        got = lookup(params, path)
        if got is ABSENT and want is not False:
            out.append(f"{path} is missing ({key}={want!r})")
        elif got is not ABSENT and _canonical(got) != _canonical(want):
            out.append(f"{path}={got!r}, but {key}={want!r}")
    return out


def keep_member(boto: boto3.Session, operation: str, path: str, value: Any) -> None:
    """sagemaker-core serialises only truthy members of a shape, so a configured 0 (a seed, a retry count)
    never reaches the request. Put it back at `path` (dotted) at the botocore layer, before the request
    is recorded and checked; register it before the command's clients exist (each copies the handlers)."""

    def mend(params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        if model.name == operation:
            *parents, last = path.split(".")
            node = params
            for part in parents:
                node = node.setdefault(part, {})
            node.setdefault(last, value)

    # botocore runs a wildcard's handlers before a full name's: first among the recorder's (`*.*`)
    boto.events.register_first("provide-client-params.*.*", mend)


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
        self.intent: dict[str, dict[str, tuple[str, Any]]] = {}
        # last: after handlers that mend a request (`keep_member`), it is what is sent
        session.events.register_last("provide-client-params.*.*", self._record)
        if dry_run:
            session.events.register("before-call.*.*", self._stop)

    def expect(self, intent: dict[str, dict[str, tuple[str, Any]]]) -> None:
        """From now on each request must carry what `intent` says of its operation (`Command.intent`)."""
        self.intent = intent

    def _record(self, params: dict[str, Any], model: OperationModel, **_: Any) -> None:
        check_request(model, params)
        changed = differences(params, self.intent.get(model.name, {}))
        if changed:
            raise DogBreedError(
                f"{model.service_model.service_name} {model.name} request differs from the config: "
                + "; ".join(changed)
            )
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
