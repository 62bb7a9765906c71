"""Beyond one real-time endpoint (issue 23): serverless, autoscaling, batch transform, status and cleanup,
read back from moto's server.

Where moto falls short, said where it matters: it has no StopTransformJob, StopTrainingJob or
UpdateEndpoint (jobs are Completed at once, so cleanup has nothing to stop there: a running job is stood
in for), no model-package deletes, and it cannot take binary invoke bodies (the payload checks run before
anything is sent, so a fake session stands in for the endpoint). Its tuning jobs launch no trials and it
has no ListTrainingJobsForHyperParameterTuningJob, so `status` on a running tuning job and its trials is
checked on stood-in resources.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from dogbreed.container import ENDPOINT_ENVIRONMENT, SERVERLESS_MAX_BODY
from dogbreed.errors import DogBreedError
from launch.images import image_uri
from launch.replay.stacks import free_port
from tests.test_launch import (  # noqa: F401
    BUCKET,
    ROLE,
    client,
    deploy_in_process,
    launch,
    launch_tuning,
    moto,
    request,
)

pytestmark = pytest.mark.slow
JOB = "dogbreed-train-abc123-2026-11-26-10-00-00-000"
SERVERLESS = ["deploy=serverless", f"deploy.training_job={JOB}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*SERVERLESS, "deploy.serverless.memory_mb=1500"], "1024 to 6144 MB in 1 GB steps"),
        (
            ["deploy=serverless", "deploy.serverless.max_concurrency=0"],
            "max_concurrency=0: must be ≥ 1 (concurrent requests: 1 to 200)",
        ),
        (
            [
                "deploy=default",
                f"deploy.training_job={JOB}",
                "deploy.autoscaling.max=1",
                "deploy.autoscaling.min=2",
            ],
            "max=1 is below",
        ),
        (["transform=default"], "transform= needs input="),
    ],
)
def test_bad_settings_are_one_line_before_anything_is_created(tmp_path: Path, args: list[str], message: str):
    result = launch(tmp_path / "run", *args, env={})  # no AWS at all
    said = [
        line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line or "error" in line
    ]
    assert result.returncode == 2 and len(said) == 1 and message in said[0], result.stdout + result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run" / "requests").exists()


class ServerlessEndpoint:
    """A serverless endpoint as DescribeEndpoint(Config) and InvokeEndpoint answer it (moto cannot take
    binary invoke bodies); `invoked` counts the requests that reached it."""

    invoked = 0

    def client(self, service: str):
        return self

    def describe_endpoint(self, EndpointName: str) -> dict:
        return {"EndpointConfigName": EndpointName}

    def describe_endpoint_config(self, EndpointConfigName: str) -> dict:
        return {"ProductionVariants": [{"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}]}

    def invoke_endpoint(self, **request) -> dict:
        self.invoked += 1
        return {"Body": io.BytesIO(json.dumps([[{"breed": "Brittany", "probability": 0.9}]]).encode())}


def test_a_payload_over_the_serverless_limit_is_refused_before_sending() -> None:
    from dogbreed.serving.predict import endpoint_classifier

    endpoint = ServerlessEndpoint()
    classify = endpoint_classifier("ep", "us-east-1", endpoint)
    with pytest.raises(DogBreedError, match="over a serverless endpoint's limit of 4,194,304: not sent"):
        classify(b"x" * (SERVERLESS_MAX_BODY + 1), "image/jpeg", 5)
    assert endpoint.invoked == 0


def test_the_first_invoke_of_a_serverless_endpoint_says_it_may_be_a_cold_start(capsys) -> None:
    from dogbreed.serving.predict import endpoint_classifier

    endpoint = ServerlessEndpoint()
    classify = endpoint_classifier("ep", "us-east-1", endpoint)
    assert classify(b"jpeg", "image/jpeg", 5)[0]["breed"] == "Brittany"
    assert (
        "ep is serverless: the first request after it idles may wait for a cold start"
        in capsys.readouterr().err
    )
    classify(b"jpeg", "image/jpeg", 5)
    assert "cold start" not in capsys.readouterr().err and endpoint.invoked == 2  # said once


@pytest.mark.parametrize(
    ("args", "priced"),
    [
        (
            ["deploy=default", "deploy.instance_type=ml.g4dn.xlarge"],
            "× ml.g4dn.xlarge at $0.7364/h (unverified))",
        ),
        (["deploy=default"], "× ml.m5.xlarge at $0.23/h)"),  # verified in prices.yaml: no caveat
        (["deploy=serverless"], "$0.000040/s each (unverified));"),
        (  # the bound of an autoscaled endpoint is `max` instances
            ["deploy=default", "deploy.autoscaling.max=3"],
            "$0.69/h while it runs (3 × ml.m5.xlarge at $0.23/h, deploy.autoscaling.max)",
        ),
    ],
)
def test_the_dry_runs_cost_line_says_unverified_beside_an_unverified_price(
    tmp_path: Path, args: list[str], priced: str
) -> None:
    result = launch(tmp_path / "run", *args, f"deploy.training_job={JOB}", "dry_run=true", env={})
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("cost upper bound:")]
    assert result.returncode == 0 and priced in line, result.stdout[-2000:] + result.stderr[-2000:]


def test_a_serverless_deploy_says_its_limits_before_creating_anything(tmp_path: Path) -> None:
    args = ("deploy=serverless", f"deploy.training_job={JOB}", "dry_run=true")
    result = launch(tmp_path / "run", *args, env={})
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("serverless endpoint:")]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "2048 MB, up to 5 requests at once; CPU only (no GPU), request bodies up to 4 MB" in line
    assert "/ping must answer within 3 minutes" in line


def training_job_in_emulator(sagemaker, s3, trained_model: Path, tmp_path: Path) -> None:
    """JOB with the trained model's model.tar.gz as its output: what deploy= reads the model from (moto
    writes ModelArtifacts itself; its state is shared by the tests of this process, so JOB is made once)."""
    from dogbreed.serving.package import build_model_tar

    archive = build_model_tar(trained_model, tmp_path / "model.tar.gz")
    s3.put_object(Bucket=BUCKET, Key=f"dogbreed/jobs/{JOB}/output/model.tar.gz", Body=archive.read_bytes())
    with contextlib.suppress(ClientError):  # made by an earlier test of this process
        sagemaker.create_training_job(
            TrainingJobName=JOB,
            AlgorithmSpecification={"TrainingImage": "x", "TrainingInputMode": "File"},
            RoleArn=ROLE,
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/dogbreed/jobs"},
            ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            StoppingCondition={"MaxRuntimeInSeconds": 3600},
        )


@pytest.mark.slow
def test_a_serverless_endpoint_replays_on_the_pytorch_images_stack(
    moto: dict[str, str],  # noqa: F811
    trained_model: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    """deploy=serverless replay=true: the serverless variant's model served as its image serves it (the
    PyTorch image's TorchServe stack, one worker), behind InvokeEndpoint's front door."""
    import httpx

    from launch.replay.endpoint import endpoint_server
    from tests.conftest import REAL_DOGS
    from tests.test_serve import wait_ready
    from tests.test_stacks import name_of, stack_processes

    sagemaker, s3 = client(moto, "sagemaker"), client(moto, "s3")
    training_job_in_emulator(sagemaker, s3, trained_model, tmp_path)
    name = deploy_in_process(moto, tmp_path / "sl", JOB, monkeypatch, capsys, "serverless")
    create_model = request(tmp_path / "sl", "CreateModel")
    port = free_port()
    try:
        with endpoint_server(create_model, s3, tmp_path / "replay", port) as process:
            url = f"http://127.0.0.1:{port}"
            wait_ready(url)
            photo = (REAL_DOGS / "Brittany_02625.jpg").read_bytes()
            kind = {"Content-Type": "image/jpeg"}
            answer = httpx.post(f"{url}/invocations", content=photo, headers=kind, timeout=60)
            assert answer.status_code == 200 and len(answer.json()[0]) == 5, answer.text
            workers = [p for p in stack_processes(process) if "model_service_worker" in name_of(p)]
            assert len(workers) == 1  # SAGEMAKER_MODEL_SERVER_WORKERS=1, as AWS recommends for serverless
    finally:  # the emulator's state is the process's: leave no endpoint for the tests after this one
        sagemaker.delete_endpoint(EndpointName=name)
        sagemaker.delete_endpoint_config(EndpointConfigName=name)
        sagemaker.delete_model(ModelName=name)


def test_every_option_against_the_emulator(
    moto: dict[str, str],  # noqa: F811
    trained_model: Path,
    tiny_root: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:

    sagemaker, s3, scaling = (
        client(moto, "sagemaker"),
        client(moto, "s3"),
        client(moto, "application-autoscaling"),
    )
    training_job_in_emulator(sagemaker, s3, trained_model, tmp_path)

    # serverless: a variant with memory and concurrency, no instance type; the PyTorch image, one worker
    serverless = deploy_in_process(
        moto, tmp_path / "sl", JOB, monkeypatch, capsys, "serverless", "deploy.expires_after=0.0001"
    )
    config = sagemaker.describe_endpoint_config(EndpointConfigName=serverless)["ProductionVariants"][0]
    assert config["ServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 5}
    assert "InstanceType" not in config and "InitialInstanceCount" not in config
    model = sagemaker.describe_model(ModelName=serverless)["PrimaryContainer"]
    assert model["Image"].endswith("/pytorch-inference:2.6-cpu-py312")
    assert model["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    tags = {
        t["Key"]: t["Value"]
        for t in sagemaker.list_tags(
            ResourceArn=sagemaker.describe_endpoint(EndpointName=serverless)["EndpointArn"]
        )["Tags"]
    }
    assert (
        tags["dogbreed:project"] == "dogbreed"
        and tags["dogbreed:kind"] == "endpoint"
        and tags["dogbreed:run"]
    )

    # autoscaled real-time: the target (1…3) and a target-tracking policy on invocations per instance
    scaled = deploy_in_process(
        moto, tmp_path / "as", JOB, monkeypatch, capsys, "default", "deploy.autoscaling.max=3"
    )
    resource = f"endpoint/{scaled}/variant/AllTraffic"
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    (policy,) = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert (
        tracking["PredefinedMetricSpecification"]["PredefinedMetricType"]
        == "SageMakerVariantInvocationsPerInstance"
    )
    assert (tracking["TargetValue"], tracking["ScaleInCooldown"], tracking["ScaleOutCooldown"]) == (
        100,
        300,
        60,
    )

    # batch transform (not replayed here: see test_batch_transform_replayed): the job's fields as sent
    photos = photo_folder(tiny_root, tmp_path / "photos")
    model_in_emulator(sagemaker)
    run = tmp_path / "tf"
    done = launch(
        run,
        "transform=default",
        "transform.model=dogbreed-tf-model",
        f"input={photos}",
        "wait=false",
        env=moto,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    sent = request(run, "CreateTransformJob")
    job = sagemaker.describe_transform_job(TransformJobName=sent["TransformJobName"])
    assert job["TransformInput"]["ContentType"] == "image/jpeg" and job["BatchStrategy"] == "SingleRecord"
    assert job["TransformInput"]["SplitType"] == "None" and job["MaxPayloadInMB"] == 6
    assert job["MaxConcurrentTransforms"] == 4 and job["TransformResources"]["InstanceType"] == "ml.m5.xlarge"

    # a tuning job (moto completes it at once and launches no trials, and it has no
    # ListTrainingJobsForHyperParameterTuningJob: the trials' lines cannot be checked here)
    tuning = launch_tuning(moto, tiny_root, tmp_path / "hpo")

    # status: both endpoints with their costs, the expired one named with its cleanup, the transform job,
    # the tuning job with its cost basis
    status = launch(tmp_path / "st", "status", env=moto)
    assert status.returncode == 0, status.stderr[-3000:]
    lines = status.stdout.splitlines()
    (scaled_line,) = [line for line in lines if line.startswith(f"  {scaled}  ")]
    assert "InService  ml.m5.xlarge × 1" in scaled_line and "$0.23/h, $" in scaled_line
    assert "unverified" not in scaled_line  # ml.m5.xlarge's price is verified in prices.yaml
    (serverless_line,) = [line for line in lines if line.startswith(f"  {serverless}  ")]
    assert (
        "InService  serverless 2048 MB × up to 5 ($0.000040/s per request in flight (unverified), $0 idle)"
        in serverless_line
    )
    (tuning_line,) = [line for line in lines if line.startswith(f"  tuning {tuning}  ")]
    assert tuning_line == (
        f"  tuning {tuning}  Completed  ml.m5.xlarge × 1 per trial at $0.23/h (unverified), up to 2 trials "
        "at once  cost so far: on its trials' training lines (they carry its tags)"
    )
    (transform_line,) = [
        line for line in lines if line.startswith(f"  transform {sent['TransformJobName']}  ")
    ]
    assert "Completed  ml.m5.xlarge × 1 at $0.23/h  $" in transform_line and " so far" in transform_line
    assert "PAST ITS TIME" in status.stdout and f"cleanup={serverless}" in status.stdout
    assert "model dogbreed-tf-model" in status.stdout
    assert f"warning: endpoint {serverless}" in status.stdout  # every command warns

    # an empty input prefix: one line, no job
    jobs = len(sagemaker.list_transform_jobs()["TransformJobSummaries"])
    empty = launch(
        tmp_path / "tf-empty",
        "transform=default",
        "transform.model=dogbreed-tf-model",
        f"input=s3://{BUCKET}/nothing-here/",
        env=moto,
    )
    said = [line for line in (empty.stdout + empty.stderr).splitlines() if "error" in line.lower()]
    assert empty.returncode == 2 and len(said) == 1 and "has no objects" in said[0], empty.stderr[-2000:]
    assert len(sagemaker.list_transform_jobs()["TransformJobSummaries"]) == jobs

    # delete= takes the scaling policy and target down with the endpoint
    deleted = launch(tmp_path / "del", f"delete={scaled}", env=moto)
    assert deleted.returncode == 0, deleted.stdout[-2000:] + deleted.stderr[-2000:]
    assert not scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert not scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    assert scaled not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]

    # cleanup: no terminal and no yes=true deletes nothing; yes=true leaves nothing of ours
    refused = launch(tmp_path / "c1", "cleanup=all", env=moto)
    assert refused.returncode == 2 and "pass yes=true" in refused.stdout + refused.stderr
    assert len(sagemaker.list_endpoints()["Endpoints"]) == 1
    cleaned = launch(tmp_path / "c2", "cleanup=all", "yes=true", env=moto)
    assert cleaned.returncode == 0, cleaned.stdout[-2000:] + cleaned.stderr[-2000:]
    assert (
        not sagemaker.list_endpoints()["Endpoints"]
        and not sagemaker.list_endpoint_configs()["EndpointConfigs"]
    )
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == []
    assert not scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open()))


def launch_predict(model: Path, folder: Path, out: Path):
    from tests.conftest import run_repo

    return run_repo(["-m", "dogbreed.predict", str(model), str(folder), "--out", str(out), "--workers", "2"])


def photo_folder(tiny_root: Path, folder: Path) -> Path:
    """Five generated photos and one corrupt one."""
    folder.mkdir()
    for path in sorted((tiny_root / "test").rglob("*.jpg"))[:5]:
        shutil.copy(path, folder / path.name)
    (folder / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    return folder


def model_in_emulator(sagemaker) -> None:
    """A model of this project serving the archive at the training job's output, on the PyTorch inference
    image (replay serves it on that image's stack, TorchServe)."""
    sagemaker.create_model(
        ModelName="dogbreed-tf-model",
        PrimaryContainer={
            "Image": image_uri("pytorch-inference", "us-east-1", None),
            "ModelDataUrl": f"s3://{BUCKET}/dogbreed/jobs/{JOB}/output/model.tar.gz",
            "Environment": ENDPOINT_ENVIRONMENT,
        },
        ExecutionRoleArn=ROLE,
        Tags=[{"Key": "dogbreed:project", "Value": "dogbreed"}],
    )


def test_batch_transform_replayed(
    moto: dict[str, str],  # noqa: F811
    trained_model: Path,
    tiny_root: Path,
    tmp_path: Path,
) -> None:
    from dogbreed.serving.package import build_model_tar

    sagemaker = client(moto, "sagemaker")
    archive = build_model_tar(trained_model, tmp_path / "model.tar.gz")
    client(moto, "s3").put_object(
        Bucket=BUCKET, Key=f"dogbreed/jobs/{JOB}/output/model.tar.gz", Body=archive.read_bytes()
    )
    photos = photo_folder(tiny_root, tmp_path / "photos")
    if "dogbreed-tf-model" not in [m["ModelName"] for m in sagemaker.list_models()["Models"]]:
        model_in_emulator(sagemaker)
    run = tmp_path / "tf"
    port = free_port()
    done = launch(
        run,
        "transform=default",
        "transform.model=dogbreed-tf-model",
        f"input={photos}",
        "replay=true",
        f"local_port={port}",
        env=moto,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2 and "1 of 6 records failed (corrupt.jpg)" in said, said[-3000:]
    local = launch_predict(trained_model, photos, tmp_path / "local.csv")
    remote, here = read_csv(run / "predictions.csv"), read_csv(tmp_path / "local.csv")
    assert [r["object"] for r in remote] == [r["object"] for r in here] and len(remote) == 6
    for a, b in zip(remote, here, strict=True):  # batched vs one by one: the same breeds, float noise aside
        assert a["top5"] == b["top5"] and bool(a["error"]) == bool(b["error"])
        assert not a["confidence"] or abs(float(a["confidence"]) - float(b["confidence"])) < 1e-4
    assert [r["object"] for r in remote if r["error"]] == ["corrupt.jpg"], local.stderr


def test_cleanup_stops_running_jobs_and_leaves_finished_ones() -> None:
    """moto completes every job at once (and has no StopTransformJob), so a running job is stood in for."""
    from datetime import UTC, datetime

    from launch.commands.cleanup import targets
    from launch.inventory import Found
    from launch.teardown import take_down

    now = datetime.now(UTC)
    found = [
        Found("tuning", "dogbreed-hpo-a", now, "InProgress", {}),
        Found("transform", "dogbreed-tf-a", now, "InProgress", {}),
        Found("training", "dogbreed-train-done", now, "Completed", {}),
    ]
    chosen = targets(found, "all")
    assert [(f.kind, f.name) for f in chosen] == [
        ("tuning", "dogbreed-hpo-a"),
        ("transform", "dogbreed-tf-a"),
    ]

    calls = []

    class Client:
        def client(self, service: str):
            return self

        def __getattr__(self, operation: str):
            return lambda **request: calls.append((operation, request))

    said = [line for f in chosen for line in take_down(Client(), f.kind, f.name)]
    assert calls == [
        ("stop_hyper_parameter_tuning_job", {"HyperParameterTuningJobName": "dogbreed-hpo-a"}),
        ("stop_transform_job", {"TransformJobName": "dogbreed-tf-a"}),
    ]
    assert said == ["asked tuning job dogbreed-hpo-a to stop", "asked transform job dogbreed-tf-a to stop"]


def test_status_prices_a_running_tuning_job_on_its_trials_lines_once() -> None:
    """moto's tuning jobs launch no trials, so a running one and its trial are stood in for."""
    from datetime import UTC, datetime, timedelta

    from launch.commands.status import report
    from launch.inventory import Found

    now, name = datetime.now(UTC), "dogbreed-hpo-a"
    resources = {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30}
    tuning = Found(
        "tuning",
        name,
        now,
        "InProgress",
        {},
        {
            "TrainingJobDefinition": {"ResourceConfig": resources},
            "HyperParameterTuningJobConfig": {"ResourceLimits": {"MaxParallelTrainingJobs": 2}},
        },
    )
    trial = Found(
        "training",
        f"{name}-001-abc",
        now - timedelta(hours=1),
        "InProgress",
        {},
        {
            "ResourceConfig": resources,
            "TrainingStartTime": now - timedelta(hours=1),
            "TuningJobArn": f"arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/{name}",
        },
    )
    lines = report([tuning, trial], 7)
    assert (
        f"  tuning {name}  InProgress  ml.m5.xlarge × 1 per trial at $0.23/h (unverified), up to 2 trials "
        "at once  ≤ $0.46/h, cost so far: on its trials' training lines (they carry its tags)"
    ) in lines
    assert (
        f"  training {name}-001-abc  InProgress  ml.m5.xlarge × 1 at $0.23/h (unverified)  $0.23/h, "
        f"$0.23 so far  trial of {name}"
    ) in lines
    assert lines[-2] == "total: $0.23/h now; $0.23 so far for what is listed"  # the trial's, not twice
