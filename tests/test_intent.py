"""Issue 21: what the launcher's config sets is in the request it builds, before anything is sent.

Each command's dry run runs in this process; every field of its `intent` is looked up in the request as it
was written to `<run dir>/requests/`, and every key of the launcher's schema is either sent or said not to be.
A request builder mutated to drop a value fails the check, naming the field and the key.
"""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dogbreed.errors import DogBreedError
from dogbreed.training.config import CONF_DIR
from launch.capture import ABSENT, lookup
from launch.commands import COMMANDS
from launch.schema import Launch
from tests.conftest import HANG_GUARD_S, REPO
from tests.test_schema import leaves

pytestmark = pytest.mark.slow
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
# launcher keys that no request carries, and why
NOT_SENT = {
    "instance.name": "the config's own name",
    "instance.price_per_hour_usd": "the cost bound printed",
    "experiment": "sent as HyperParameters.experiment",
    "overrides": "each sent as the hyperparameter of its key (HyperParameters.lr for model.lr)",
    "hparams": "its values are sent as hyperparameters",
    "invoke": "InvokeEndpoint.EndpointName (test_invoke_and_delete_intent)",
    "delete": "DeleteEndpoint.EndpointName (test_invoke_and_delete_intent)",
    "image": "the body of InvokeEndpoint",
    "dry_run": "how to send, not what",
    "replay": "how to send, not what",
    "replay_trials": "what replay runs here",
    "wait": "how to send, not what",
    "poll_seconds": "how to follow",
    "local_port": "the local twin's port",
    "region": "the endpoint requests go to",
    "bucket": "in every S3 path (OutputDataConfig.S3OutputPath)",
    "prefix": "in every name and S3 path",
    "training_image": "in the image URI (launch/images.py)",
    "deploy.image": "PrimaryContainer.Image's URI (launch/images.py)",
    "deploy.environment": "PrimaryContainer.Environment (tests/test_launch.py reads it back)",
    "deploy.expires_after": "the endpoint's dogbreed:expires-after-hours tag (launch/tags.py)",
    "deploy.serverless.memory_mb": "ServerlessConfig.MemorySizeInMB (deploy=serverless's intent)",
    "deploy.serverless.max_concurrency": "ServerlessConfig.MaxConcurrency (deploy=serverless's intent)",
    "input": "transform's input: uploaded, then TransformInput's S3Uri",
    "status": "the command: List* calls only",
    "status_days": "how far back status and cleanup list jobs",
    "cleanup": "the command's argument: what to take down",
    "yes": "whether cleanup asks first",
    "telemetry": "the SDK's own setting",
    "train.debugger": "whether DebugHookConfig is there",
    "train.profiler": "whether ProfilerConfig is there",
    "train.rules": "DebugRuleConfigurations, built by the SDK's Rule.sagemaker",
    "train.profiler_rules": "ProfilerRuleConfigurations",
    "deploy.training_job": "CreateModel's ModelDataUrl, looked up",
}


def launch_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR / "launch"), version_base="1.3"):
        return compose(
            "launch",
            [f"role_arn={ROLE}", "bucket=dogbreed-test", "region=us-east-1", "dry_run=true", *overrides],
        )


def training(*overrides: str) -> str:
    """Training overrides as the launcher's command line gathers them."""
    return f"overrides=[{','.join(json.dumps(o) for o in overrides)}]"


def dry_run(cfg: DictConfig, run_dir: Path, monkeypatch) -> dict[str, dict]:
    from launch.cli import cloud

    for name in ("SAGEMAKER_USER_CONFIG_OVERRIDE", "SAGEMAKER_VALIDATE_ROLE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    cloud(cfg, run_dir)
    return {p.stem: json.loads(p.read_text()) for p in (run_dir / "requests").glob("*.json")}


RUNS = {
    "hpo": ["hpo=default", "hpo.max_jobs=3", "hpo.max_parallel_jobs=3", "hpo.seed=0", "instance.count=2"],
    "train": ["train=debugger", "instance=ml.g4dn.xlarge", "instance.spot=true", "instance.volume_gb=50"],
    "deploy": [
        "deploy=default",
        "deploy.training_job=dogbreed-train-x",
        "deploy.initial_instance_count=2",
        "deploy.autoscaling.max=4",
        "deploy.autoscaling.target_invocations=250",
        "deploy.autoscaling.scale_in_cooldown_s=0",  # falsy: the kind of value that went missing
    ],
    "transform": [
        "transform=default",
        "transform.model=dogbreed-model-x",
        "transform.instance_count=2",
        "transform.max_payload_mb=5",
        "transform.retries=0",
        "input={photos}",
    ],
}


@pytest.mark.parametrize("command", sorted(RUNS))
def test_every_configured_value_is_in_the_dry_runs_request(
    command: str, tiny_root: Path, tmp_path: Path, monkeypatch
) -> None:
    run = [o.format(photos=tiny_root / "test") for o in RUNS[command]]
    cfg = launch_cfg([*run, "experiment=demo", training(f"data.root={tiny_root}", "model.lr=0.02")])
    requests = dry_run(cfg, tmp_path / "run", monkeypatch)
    intent = COMMANDS[command].intent(cfg)
    for operation, fields in intent.items():
        for path, (key, value) in fields.items():
            got = lookup(requests[operation], path)
            assert got == value or (got is ABSENT and value is False), (operation, path, key, value, got)
    sent = {key.split("[")[0] for fields in intent.values() for key, _ in fields.values()}
    assert "hpo.seed" in sent or command != "hpo"
    if command == "train":
        assert requests["CreateTrainingJob"]["HyperParameters"]["lr"] == "0.02"


def test_every_launcher_key_is_sent_or_said_not_to_be(tiny_root: Path) -> None:
    cfg = launch_cfg(
        [
            *RUNS["hpo"],
            "train=debugger",
            "deploy=default",
            "deploy.endpoint_name=ep",
            "deploy.autoscaling.max=2",
            "instance.spot=true",
            "transform=default",
            "transform.model=m",
        ]
    )
    sent = {
        key.split("[")[0]
        for command in COMMANDS.values()
        if command.intent is not None and command.key in ("hpo", "train", "deploy", "transform")
        for fields in command.intent(cfg).values()
        for key, _ in fields.values()
    }
    keys = {key for key, _ in leaves(Launch)} | {"hpo.params", "overrides"}
    missing = sorted(k for k in keys if k not in sent and k not in NOT_SENT)
    assert missing == [], f"keys neither in an intent nor in NOT_SENT: {missing}"


def test_invoke_and_delete_intent() -> None:
    from launch.capture import differences

    cfg = launch_cfg(["invoke=my-endpoint", "delete=my-endpoint"])
    for key, operation in (("invoke", "InvokeEndpoint"), ("delete", "DeleteEndpoint")):
        expected = COMMANDS[key].intent(cfg)[operation]
        assert differences({"EndpointName": "my-endpoint"}, expected) == []
        assert differences({"EndpointName": "other"}, expected) == [
            f"EndpointName='other', but {key}='my-endpoint'"
        ]


def test_a_builder_that_drops_a_value_fails_the_check(tiny_root: Path, tmp_path: Path, monkeypatch) -> None:
    import sagemaker.core.training.configs as configs

    # what the SDK did with a falsy count: the field never reached the request
    class Dropping(configs.Compute):
        def __init__(self, **kwargs) -> None:
            super().__init__(**{k: v for k, v in kwargs.items() if k != "instance_count"})

    monkeypatch.setattr(configs, "Compute", Dropping)  # a Compute still: the SDK's pydantic checks accept it
    cfg = launch_cfg(
        ["train=default", "instance.count=3", "experiment=demo", training(f"data.root={tiny_root}")]
    )
    with pytest.raises(DogBreedError) as err:
        dry_run(cfg, tmp_path / "run", monkeypatch)
    assert "CreateTrainingJob request differs from the config" in str(err.value)
    assert "ResourceConfig.InstanceCount" in str(err.value) and "instance.count=3" in str(err.value)
    assert not (tmp_path / "run" / "requests" / "CreateTrainingJob.json").exists()


def without(params: dict, path: str) -> dict:
    """`params` less the member at a dotted `path` (a copy): what a builder that drops a value sends."""
    out = copy.deepcopy(params)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    del node[last]
    return out


@pytest.mark.parametrize(
    ("command", "operation", "field", "key"),
    [
        ("deploy", "RegisterScalableTarget", "MaxCapacity", "deploy.autoscaling.max=4"),
        (
            "deploy",
            "PutScalingPolicy",
            "TargetTrackingScalingPolicyConfiguration.ScaleInCooldown",
            "deploy.autoscaling.scale_in_cooldown_s=0",
        ),
        (
            "transform",
            "CreateTransformJob",
            "ModelClientConfig.InvocationsTimeoutInSeconds",
            "transform.invocation_timeout_s=60",
        ),
        ("transform", "CreateTransformJob", "TransformResources.InstanceCount", "transform.instance_count=2"),
    ],
)
def test_a_builder_that_drops_a_scaling_or_transform_value_fails_the_check(
    command: str, operation: str, field: str, key: str, tiny_root: Path, tmp_path: Path, monkeypatch
) -> None:
    """The value is taken out on its way to botocore (`BaseClient._make_api_call`, before our handlers)."""
    from botocore.client import BaseClient

    real = BaseClient._make_api_call

    def dropping(self, name, params):
        return real(self, name, without(params, field) if name == operation else params)

    monkeypatch.setattr(BaseClient, "_make_api_call", dropping)
    cfg = launch_cfg([o.format(photos=tiny_root / "test") for o in RUNS[command]])
    with pytest.raises(DogBreedError) as err:
        dry_run(cfg, tmp_path / "run", monkeypatch)
    assert f"{operation} request differs from the config: {field} is missing ({key})" in str(err.value)
    assert not (tmp_path / "run" / "requests" / f"{operation}.json").exists()


def test_a_dry_run_with_a_bad_value_touches_no_network_and_downloads_nothing(tmp_path: Path) -> None:
    """The AWS endpoint and the dataset URL point at a socket that counts connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port, contacts = listener.getsockname()[1], []

    def accept() -> None:
        while True:
            try:
                contacts.append(listener.accept())
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    missing = tmp_path / "dogImages"
    base = [
        sys.executable,
        "launch/sagemaker.py",
        "hpo=default",
        "dry_run=true",
        f"role_arn={ROLE}",
        "bucket=b",
        f"data.root={missing}",
        f"data.url=http://127.0.0.1:{port}/dogImages.zip",
    ]
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    try:
        bad = subprocess.run(
            [*base, "hpo.max_jobs=0", f"hydra.run.dir={tmp_path / 'a'}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
        )
        assert bad.returncode == 2 and "hpo.max_jobs=0: must be ≥ 1" in bad.stderr, bad.stderr[-2000:]
        assert not (tmp_path / "a").exists()
        good = subprocess.run(
            [*base, f"hydra.run.dir={tmp_path / 'b'}"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_S,
        )
        assert good.returncode == 0, good.stderr[-3000:]
        assert (
            f"dry run: {missing} is missing; a real run would download http://127.0.0.1:{port}/dogImages.zip"
            in good.stdout
        )
        assert "upload it to s3://b/dogbreed/data/dogImages/" in good.stdout
    finally:
        listener.close()
    assert contacts == [], "a dry run contacted the network"
    assert not missing.exists() and not (tmp_path / ".dogImages.download").exists()
