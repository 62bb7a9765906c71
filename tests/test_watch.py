"""Waiting for jobs and collecting their results.

moto lacks ListTrainingJobsForHyperParameterTuningJob, so these use botocore's Stubber with responses
shaped (and validated) by the SageMaker service model.
"""

from __future__ import annotations

import csv
import io
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from omegaconf import OmegaConf

from dogbreed.hparams import SearchSpace
from dogbreed.training.config import CONF_DIR
from launch import watch
from tests.conftest import TRIALS_COLUMNS

SPACE = SearchSpace.from_config(OmegaConf.load(CONF_DIR / "launch" / "hpo" / "default.yaml").params)
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def sagemaker() -> tuple[object, Stubber]:
    client = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1").client(
        "sagemaker"
    )
    return client, Stubber(client)


def tuning_reply(status: str, completed: int, running: int, best: dict | None = None) -> dict:
    reply = {
        "HyperParameterTuningJobName": "hpo",
        "HyperParameterTuningJobArn": "arn:aws:sagemaker:us-east-1:1:hyper-parameter-tuning-job/hpo",
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian",
            "ResourceLimits": {"MaxParallelTrainingJobs": 2},
        },
        "HyperParameterTuningJobStatus": status,
        "CreationTime": NOW,
        "TrainingJobStatusCounters": {"Completed": completed, "InProgress": running, "Stopped": 0},
        "ObjectiveStatusCounters": {"Succeeded": completed},
    }
    if best:
        reply["BestTrainingJob"] = best
    return reply


def summary(name: str, lr: str, batch: str, value: float, minutes: int) -> dict:
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "CreationTime": NOW + timedelta(minutes=minutes),
        "TrainingStartTime": NOW + timedelta(minutes=minutes),
        "TrainingEndTime": NOW + timedelta(minutes=minutes + 5),
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"lr": lr, "eps": "1e-08", "weight_decay": "0.01", "batch_size": batch},
        "FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "val_acc", "Value": value},
    }


def test_tuning_live_view_then_best_hparams_and_trials(tmp_path: Path, capsys) -> None:
    client, stub = sagemaker()
    best = summary("hpo-002", "0.0031", "64", 0.81, 10)
    stub.add_response("describe_hyper_parameter_tuning_job", tuning_reply("InProgress", 1, 2))
    stub.add_response("describe_hyper_parameter_tuning_job", tuning_reply("Completed", 2, 0, best))
    stub.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [summary("hpo-001", "0.0002", "32", 0.55, 0), best]},
    )
    with stub:
        watch.wait_tuning(client, "hpo", "val_acc", seconds=0)
        values = watch.tuning_results(client, "hpo", SPACE, "val_acc", "Maximize", tmp_path)
    out = capsys.readouterr().out
    assert "hpo: InProgress — completed 1, running 2, failed 0, stopped 0" in out
    assert "hpo: Completed — completed 2, running 0, failed 0, stopped 0, best val_acc=0.8100" in out
    assert values == {"lr": 0.0031, "eps": 1e-08, "weight_decay": 0.01, "batch_size": 64}
    written = OmegaConf.load(tmp_path / "best_hparams.yaml")
    assert written.batch_size == 64 and isinstance(written.batch_size, int) and written.lr == 0.0031
    rows = list(csv.DictReader((tmp_path / "trials.csv").open()))
    assert [(r["trial"], r["val_acc"], r["lr"], r["seconds"]) for r in rows] == [
        ("hpo-001", "0.55", "0.0002", "300.00"),
        ("hpo-002", "0.81", "0.0031", "300.00"),
    ]
    assert list(rows[0]) == TRIALS_COLUMNS  # the same columns as the local search writes


def test_ctrl_c_leaves_the_job_running_and_says_how_to_follow_it(capsys, monkeypatch) -> None:
    client, stub = sagemaker()
    reply = {
        "TrainingJobName": "job",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/job",
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k"},
        "TrainingJobStatus": "InProgress",
        "SecondaryStatus": "Training",
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"VolumeSizeInGB": 30},
        "StoppingCondition": {},
        "CreationTime": NOW,
    }
    stub.add_response("describe_training_job", reply)

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(watch.time, "sleep", interrupted)
    with stub, pytest.raises(SystemExit) as exit_info:
        watch.wait_training(client, "job", seconds=1)
    assert exit_info.value.code == 130
    out = capsys.readouterr().out
    assert "training job job keeps running" in out
    assert "aws sagemaker stop-training-job --training-job-name job" in out
    stub.assert_no_pending_responses()


def test_rule_statuses_and_reports(tmp_path: Path) -> None:
    reply = {
        "DebugRuleEvaluationStatuses": [
            {"RuleConfigurationName": "Overfit", "RuleEvaluationStatus": "NoIssuesFound"}
        ],
        "ProfilerRuleEvaluationStatuses": [
            {"RuleConfigurationName": "ProfilerReport", "RuleEvaluationStatus": "IssuesFound"}
        ],
    }
    assert watch.rule_statuses(reply) == [("Overfit", "NoIssuesFound"), ("ProfilerReport", "IssuesFound")]

    s3 = boto3.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1").client("s3")
    stub = Stubber(s3)
    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w:gz") as tar:
        data = b"<html>report</html>"
        info = tarfile.TarInfo("report.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    stub.add_response(
        "list_objects_v2",
        {"Contents": [{"Key": "p/jobs/j/output/output.tar.gz"}]},
        {"Bucket": "b", "Prefix": "p/jobs/j/"},
    )
    from botocore.response import StreamingBody

    body = StreamingBody(io.BytesIO(tar_bytes.getvalue()), len(tar_bytes.getvalue()))
    stub.add_response("get_object", {"Body": body}, {"Bucket": "b", "Key": "p/jobs/j/output/output.tar.gz"})
    with stub:
        saved = watch.download_reports(s3, "b", "p/jobs/j", tmp_path)
    assert saved == [tmp_path / "reports" / "report.html"]
    assert saved[0].read_bytes() == b"<html>report</html>"
