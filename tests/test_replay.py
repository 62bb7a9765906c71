"""replay=true: the requests we send, run here as SageMaker would run them, against moto's server.

The whole seed flow — upload, tuning (1 trial), training with the best values, training with Debugger,
deploy, invoke, delete — and requests mutated so that they would not run, each failing with its field.
The tuner's trial and `train=default` replay in the training image's environment (Python 3.12, torch
2.14.0); `train=debugger` (on `training_image=pytorch-training`) on this repository's, which keeps the flow
short.
"""

from __future__ import annotations

import csv
import io
import re
import tarfile
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from launch.images import profile
from launch.replay import ReplayError
from launch.replay.endpoint import endpoint_server
from launch.replay.jobs import check_requirements, replay_training
from launch.replay.stacks import free_port
from launch.replay.tuning import trial_request
from tests.conftest import HANG_GUARD_S, REAL_DOGS
from tests.test_launch import BUCKET, client, deploy_in_process, launch, moto, request  # noqa: F401
from tests.test_serve import wait_ready

pytestmark = pytest.mark.slow
SMALL = ["trainer.max_epochs=1", "data.image_size=64", "data.num_workers=0"]


def s3_object(env: dict[str, str], uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return client(env, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def test_the_seed_flow_replayed_against_the_emulator(
    moto: dict[str, str],  # noqa: F811
    tiny_root: Path,
    tmp_path: Path,
    monkeypatch,
    capsys,
) -> None:
    data = f"data.root={tiny_root}"
    # one trial: each job in the image's environment takes ~1½ min on 2 cores
    tuned = launch(
        tmp_path / "hpo",
        "hpo=default",
        "experiment=demo",
        "replay=true",
        "replay_trials=1",
        data,
        *SMALL,
        env=moto,
    )
    assert tuned.returncode == 0, tuned.stdout[-3000:] + tuned.stderr[-3000:]
    rows = list(csv.DictReader((tmp_path / "hpo" / "trials.csv").open()))
    assert [r["state"] for r in rows] == ["Completed"]  # replay_trials=1
    assert all(0 <= float(r["val_acc"]) <= 1 for r in rows)
    # the tuner's trials take the image's own start (its sagemaker-training toolkit), in its environment
    assert tuned.stdout.count("runs in the pytorch-amzn2023 image's environment") == 1, tuned.stdout[-3000:]
    logs = sorted((tmp_path / "hpo" / "replay").glob("*/job.log"))
    assert len(logs) == 1, logs
    for log in logs:
        text = log.read_text()
        assert re.search(r"^train\.py: Python 3\.12\.\d+, torch 2\.14\.0\b", text, re.M), text[-3000:]
        assert "sagemaker_pytorch_container.training" in text or "sagemaker-training" in text, text[-3000:]
    tuning = request(tmp_path / "hpo", "CreateHyperParameterTuningJob")
    assert "sagemaker_program" in tuning["TrainingJobDefinition"]["StaticHyperParameters"]  # the toolkit path
    best = tmp_path / "hpo" / "best_hparams.yaml"
    assert set(OmegaConf.load(best)) == {"lr", "eps", "weight_decay", "batch_size"}

    trained = launch(
        tmp_path / "train",
        "train=default",
        "experiment=demo",
        "replay=true",
        f"hparams={best}",
        data,
        *SMALL,
        env=moto,
    )
    assert trained.returncode == 0, trained.stdout[-3000:] + trained.stderr[-3000:]
    job = request(tmp_path / "train", "CreateTrainingJob")
    assert job["AlgorithmSpecification"]["ContainerEntrypoint"]  # ModelTrainer's sm_drivers path
    assert float(job["HyperParameters"]["lr"]) == OmegaConf.load(best).lr
    assert re.search(rf"replay: {job['TrainingJobName']} completed; metrics .*test_acc \d", trained.stdout)
    # ModelTrainer's job of the default image ran in that image's environment, on its Python and torch
    assert f"{job['TrainingJobName']} runs in the pytorch-amzn2023 image's environment" in trained.stdout
    log = (tmp_path / "train" / "replay" / job["TrainingJobName"] / "job.log").read_text()
    assert re.search(r"^train\.py: Python 3\.12\.\d+, torch 2\.14\.0\b", log, re.M), log[-3000:]
    assert "Installing requirements" in log  # sm_train.sh's pip install -r, into the job's overlay
    model_uri = f"s3://{BUCKET}/dogbreed/jobs/{job['TrainingJobName']}/output/model.tar.gz"
    with tarfile.open(fileobj=io.BytesIO(s3_object(moto, model_uri))) as tar:
        assert {"model.pt", "classes.json", "config.json", "code/inference.py"} <= set(tar.getnames())

    # the classic image, still selectable: its job replays on this repository's environment (one job in
    # the image's environment per flow keeps `make test` short)
    debugged = launch(
        tmp_path / "debug",
        "train=debugger",
        "training_image=pytorch-training",
        "experiment=demo",
        "replay=true",
        data,
        *SMALL,
        env=moto,
    )
    assert debugged.returncode == 0, debugged.stdout[-3000:] + debugged.stderr[-3000:]
    assert "no replay environment for the training image pytorch-training" in debugged.stdout
    assert "Debugger's rule containers are not replayed" in debugged.stdout
    debug_job = request(tmp_path / "debug", "CreateTrainingJob")["TrainingJobName"]
    output = s3_object(moto, f"s3://{BUCKET}/dogbreed/jobs/{debug_job}/output/output.tar.gz")
    with tarfile.open(fileobj=io.BytesIO(output)) as tar:
        assert {"report.html", "debug/rules.json"} <= set(tar.getnames())  # dogbreed's rules ran in the job

    # deploy=default (the Ray Serve image) and deploy=torchserve (the PyTorch image) of the job's archive,
    # each replayed on its image's own stack: the archive has no ONNX export, so both serve it eagerly
    names = []
    for option, image in (("default", "/ray:"), ("torchserve", "/pytorch-inference:")):
        names.append(
            deploy_in_process(moto, tmp_path / option, job["TrainingJobName"], monkeypatch, capsys, option)
        )
        create_model = request(tmp_path / option, "CreateModel")
        container = create_model["PrimaryContainer"]
        assert container["ModelDataUrl"] == model_uri and image in container["Image"]
        port = free_port()
        with endpoint_server(create_model, client(moto, "s3"), tmp_path / f"{option}-replay", port):
            wait_ready(f"http://127.0.0.1:{port}", timeout=HANG_GUARD_S)
            photo = f"image={REAL_DOGS / 'Brittany_02625.jpg'}"
            invoked = launch(
                tmp_path / f"invoke-{option}",
                f"invoke={names[-1]}",
                "replay=true",
                f"local_port={port}",
                photo,
            )
            assert invoked.returncode == 0, invoked.stderr[-3000:]
            assert invoked.stdout.count("%") == 5 and "1. " in invoked.stdout  # top-5
    # on the torch the cloud runs it on: the image's, not this repository's or the training image's
    image = profile("pytorch-inference")
    assert re.search(
        rf"runtime eager, \d thread\(s\), Python {image.python}\.\d+, torch {image.packages.torch}\b",
        (tmp_path / "torchserve-replay" / "container.log").read_text(),
    )
    for name in names:
        deleted = launch(tmp_path / f"delete-{name}", f"delete={name}", env=moto)
        assert deleted.returncode == 0 and f"deleted endpoint {name}" in deleted.stdout


def test_requests_that_would_not_run_fail_in_replay_naming_the_field(
    moto: dict[str, str],  # noqa: F811
    tiny_root: Path,
    tmp_path: Path,
) -> None:
    data = f"data.root={tiny_root}"
    assert (
        launch(
            tmp_path / "t", "train=default", "experiment=demo", "wait=false", data, *SMALL, env=moto
        ).returncode
        == 0
    )
    assert (
        launch(
            tmp_path / "h", "hpo=default", "experiment=demo", "wait=false", data, *SMALL, env=moto
        ).returncode
        == 0
    )
    job = request(tmp_path / "t", "CreateTrainingJob")
    trial = trial_request(
        request(tmp_path / "h", "CreateHyperParameterTuningJob"),
        0,
        {"lr": "0.001", "eps": "1e-08", "weight_decay": "0.01", "batch_size": "32"},
    )
    hyperparameters = trial["HyperParameters"]
    s3 = client(moto, "s3")
    # the submitted source asking for a numpy the image does not have
    source = s3_object(moto, hyperparameters["sagemaker_submit_directory"])
    changed = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(source)) as old, tarfile.open(fileobj=changed, mode="w:gz") as new:
        for member in old.getmembers():
            content = old.extractfile(member).read() if member.isfile() else None
            if member.name.removeprefix("./") == "requirements.txt":
                content += b"numpy<2\n"
                added_line = content.decode().count("\n")  # the line the replay must name
                member.size = len(content)
            new.addfile(member, io.BytesIO(content) if content is not None else None)
    s3.put_object(Bucket=BUCKET, Key="mutated/sourcedir.tar.gz", Body=changed.getvalue())
    without_code = [c for c in job["InputDataConfig"] if c["ChannelName"] != "code"]
    # the code channel's requirements.txt asking for a numpy the image does not have
    code = next(c for c in job["InputDataConfig"] if c["ChannelName"] == "code")
    bucket, _, prefix = code["DataSource"]["S3DataSource"]["S3Uri"].removeprefix("s3://").partition("/")
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        relative = obj["Key"][len(prefix) :].lstrip("/")
        if relative == "requirements.txt":
            body += b"numpy<2\n"
            conflict_line = body.decode().count("\n")
        s3.put_object(Bucket=BUCKET, Key=f"conflict/code/{relative}", Body=body)
    source = {**code["DataSource"]["S3DataSource"], "S3Uri": f"s3://{BUCKET}/conflict/code"}
    conflicting = [
        {**c, "DataSource": {"S3DataSource": source}} if c is code else c for c in job["InputDataConfig"]
    ]
    cases = [
        (
            {**job, "InputDataConfig": without_code},
            "no channel `code`, but sm_drivers/sm_train.sh runs the entry script from "
            "/opt/ml/input/data/code",
        ),
        (
            {**job, "HyperParameters": {**job["HyperParameters"], "momentum": "0.9"}},
            "HyperParameters.momentum: the entry point does not know this hyperparameter",
        ),
        (
            {**trial, "HyperParameters": {**hyperparameters, "sagemaker_program": "trian.py"}},
            "HyperParameters.sagemaker_program='trian.py' is not in sagemaker_submit_directory",
        ),
        (
            {
                **trial,
                "HyperParameters": {
                    **hyperparameters,
                    "sagemaker_submit_directory": f"s3://{BUCKET}/mutated/sourcedir.tar.gz",
                },
            },
            f"sagemaker_submit_directory requirements.txt line {added_line} 'numpy<2' conflicts with the "
            "image pytorch-amzn2023, which has numpy 2.5.3",
        ),
    ]
    cases.append(
        (
            {**job, "InputDataConfig": conflicting},
            f"channel `code` requirements.txt line {conflict_line} 'numpy<2' conflicts with the image "
            "pytorch-amzn2023, which has numpy 2.5.3",
        )
    )
    for number, (mutated, message) in enumerate(cases):
        with pytest.raises(ReplayError, match=re.escape(message)):
            replay_training(mutated, s3, tmp_path / f"replay{number}")
        assert not list((tmp_path / f"replay{number}").glob("*/job.log"))  # named before the job started


def test_on_this_repositorys_environment_a_requirement_nothing_here_provides_is_named(tmp_path: Path) -> None:
    """Jobs of images without a replay environment run here, where nothing is installed: checked instead."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("omegaconf>=2.3\nnonexistent-package>=1.0\n")
    missing = "x line 2 'nonexistent-package>=1.0': not installed here"
    with pytest.raises(ReplayError, match=re.escape(missing)):
        check_requirements(requirements, "x")
