"""launch/: config → SageMaker requests, dry-run, and the whole flow against moto's server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
import urllib3
from omegaconf import OmegaConf

from dogbreed.training.config import CONF_DIR
from dogbreed.training.metric_lines import metric_definitions
from launch.replay.stacks import free_port
from tests.conftest import HANG_GUARD_S, REAL_DOGS, REPO

pytestmark = pytest.mark.slow
ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
BUCKET = "dogbreed-test"
# The machine's environment without any AWS settings: each test says what AWS it sees.
CLEAN = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SAGEMAKER_", "DOGBREED_"))}


@pytest.fixture(scope="module")
def moto() -> Iterator[dict[str, str]]:
    """moto's AWS emulator on 127.0.0.1, reached through AWS_ENDPOINT_URL with fake credentials."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    # moto's backend is the process's, not the server's: each module starts from what a previous one left
    # (uploads, jobs, endpoints) unless it is emptied first
    reset = urllib3.request("POST", f"{env['AWS_ENDPOINT_URL']}/moto-api/reset")
    assert reset.status == 200, reset.data
    client(env, "s3").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


def session_args(env: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
        "region_name": env["AWS_DEFAULT_REGION"],
    }


def client(env: dict[str, str], service: str):
    return boto3.Session(**session_args(env)).client(service, endpoint_url=env["AWS_ENDPOINT_URL"])


def launch(
    run_dir: Path, *args: str, env: dict[str, str] | None = None, timeout: float = HANG_GUARD_S
) -> subprocess.CompletedProcess:
    """The launcher as a user runs it; `timeout` only guards against a hang (replays train for real)."""
    return subprocess.run(
        [
            sys.executable,
            "launch/sagemaker.py",
            f"hydra.run.dir={run_dir}",
            f"role_arn={ROLE}",
            f"bucket={BUCKET}",
            "region=us-east-1",
            *args,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**CLEAN, **(env or {})},
    )


def request(run_dir: Path, operation: str) -> dict:
    return json.loads((run_dir / "requests" / f"{operation}.json").read_text())


def test_dry_run_debug_training_request(tiny_root: Path, tmp_path: Path) -> None:
    hparams = tmp_path / "best_hparams.yaml"
    hparams.write_text("lr: 0.002\nbatch_size: 64\n")
    run_dir = tmp_path / "run"
    result = launch(
        run_dir,
        "train=debugger",
        "dry_run=true",
        "experiment=demo",
        f"hparams={hparams}",
        "instance=ml.g4dn.xlarge",
        "--",
        f"data.root={tiny_root}",
        "trainer.max_epochs=3",
        "debug.stop_on=[unchanged_tensor,loss_not_decreasing]",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job = request(run_dir, "CreateTrainingJob")
    assert job["TrainingJobName"].startswith("dogbreed-debug-")
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith("pytorch:2.14-cu133-amzn2023-sagemaker")
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()
    assert job["ResourceConfig"] == {
        "InstanceType": "ml.g4dn.xlarge",
        "InstanceCount": 1,
        "VolumeSizeInGB": 30,
    }
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200}
    assert job["HyperParameters"] == {
        "experiment": "demo",
        "lr": "0.002",
        "batch_size": "64",
        "epochs": "3",
        "debug": "on",
        "stop_on": "[unchanged_tensor,loss_not_decreasing]",  # dogbreed's own rules stop the job from inside
    }
    assert job["RoleArn"] == ROLE
    assert job["Environment"] == {"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}  # for smdebug's protos
    hook = job["DebugHookConfig"]
    assert [c["CollectionName"] for c in hook["CollectionConfigurations"]] == [
        "losses",
        "weights",
        "gradients",
        "biases",
    ]
    rules = {r["RuleConfigurationName"]: r["RuleParameters"] for r in job["DebugRuleConfigurations"]}
    assert list(rules) == [
        "VanishingGradient",
        "Overfit",
        "Overtraining",
        "PoorWeightInitialization",
        "LossNotDecreasing",
        "UnchangedTensor",
        "WeightUpdateRatio",
        "ClassImbalance",
        "StalledTrainingRule",
    ]
    # Debugger's StopTraining action on the same rules, for this job, as the SDK serialises it
    stop = f'[{{\\"name\\": \\"stoptraining\\", \\"training_job_prefix\\": \\"{job["TrainingJobName"]}\\"}}]'
    assert {name for name, params in rules.items() if "action_json" in params} == {
        "UnchangedTensor",
        "LossNotDecreasing",
    }
    assert rules["UnchangedTensor"] == {"rule_to_invoke": "UnchangedTensor", "action_json": stop}
    assert job["ProfilerConfig"]["ProfilingIntervalInMilliseconds"] == 500
    assert [r["RuleConfigurationName"] for r in job["ProfilerRuleConfigurations"]] == ["ProfilerReport"]
    assert "cost upper bound: $1.47" in result.stdout  # 2 h × $0.7364
    assert "none sent" in result.stdout


def test_dry_run_spot_and_multi_instance(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = launch(
        run_dir,
        "train=default",
        "dry_run=true",
        "experiment=demo",
        "instance.spot=true",
        "instance.count=2",
        "--",
        f"data.root={tiny_root}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    job = request(run_dir, "CreateTrainingJob")
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert job["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{BUCKET}/dogbreed/checkpoints/")
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert "DebugHookConfig" not in job and "ProfilerConfig" not in job and "Environment" not in job
    # ModelTrainer puts the distribution in the driver script it uploads next to the job
    uploads = [json.loads(p.read_text()) for p in (run_dir / "requests").glob("PutObject*.json")]
    (script,) = [u["Body"] for u in uploads if u["Key"].endswith("sm_drivers/sm_train.sh")]
    assert "distributed_drivers/torchrun_driver.py" in script


def test_dry_run_tuning_request(tiny_root: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = launch(run_dir, "hpo=default", "dry_run=true", "experiment=demo", "--", f"data.root={tiny_root}")
    assert result.returncode == 0, result.stderr[-3000:]
    tuning = request(run_dir, "CreateHyperParameterTuningJob")
    config = tuning["HyperParameterTuningJobConfig"]
    # the request holds the space of conf/launch/hpo/default.yaml, as the API spells it
    space = OmegaConf.load(CONF_DIR / "launch" / "hpo" / "default.yaml").params
    scaling = {"log": "Logarithmic", "linear": "Linear"}
    continuous = [
        {"Name": n, "MinValue": str(p.min), "MaxValue": str(p.max), "ScalingType": scaling[p.scale]}
        for n, p in space.items()
        if p.type == "continuous"
    ]
    categorical = [
        {"Name": n, "Values": [str(v) for v in p["values"]]}
        for n, p in space.items()
        if p.type == "categorical"
    ]
    by_name = lambda ranges: sorted(ranges, key=lambda r: r["Name"])  # noqa: E731
    assert by_name(config["ParameterRanges"]["ContinuousParameterRanges"]) == by_name(continuous)
    assert by_name(config["ParameterRanges"]["CategoricalParameterRanges"]) == by_name(categorical)
    assert not config["ParameterRanges"].get("IntegerParameterRanges")
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "val_acc"}
    assert config["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 20
    assert config["ResourceLimits"]["MaxParallelTrainingJobs"] == 2
    assert config["Strategy"] == "Bayesian" and config["TrainingJobEarlyStoppingType"] == "Auto"
    assert (
        tuning["TrainingJobDefinition"]["AlgorithmSpecification"]["MetricDefinitions"] == metric_definitions()
    )
    assert len(tuning["HyperParameterTuningJobName"]) <= 32
    assert "cost upper bound: $9.20" in result.stdout  # 20 jobs × 2 h × $0.23


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["role_arn=not-an-arn"], "is not an IAM role ARN"),
        (["role_arn=null"], "no role ARN"),
        (["bucket=null"], "no S3 bucket"),
        (["region=null", "dry_run=false"], "no AWS region"),
    ],
)
def test_clear_errors_before_anything_is_created(tmp_path: Path, args: list[str], message: str) -> None:
    result = launch(tmp_path / "run", "train=default", "dry_run=true", *args, env={})
    assert result.returncode == 2
    assert message in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("telemetry", "opted_out"), [(False, True), (True, False)])
def test_sdk_telemetry_is_off_unless_asked_for(tmp_path: Path, telemetry: bool, opted_out: bool) -> None:
    # the SDK's own check, as its telemetry decorator runs it, on the config file we hand it
    code = f"""
import boto3
from pathlib import Path
from launch.aws import sdk_environment
sdk_environment({telemetry}, Path({str(tmp_path)!r}))
from sagemaker.core.common_utils import resolve_value_from_config
from sagemaker.core.config.config_schema import TELEMETRY_OPT_OUT_PATH
from sagemaker.core.helper.session_helper import Session
session = Session(boto3.Session(region_name="us-east-1"))
print("opted out:", resolve_value_from_config(None, TELEMETRY_OPT_OUT_PATH, False, session))
"""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**CLEAN, "TMPDIR": str(temp), "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=HANG_GUARD_S, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"opted out: {opted_out}" in result.stdout
    assert (tmp_path / "sagemaker-sdk.yaml").is_file() and list(temp.iterdir()) == []


def test_no_credentials_is_one_clear_line(tmp_path: Path) -> None:
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    result = launch(tmp_path / "run", "train=default", env=env)
    assert result.returncode == 2 and "no AWS credentials" in result.stdout + result.stderr


def deploy_in_process(
    moto: dict[str, str],
    run_dir: Path,
    job: str,
    monkeypatch,
    capsys,
    option: str = "default",
    *overrides: str,
) -> str:
    """deploy=<option> (default: default), in this process so that the emulator's describe replies can be
    mended.

    moto's DescribeModel answers `VpcConfig: {}` and DescribeEndpointConfig `DataCaptureConfig: {}`, which
    the v3 resource classes fail to parse (those shapes have required members). For exactly those replies a
    before-call handler answers with moto's own response minus the empty members.
    """
    from botocore import xform_name
    from hydra import compose, initialize_config_dir

    from launch import aws
    from launch.cli import cloud

    for key, value in moto.items():
        monkeypatch.setenv(key, value)
    plain = client(moto, "sagemaker")

    def mended(params: dict, model, **_) -> tuple:
        response = getattr(plain, xform_name(model.name))(**json.loads(params["body"]))  # serialised request
        response = {k: v for k, v in response.items() if v != {}}
        return type("Http", (), {"status_code": 200, "headers": {}})(), response

    real_session = aws.session

    def session(cfg, path):
        boto, requests = real_session(cfg, path)
        for operation in ("DescribeModel", "DescribeEndpointConfig", "DescribeEndpoint"):
            boto.events.register(f"before-call.sagemaker.{operation}", mended)
        return boto, requests

    monkeypatch.setattr(aws, "session", session)
    with initialize_config_dir(config_dir=str(CONF_DIR / "launch"), version_base="1.3"):
        cfg = compose(
            "launch",
            [
                f"role_arn={ROLE}",
                f"bucket={BUCKET}",
                "region=us-east-1",
                f"deploy={option}",
                f"deploy.training_job={job}",
                *overrides,
            ],
        )
    cloud(cfg, run_dir)
    endpoint = request(run_dir, "CreateEndpoint")["EndpointName"]
    assert f"delete={endpoint}" in capsys.readouterr().out
    return endpoint


def test_the_whole_flow_against_the_emulator(
    moto: dict[str, str], tiny_root: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    sagemaker = client(moto, "sagemaker")
    first = launch(
        tmp_path / "t1", "train=default", "experiment=demo", "--", f"data.root={tiny_root}", env=moto
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert "0 of" not in first.stdout and "files uploaded" in first.stdout
    job = request(tmp_path / "t1", "CreateTrainingJob")["TrainingJobName"]
    assert sagemaker.describe_training_job(TrainingJobName=job)["TrainingJobName"] == job

    again = launch(
        tmp_path / "t2", "train=debugger", "experiment=demo", "--", f"data.root={tiny_root}", env=moto
    )
    assert again.returncode == 0, again.stderr[-3000:]
    assert "data: 0 of" in again.stdout, "re-running never duplicates an upload"
    debug_job = request(tmp_path / "t2", "CreateTrainingJob")["TrainingJobName"]
    assert sagemaker.describe_training_job(TrainingJobName=debug_job)["TrainingJobName"] == debug_job

    # the dry-run request equals what the emulator received, but for the generated names
    dry = launch(
        tmp_path / "d", "train=debugger", "experiment=demo", "dry_run=true", "--", f"data.root={tiny_root}"
    )
    sent, planned = (
        request(tmp_path / "t2", "CreateTrainingJob"),
        request(tmp_path / "d", "CreateTrainingJob"),
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    # the same but for the generated names and the run folder each request is tagged with (dogbreed:run)
    from launch.tags import run_label

    def same(request: dict, name: str, run: Path) -> str:
        return json.dumps(request, sort_keys=True).replace(name, "NAME").replace(run_label(run), "RUN")

    assert same(sent, debug_job, tmp_path / "t2") == same(planned, planned["TrainingJobName"], tmp_path / "d")

    endpoint = deploy_in_process(moto, tmp_path / "dep", job, monkeypatch, capsys)
    assert client(moto, "sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"
    model = request(tmp_path / "dep", "CreateModel")
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"
    environment = model["PrimaryContainer"]["Environment"]
    assert environment["DOGBREED_SERVE_REPLICAS"] == "1"
    assert environment["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"
    assert environment["RAY_SERVE_CONTROL_LOOP_INTERVAL_S"] == "1"
    assert environment["RAY_enable_metrics_collection"] == "0"
    assert model["PrimaryContainer"]["Image"].endswith("/ray:serve-ml-sagemaker-cpu-v1.4")  # the default
    assert model["PrimaryContainer"]["ModelDataUrl"].endswith("model.tar.gz")
    assert (
        request(tmp_path / "dep", "CreateEndpointConfig")["ProductionVariants"][0]["InstanceType"]
        == "ml.m5.xlarge"
    )

    answer = [[{"breed": "Brittany", "label": "037.Brittany", "index": 36, "probability": 0.9}]]
    urllib3.request(
        "POST",
        f"{moto['AWS_ENDPOINT_URL']}/moto-api/static/sagemaker/endpoint-results",
        json={"results": [{"Body": json.dumps(answer), "ContentType": "application/json"}]},
    )
    # moto decodes every request body as UTF-8 and fails on an image's bytes: its server thread (this
    # process) reads them raw here, as the service does
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    original = SageMakerRuntimeResponse.invoke_endpoint

    def binary_body(self):
        self.body = base64.b64encode(self.raw_body).decode("ascii")
        return original(self)

    monkeypatch.setattr(SageMakerRuntimeResponse, "use_raw_body", True)
    monkeypatch.setattr(SageMakerRuntimeResponse, "invoke_endpoint", binary_body)
    photo = REAL_DOGS / "Brittany_02625.jpg"
    invoked = launch(tmp_path / "inv", f"invoke={endpoint}", f"image={photo}", env=moto)
    assert invoked.returncode == 0, invoked.stderr[-3000:]
    assert "1. Brittany" in invoked.stdout
    sent = request(tmp_path / "inv", "InvokeEndpoint")  # the photo's bytes, top_k where SageMaker passes it
    assert sent["ContentType"] == "image/jpeg" and sent["CustomAttributes"] == "top_k=5"
    assert sent["Body"] == f"<{photo.stat().st_size} bytes>"

    deleted = launch(tmp_path / "del", f"delete={endpoint}", env=moto)
    assert deleted.returncode == 0, deleted.stderr[-3000:]
    # moto's state is the process's, shared with other test modules: look for this endpoint's own names
    assert endpoint not in [e["EndpointName"] for e in sagemaker.list_endpoints()["Endpoints"]]
    assert endpoint not in [m["ModelName"] for m in sagemaker.list_models()["Models"]]


def launch_tuning(moto: dict[str, str], tiny_root: Path, run_dir: Path) -> str:
    """hpo=default sent to the emulator without waiting (moto completes it at once, with no trials): the
    tuning job's name."""
    result = launch(
        run_dir, "hpo=default", "experiment=demo", "wait=false", "--", f"data.root={tiny_root}", env=moto
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return request(run_dir, "CreateHyperParameterTuningJob")["HyperParameterTuningJobName"]


def test_tuning_job_against_the_emulator(moto: dict[str, str], tiny_root: Path, tmp_path: Path) -> None:
    name = launch_tuning(moto, tiny_root, tmp_path / "hpo")
    described = client(moto, "sagemaker").describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name
    )
    assert described["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"] == 20


def test_spot_multi_instance_job_against_the_emulator(
    moto: dict[str, str], tiny_root: Path, tmp_path: Path
) -> None:
    result = launch(
        tmp_path / "spot",
        "train=default",
        "experiment=demo",
        "instance.spot=true",
        "instance.count=2",
        "wait=false",
        "--",
        f"data.root={tiny_root}",
        env=moto,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sent = request(tmp_path / "spot", "CreateTrainingJob")
    job = client(moto, "sagemaker").describe_training_job(TrainingJobName=sent["TrainingJobName"])
    assert job["ResourceConfig"]["InstanceCount"] == 2
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert job["CheckpointConfig"]["S3Uri"] == sent["CheckpointConfig"]["S3Uri"]
    assert job["CheckpointConfig"]["S3Uri"].startswith(f"s3://{BUCKET}/dogbreed/checkpoints/")


def test_training_keys_go_to_the_training_run_wherever_they_stand() -> None:
    from launch.cli import route_argv

    argv = ["hpo=default", "data.root=/x", "instance=local", "experiment=demo", "+model.lr=0.1"]
    assert route_argv([*argv, "--", "trainer.max_epochs=2"]) == [
        "hpo=default",
        "instance=local",
        "experiment=demo",
        'overrides=["trainer.max_epochs=2","data.root=/x","+model.lr=0.1"]',
    ]
    assert route_argv(["train=default", "hydra.run.dir=/tmp/x", "--cfg", "job"]) == [
        "train=default",
        "hydra.run.dir=/tmp/x",
        "--cfg",
        "job",
    ]


def test_a_key_neither_config_knows_is_one_line_naming_both(tmp_path: Path) -> None:
    result = launch(tmp_path / "run", "train=default", "dry_run=true", "dataa.root=/x")
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "unknown key 'dataa'" in line and "the launcher knows" in line and "training runs know" in line
    assert "instance" in line and "trainer" in line and "Traceback" not in result.stderr


def test_dry_run_deploy_needs_a_named_job_and_writes_its_real_model_path(tmp_path: Path) -> None:
    unnamed = launch(tmp_path / "a", "deploy=default", "dry_run=true")
    said = unnamed.stdout + unnamed.stderr
    assert unnamed.returncode == 2
    assert "cannot look up" in said and "deploy.training_job=" in said
    assert "no completed training job" not in said
    job = "dogbreed-train-abc123-2026-11-26-10-00-00-000"
    named = launch(tmp_path / "b", "deploy=default", "dry_run=true", f"deploy.training_job={job}")
    assert named.returncode == 0, named.stderr[-3000:]
    model = request(tmp_path / "b", "CreateModel")
    assert (
        model["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/dogbreed/jobs/{job}/output/model.tar.gz"
    )
    # several replicas with deploy=default's direct ingress: one line, before any request is written
    replicas = "deploy.environment.DOGBREED_SERVE_REPLICAS='2'"
    refused = launch(tmp_path / "r", "deploy=default", "dry_run=true", f"deploy.training_job={job}", replicas)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "deploy.environment: DOGBREED_SERVE_REPLICAS=2 with Ray Serve's direct ingress" in (
        refused.stdout + refused.stderr
    )
    assert not list((tmp_path / "r").glob("requests/*.json"))
    seed = launch(tmp_path / "c", "deploy=torchserve", "dry_run=true", f"deploy.training_job={job}")
    assert seed.returncode == 0, seed.stderr[-3000:]
    container = request(tmp_path / "c", "CreateModel")["PrimaryContainer"]
    assert container["Image"].endswith("/pytorch-inference:2.6-cpu-py312")  # the seed's path, newest image
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        # TorchServe's configuration from the archive (our /ping), and the toolkit's defaults it reads
        "TS_CONFIG_FILE": "/opt/ml/model/code/dogbreed/serving/adapters/toolkit/ts.properties",
        "SAGEMAKER_BIND_TO_PORT": "8080",
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60",
        "SAGEMAKER_MODEL_SERVER_WORKERS": "2",
        # the file's models= line: while no SAGEMAKER_TS_* is set, what TorchServe runs without one
        "SAGEMAKER_TS_MIN_WORKERS": "2",
        "SAGEMAKER_TS_MAX_WORKERS": "2",
        "SAGEMAKER_TS_BATCH_SIZE": "1",
        "SAGEMAKER_TS_MAX_BATCH_DELAY": "100",
        "SAGEMAKER_TS_RESPONSE_TIMEOUT": "60",
    }
    # one SAGEMAKER_TS_* set: the toolkit's defaults for the others (one worker), said in one line
    delay = launch(
        tmp_path / "d",
        "deploy=torchserve",
        "dry_run=true",
        f"deploy.training_job={job}",
        "+deploy.environment.SAGEMAKER_TS_MAX_BATCH_DELAY='50'",
    )
    assert delay.returncode == 0, delay.stderr[-3000:]
    sent = request(tmp_path / "d", "CreateModel")["PrimaryContainer"]["Environment"]
    assert {k: v for k, v in sent.items() if k.startswith("SAGEMAKER_TS_")} == {
        "SAGEMAKER_TS_MIN_WORKERS": "1",
        "SAGEMAKER_TS_MAX_WORKERS": "1",
        "SAGEMAKER_TS_BATCH_SIZE": "1",
        "SAGEMAKER_TS_MAX_BATCH_DELAY": "50",
        "SAGEMAKER_TS_RESPONSE_TIMEOUT": "60",
    }
    assert "the toolkit's defaults fill the other SAGEMAKER_TS_*: 1 worker(s), not" in delay.stdout
    # what TorchServe or our handler cannot honour: one line each, before any request is written
    for setting, says in (
        (
            "+deploy.environment.SAGEMAKER_TS_BATCH_SIZE='4'",
            "deploy.environment.SAGEMAKER_TS_BATCH_SIZE=4: the toolkit hands every request of a",
        ),
        ("+deploy.environment.SAGEMAKER_TS_WORKERS='2'", "SAGEMAKER_TS_WORKERS: the toolkit reads only"),
        ("+deploy.environment.SAGEMAKER_TS_MIN_WORKERS='3'", "MIN_WORKERS=3 is more than SAGEMAKER_TS_MAX"),
        ("~deploy.environment.SAGEMAKER_MODEL_SERVER_WORKERS", "SAGEMAKER_MODEL_SERVER_WORKERS=None: set"),
        (
            "+deploy.environment.SAGEMAKER_TS_MIN_WORKERS=2",
            "=2: must be text (CreateModel's Environment holds",
        ),
    ):
        refused = launch(
            tmp_path / "t", "deploy=torchserve", "dry_run=true", f"deploy.training_job={job}", setting
        )
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert says in refused.stdout + refused.stderr
        assert not list((tmp_path / "t").glob("requests/*.json"))


def test_requests_are_checked_for_patterns_lengths_and_enums() -> None:
    import botocore.session

    from dogbreed.errors import DogBreedError
    from launch.capture import check_request, violations

    sagemaker = botocore.session.get_session().get_service_model("sagemaker")
    create_model = sagemaker.operation_model("CreateModel")
    good = {
        "ModelName": "dogbreed-ep-1",
        "ExecutionRoleArn": ROLE,
        "PrimaryContainer": {"Image": "x", "ModelDataUrl": "s3://b/k/model.tar.gz"},
    }
    assert violations(create_model.input_shape, good) == []
    bad = {**good, "ModelName": "under_score" * 10, "PrimaryContainer": {"ModelDataUrl": "dry-run"}}
    problems = violations(create_model.input_shape, bad)
    assert any("ModelName" in p and "pattern" in p for p in problems)
    assert any("ModelName has length 110" in p for p in problems)
    assert any("PrimaryContainer.ModelDataUrl='dry-run'" in p for p in problems)
    variant = sagemaker.operation_model("CreateEndpointConfig")
    enum = violations(
        variant.input_shape,
        {"EndpointConfigName": "c", "ProductionVariants": [{"VariantName": "v", "InstanceType": "ml.nope"}]},
    )
    assert enum and "ProductionVariants[0].InstanceType='ml.nope' is not one of" in enum[0]
    with pytest.raises(DogBreedError, match="CreateModel request would be rejected"):
        check_request(create_model, bad)


@pytest.mark.parametrize(
    "commands",
    [["hpo=default", "train=debugger"], ["deploy=default", "delete=ep"], ["invoke=ep", "train=default"]],
)
def test_two_commands_on_one_line_is_one_line_and_nothing_sent(tmp_path: Path, commands: list[str]) -> None:
    result = launch(tmp_path / "run", *commands, "image=x.jpg", env=None)  # no AWS settings: sends nothing
    assert result.returncode == 2
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(said) == 1 and "one command per line" in said[0], said
    assert all(c in said[0] for c in commands)
    assert not (tmp_path / "run" / "requests").exists()
