"""Waiting for SageMaker jobs with a live view, and what they leave behind.

Ctrl-C while waiting leaves the job running and says how to follow or stop it. A finished tuning job
gives `best_hparams.yaml` (typed, usable as training overrides) and `trials.csv`, like the local search;
a finished Debugger job gives each rule's status and its reports in the run dir.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from dogbreed.hparams import SearchSpace, TrialResult, write_results

DONE = {"Completed", "Failed", "Stopped"}


def poll(
    describe: Callable[[], dict],
    show: Callable[[dict], str],
    status_key: str,
    what: str,
    stop_hint: str,
    seconds: float,
) -> dict:
    """Describe every `seconds` until a final status, printing each new view line."""
    last = None
    try:
        while True:
            reply = describe()
            line = show(reply)
            if line != last:
                print(line, flush=True)
                last = line
            if reply[status_key] in DONE:
                return reply
            time.sleep(seconds)
    except KeyboardInterrupt:
        print(
            f"\nstopped waiting; {what} keeps running.\n  follow it: {stop_hint.replace('stop', 'describe')}"
            f"\n  stop it:   {stop_hint}"
        )
        raise SystemExit(130) from None


def wait_training(client: Any, name: str, seconds: float = 30) -> dict:
    return poll(
        lambda: client.describe_training_job(TrainingJobName=name),
        lambda r: f"{name}: {r['TrainingJobStatus']} ({r.get('SecondaryStatus', '')})",
        "TrainingJobStatus",
        f"training job {name}",
        f"aws sagemaker stop-training-job --training-job-name {name}",
        seconds,
    )


def wait_tuning(client: Any, name: str, metric: str, seconds: float = 30) -> dict:
    def show(r: dict) -> str:
        c = r["TrainingJobStatusCounters"]
        best = r.get("BestTrainingJob", {}).get("FinalHyperParameterTuningJobObjectiveMetric", {})
        best_text = f", best {metric}={best['Value']:.4f}" if "Value" in best else ""
        return (
            f"{name}: {r['HyperParameterTuningJobStatus']} — completed {c.get('Completed', 0)}, running "
            f"{c.get('InProgress', 0)}, failed {c.get('NonRetryableError', 0) + c.get('RetryableError', 0)}, "
            f"stopped {c.get('Stopped', 0)}{best_text}"
        )

    return poll(
        lambda: client.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name),
        show,
        "HyperParameterTuningJobStatus",
        f"tuning job {name}",
        f"aws sagemaker stop-hyper-parameter-tuning-job --hyper-parameter-tuning-job-name {name}",
        seconds,
    )


def tuning_results(
    client: Any, name: str, space: SearchSpace, metric: str, direction: str, out_dir: Path
) -> dict[str, Any]:
    """`trials.csv` and `best_hparams.yaml` from a finished tuning job, written as the local search writes
    them (`dogbreed.hparams.write_results`); returns the best hyperparameters, typed."""
    rows = []
    pages = client.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job")
    for page in pages.paginate(HyperParameterTuningJobName=name):
        rows += page["TrainingJobSummaries"]
    trials = []
    for job in sorted(rows, key=lambda j: j["CreationTime"]):
        end, start = job.get("TrainingEndTime"), job.get("TrainingStartTime")
        value = job.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
        trials.append(
            TrialResult(
                job["TrainingJobName"],
                job["TrainingJobStatus"],
                value,
                space.typed(job["TunedHyperParameters"]),
                seconds=(end - start).total_seconds() if end and start else None,
            )
        )
    best = write_results(trials, space, metric, direction, out_dir, f"tuning job {name}")
    print(f"best training job {best.trial}: {best.params}")
    return best.params


def rule_statuses(reply: dict) -> list[tuple[str, str]]:
    keys = ("DebugRuleEvaluationStatuses", "ProfilerRuleEvaluationStatuses")
    return [
        (r["RuleConfigurationName"], r.get("RuleEvaluationStatus", "?"))
        for k in keys
        for r in reply.get(k, [])
    ]


def download_reports(s3: Any, bucket: str, job_prefix: str, out_dir: Path) -> list[Path]:
    """Debugger/Profiler rule reports under the job's `rule-output/`, and dogbreed's report.html/md
    from its `output.tar.gz` (written there by the job's `debug=on`)."""
    saved = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{job_prefix}/"):
        for obj in page.get("Contents", []):
            key = PurePosixPath(obj["Key"])
            if "rule-output" in key.parts and key.suffix in (".html", ".ipynb", ".json"):
                target = out_dir / "reports" / key.relative_to(job_prefix)
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(bucket, obj["Key"], str(target))
                saved.append(target)
            elif key.name == "output.tar.gz":
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                with tarfile.open(fileobj=io.BytesIO(body)) as tar:
                    for member in tar.getmembers():
                        name = PurePosixPath(member.name).name
                        if member.isfile() and name in ("report.html", "report.md"):
                            target = out_dir / "reports" / name
                            target.parent.mkdir(parents=True, exist_ok=True)
                            target.write_bytes(tar.extractfile(member).read())
                            saved.append(target)
    return saved
