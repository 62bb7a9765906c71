"""Beyond one real-time endpoint (issue 23): serverless, autoscaling, batch transform, status and cleanup,
read back from moto's server.

Where moto falls short, said where it matters: it has no StopTransformJob, StopTrainingJob or
UpdateEndpoint (jobs are Completed at once, so cleanup has nothing to stop there), no model-package deletes,
and it cannot take binary invoke bodies (the payload checks run before anything is sent, so a fake
session stands in for the endpoint).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from dogbreed.container import ENDPOINT_ENVIRONMENT, SERVERLESS_MAX_BODY
from dogbreed.errors import DogBreedError
from launch.images import image_uri
from tests.test_launch import BUCKET, ROLE, client, deploy_in_process, launch, moto  # noqa: F401
from tests.test_serve import free_port

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


def test_a_payload_over_the_serverless_limit_is_refused_before_sending() -> None:
    from dogbreed.serving.predict import endpoint_classifier

    class Fake:  # a serverless endpoint as DescribeEndpoint(Config) answer; an invoke would fail the test
        def client(self, service: str):
            return self

        def describe_endpoint(self, EndpointName: str) -> dict:
            return {"EndpointConfigName": EndpointName}

        def describe_endpoint_config(self, EndpointConfigName: str) -> dict:
            return {
                "ProductionVariants": [{"ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5}}]
            }

    classify = endpoint_classifier("ep", "us-east-1", Fake())
    with pytest.raises(DogBreedError, match="over a serverless endpoint's limit of 4,194,304: not sent"):
        classify(b"x" * (SERVERLESS_MAX_BODY + 1), "image/jpeg", 5)


def test_every_option_against_the_emulator(
    moto: dict[str, str],  # noqa: F811
    trained_model: Path,
    tiny_root: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    from dogbreed.serving.package import build_model_tar

    sagemaker, s3, scaling = (
        client(moto, "sagemaker"),
        client(moto, "s3"),
        client(moto, "application-autoscaling"),
    )
    archive = build_model_tar(trained_model, tmp_path / "model.tar.gz")
    s3.put_object(Bucket=BUCKET, Key=f"dogbreed/jobs/{JOB}/output/model.tar.gz", Body=archive.read_bytes())
    sagemaker.create_training_job(  # what deploy= reads the model from (moto writes ModelArtifacts itself)
        TrainingJobName=JOB,
        AlgorithmSpecification={"TrainingImage": "x", "TrainingInputMode": "File"},
        RoleArn=ROLE,
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/dogbreed/jobs"},
        ResourceConfig={"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )

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
    sent = request_of(run, "CreateTransformJob")
    job = sagemaker.describe_transform_job(TransformJobName=sent["TransformJobName"])
    assert job["TransformInput"]["ContentType"] == "image/jpeg" and job["BatchStrategy"] == "SingleRecord"
    assert job["TransformInput"]["SplitType"] == "None" and job["MaxPayloadInMB"] == 6
    assert job["MaxConcurrentTransforms"] == 4 and job["TransformResources"]["InstanceType"] == "ml.m5.xlarge"

    # status: both endpoints with their costs, the expired one named with its cleanup, the transform job
    status = launch(tmp_path / "st", "status", env=moto)
    assert status.returncode == 0, status.stderr[-3000:]
    assert f"{scaled}  InService  ml.m5.xlarge × 1" in status.stdout and "$0.23/h" in status.stdout
    assert f"{serverless}  InService  serverless 2048 MB" in status.stdout
    assert "PAST ITS TIME" in status.stdout and f"cleanup={serverless}" in status.stdout
    assert (
        f"transform {sent['TransformJobName']}" in status.stdout
        and "model dogbreed-tf-model" in status.stdout
    )
    assert f"warning: endpoint {serverless}" in status.stdout  # every command warns

    # cleanup: no terminal and no yes=true deletes nothing; yes=true leaves nothing of ours
    refused = launch(tmp_path / "c1", "cleanup=all", env=moto)
    assert refused.returncode == 2 and "pass yes=true" in refused.stdout + refused.stderr
    assert len(sagemaker.list_endpoints()["Endpoints"]) == 2
    cleaned = launch(tmp_path / "c2", "cleanup=all", "yes=true", env=moto)
    assert cleaned.returncode == 0, cleaned.stdout[-2000:] + cleaned.stderr[-2000:]
    assert (
        not sagemaker.list_endpoints()["Endpoints"]
        and not sagemaker.list_endpoint_configs()["EndpointConfigs"]
    )
    assert [m["ModelName"] for m in sagemaker.list_models()["Models"]] == []
    assert not scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]


def request_of(run_dir: Path, operation: str) -> dict:
    return json.loads((run_dir / "requests" / f"{operation}.json").read_text())


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
