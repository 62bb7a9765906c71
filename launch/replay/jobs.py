"""Replay a CreateTrainingJob request on this machine, as the service would run it.

The tree under `<run dir>/replay/<job>/opt_ml` is what the container sees: the job runs in a private mount
namespace (`unshare`) in which that tree *is* `/opt/ml` and the host `algo-1` resolves, as in the service;
the machine's own /opt/ml and /etc/hosts are untouched. It starts as the container would: the request's
ContainerEntrypoint (ModelTrainer's `sm_drivers` scripts), or without one the framework image's start
through the real `sagemaker-training` toolkit (`sagemaker_program`, `sagemaker_submit_directory`).
A job of an image with a replay environment (`stacks/training.py`) runs there, and pip installs its
requirements as the image's does, held to the image's pins; any other runs on this repository's
environment, where requirements are checked against what is installed (pip has no index).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath
from typing import Any

from dogbreed.container import OPT_ML, lay_out_opt_ml
from dogbreed.hparams import HYPERPARAMETERS, RESERVED_PREFIXES
from dogbreed.processes import child
from launch.images import check_pins, pins, profile, profile_of, requirement_lines
from launch.replay import ReplayError
from launch.replay.environments import isolated_environ
from launch.replay.stacks import session, training

HOST = "algo-1"  # the service's name for a job's first host


@dataclass
class JobResult:
    """A replayed training job: its log, the metrics its definitions parse from it, where its model went."""

    name: str
    log: Path
    metrics: dict[str, list[float]] = field(default_factory=dict)
    model_uri: str = ""


def split_uri(uri: str, where: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ReplayError(f"{where}={uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def download(s3: Any, uri: str, target: Path, where: str) -> list[Path]:
    """Every object under an S3 prefix (or the one object a key names) into `target`, as File mode does."""
    bucket, prefix = split_uri(uri, where)
    files = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            relative = obj["Key"][len(prefix) :].lstrip("/") or PurePosixPath(obj["Key"]).name
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(path))
            files.append(path)
    if not files:
        raise ReplayError(f"{where}={uri!r} holds no objects: the job would start with an empty channel")
    return files


def lay_out(request: dict[str, Any], tree: Path, s3: Any) -> None:
    """`tree` as the service lays out /opt/ml for this request: every channel downloaded from S3."""
    default_mode = request["AlgorithmSpecification"].get("TrainingInputMode", "File")
    channels = {}
    for i, channel in enumerate(request.get("InputDataConfig", [])):
        name, where = channel["ChannelName"], f"InputDataConfig[{i}]"
        source = channel.get("DataSource", {}).get("S3DataSource")
        if source is None or source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise ReplayError(f"{where} ({name}): replay reads S3Prefix channels only")
        mode = channel.get("InputMode", default_mode)
        if mode != "File":
            raise ReplayError(f"{where} ({name}): InputMode {mode} is not replayed (File is)")
        download(
            s3, source["S3Uri"], tree / "input" / "data" / name, f"{where}.DataSource.S3DataSource.S3Uri"
        )
        channels[name] = {
            "TrainingInputMode": mode,
            "S3DistributionType": source.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
        }
    lay_out_opt_ml(
        tree,
        request.get("HyperParameters", {}),  # strings exactly as sent
        channels,
        host=HOST,
        instance_type=request["ResourceConfig"]["InstanceType"],
        checkpoints=request.get("CheckpointConfig", {}).get("LocalPath", f"{OPT_ML}/checkpoints"),
    )


def check_requirements(path: Path, where: str, image: str | None = None) -> None:
    """A requirements.txt against what the job runs on: the pins of `image` (its profile: the job runs in
    that image's environment, where pip installs the rest), else what is installed here (replay on this
    repository's environment installs nothing)."""
    text = path.read_text()
    if image is not None:
        check_pins(text, where, image, ReplayError)
        return
    for number, line, requirement in requirement_lines(text, where):
        try:
            version = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            raise ReplayError(f"{where} line {number} {line!r}: not installed here") from None
        if version not in requirement.specifier:
            raise ReplayError(f"{where} line {number} {line!r}: installed here is {version}")


def check_hyperparameters(hyperparameters: dict[str, str], where: str) -> None:
    """The names our entry point accepts (dogbreed.hparams), or SageMaker's own."""
    for name in hyperparameters:
        if not name.startswith(RESERVED_PREFIXES) and name not in HYPERPARAMETERS:
            known = ", ".join(sorted(HYPERPARAMETERS))
            raise ReplayError(
                f"{where}.{name}: the entry point does not know this hyperparameter; known: {known}"
            )


def sm_drivers_plan(request: dict[str, Any], tree: Path, image: str | None) -> None:
    """Check what ModelTrainer's entrypoint will need: its script, the code channel, the entry script, and
    requirements that `image`'s environment (None: this one) can satisfy."""
    spec = request["AlgorithmSpecification"]
    command = " ".join([*spec["ContainerEntrypoint"], *spec.get("ContainerArguments", [])])
    for script in sorted(set(re.findall(r"/opt/ml/input/data/[\w./-]+", command))):
        local = tree / PurePosixPath(script).relative_to(OPT_ML)
        if not local.exists():
            channel = PurePosixPath(script).parts[5]
            present = (tree / "input" / "data" / channel).is_dir()
            raise ReplayError(
                f"AlgorithmSpecification.ContainerArguments runs {script}, but "
                + (
                    f"channel `{channel}` has no {local.name}"
                    if present
                    else f"there is no channel `{channel}`"
                )
            )
    drivers = tree / "input" / "data" / "sm_drivers"
    source = (
        json.loads((drivers / "sourcecode.json").read_text())
        if (drivers / "sourcecode.json").is_file()
        else {}
    )
    code = tree / "input" / "data" / "code"
    if "cd /opt/ml/input/data/code" in (drivers / "sm_train.sh").read_text() and not code.is_dir():
        raise ReplayError(
            "no channel `code`, but sm_drivers/sm_train.sh runs the entry script from /opt/ml/input/data/code"
        )
    entry = source.get("entry_script")
    if entry and not (code / entry).is_file():
        have = ", ".join(sorted(p.name for p in code.iterdir())) if code.is_dir() else "nothing"
        raise ReplayError(
            f"sm_drivers/sourcecode.json entry_script {entry!r} is not in channel `code` (it has {have})"
        )
    if source.get("requirements") and (code / source["requirements"]).is_file():
        check_requirements(code / source["requirements"], f"channel `code` {source['requirements']}", image)


def toolkit_plan(request: dict[str, Any], tree: Path, s3: Any, image: str | None) -> None:
    """Check the framework image's path: sagemaker_program inside sagemaker_submit_directory, and
    requirements that `image`'s environment (None: this one) can satisfy."""
    hp = {k: json.loads(v) if v.startswith('"') else v for k, v in request.get("HyperParameters", {}).items()}
    program, submit = hp.get("sagemaker_program"), hp.get("sagemaker_submit_directory")
    if not program or not submit:
        raise ReplayError(
            "no AlgorithmSpecification.ContainerEntrypoint and no HyperParameters.sagemaker_program / "
            "sagemaker_submit_directory: the framework image would not know what to run"
        )
    if submit.startswith("s3://"):
        archive = tree / "replay-submit" / "sourcedir.tar.gz"
        download(s3, submit, archive.parent, "HyperParameters.sagemaker_submit_directory")
        with tarfile.open(next(archive.parent.iterdir())) as tar:
            names = {PurePosixPath(n).as_posix().removeprefix("./") for n in tar.getnames()}
            if program not in names:
                listing = ", ".join(sorted(n for n in names if "/" not in n))
                raise ReplayError(
                    f"HyperParameters.sagemaker_program={program!r} is not in sagemaker_submit_directory "
                    f"{submit} (it has {listing})"
                )
            if "requirements.txt" in names:
                tar.extract("requirements.txt", archive.parent, filter="data")
                check_requirements(
                    archive.parent / "requirements.txt", "sagemaker_submit_directory requirements.txt", image
                )
    else:
        local = (
            tree / PurePosixPath(submit).relative_to(OPT_ML) if submit.startswith(OPT_ML) else Path(submit)
        )
        if not local.is_dir():
            channel = PurePosixPath(submit).parts[5] if submit.startswith(f"{OPT_ML}/input/data/") else "code"
            raise ReplayError(
                f"no channel `{channel}` but `sagemaker_submit_directory` points into it ({submit})"
            )
        if not (local / program).is_file():
            raise ReplayError(f"HyperParameters.sagemaker_program={program!r} is not in {submit}")


NAMESPACE = """set -e
keep=$(mktemp -d)
if [ -d /opt ]; then mount --bind /opt "$keep"; else mkdir -p /opt; fi
mount -t tmpfs replay /opt
for entry in "$keep"/*; do
  [ -e "$entry" ] || continue
  mkdir -p "/opt/$(basename "$entry")"
  mount --bind "$entry" "/opt/$(basename "$entry")"
done
mkdir -p /opt/ml
mount --bind "$TREE" /opt/ml
mount --bind "$HOSTS" /etc/hosts
cd /opt/ml
exec "$@"
"""


def namespace_command(start: list[str], pid: bool = False) -> list[str]:
    """`start` after NAMESPACE's mounts, in a private mount namespace (a user namespace too when not root,
    so no privilege is needed); `pid` adds a PID namespace with its own /proc, for a container whose
    processes must see only each other. One builder for the training jobs and both serving stacks."""
    unshare = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare[1:1] = ["--user", "--map-root-user"]
    if pid:
        unshare += ["--pid", "--fork", "--mount-proc"]
    return [*unshare, "/bin/bash", "-c", NAMESPACE, "replay", *start]


def container_command(request: dict[str, Any], python: Path) -> list[str]:
    """The container's start — its entrypoint, or the training toolkit on `python` — inside the private
    namespace, as the leader of a session that is stopped as a whole (`stacks/session.py`: a signal to the
    replay leaves none of the job's processes behind)."""
    spec = request["AlgorithmSpecification"]
    start = [*spec.get("ContainerEntrypoint", []), *spec.get("ContainerArguments", [])]
    if not spec.get("ContainerEntrypoint"):
        start = [str(python), "-c", "from sagemaker_training.cli.train import main; main()"]
    return [sys.executable, session.__file__, *namespace_command(start)]


def job_environment(
    request: dict[str, Any], tree: Path, path: list[Path], image: str | None, region: str
) -> dict[str, str]:
    """What the container's processes see: `path` first on PATH, the job's name and `region` as the
    service sets them (the toolkit downloads a trial's source with AWS_REGION), and the request's
    Environment. In the
    environment of `image` pip installs as the image's does, held to the image's pins (a requirement that
    would replace one fails, naming it), and the image's own variables are set; on this repository's
    environment (None) pip has no index and no configuration (requirements are checked, not installed).
    For the namespace script: the tree to mount as /opt/ml and a hosts file in which algo-1 resolves."""
    own = ("SM_", "PIP_", "SAGEMAKER_BASE_DIR")
    if image is None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
        image_env = {"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    else:  # nothing of this repository's environment (PYTHONPATH, VIRTUAL_ENV) reaches the image's
        env = isolated_environ(*own)
        constraints = tree.parent / "image-pins.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in pins(image).items()))
        image_env = {
            "PIP_CONSTRAINT": str(constraints),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            **profile(image).get("environment", {}),  # the image's own ENV (its toolkit's module)
        }
    hosts = tree.parent / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + f"\n127.0.0.1 {HOST}\n")
    env.update(
        PATH=os.pathsep.join([*map(str, path), env.get("PATH", "")]),
        TREE=str(tree),
        HOSTS=str(hosts),
        TRAINING_JOB_NAME=request["TrainingJobName"],
        AWS_REGION=region,
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
        **image_env,
        **request.get("Environment", {}),
    )
    return env


def run_container(command: list[str], env: dict[str, str], log: Path, cwd: Path) -> int:
    """Run the job, its output to the console (prefixed) and to `log`; returns the exit code."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        log.open("w") as out,
        child(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process,
    ):
        for line in process.stdout:
            out.write(line)
            print(f"  [job] {line}", end="", flush=True)
        return process.wait()


def pack(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        for item in sorted(folder.iterdir()):
            tar.add(item, arcname=item.name)
    return archive


def replay_training(request: dict[str, Any], s3: Any, work: Path) -> JobResult:
    """Run the job this CreateTrainingJob request describes; raise ReplayError naming what stops it."""
    name = request["TrainingJobName"]
    tree = work / name / "opt_ml"
    print(f"replay: training job {name} in {tree}", flush=True)
    lay_out(request, tree, s3)
    check_hyperparameters(request.get("HyperParameters", {}), "HyperParameters")
    spec = request["AlgorithmSpecification"]
    image = profile_of(spec["TrainingImage"], request["ResourceConfig"]["InstanceType"], "training")
    why = training.runs_here(image, spec["TrainingImage"])
    stack = None if why else image
    if spec.get("ContainerEntrypoint"):
        sm_drivers_plan(request, tree, stack)
    else:
        toolkit_plan(request, tree, s3, stack)
    if stack is None:
        python, path = Path(sys.executable), [Path(sys.executable).parent]
        print(f"replay: {name} runs on this repository's environment ({python}): {why}", flush=True)
    else:
        python, path = training.job_python(work / name / "job-env")
        print(f"replay: {name} runs in the {stack} image's environment ({python})", flush=True)
    log = work / name / "job.log"
    command = container_command(request, python)
    code = run_container(command, job_environment(request, tree, path, stack, s3.meta.region_name), log, tree)
    if code != 0:
        failure = tree / "output" / "failure"
        said = failure.read_text().strip() if failure.is_file() else ""
        errors = [line for line in log.read_text().splitlines() if "error" in line.lower()]
        cause = said or (errors[-1] if errors else "see the log")
        if "unshare" in log.read_text() and "Operation not permitted" in log.read_text():
            cause = (
                "no private mount namespace here (unshare: Operation not permitted): run as root, or allow "
                "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or, on Ubuntu, "
                "kernel.apparmor_restrict_unprivileged_userns=0)"
            )
        raise ReplayError(f"training job {name} failed (exit {code}): {cause}; log: {log}")
    output = request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
    bucket, prefix = split_uri(f"{output}/{name}/output", "OutputDataConfig.S3OutputPath")
    for folder, archive in ((tree / "model", "model.tar.gz"), (tree / "output" / "data", "output.tar.gz")):
        packed = pack(folder, work / name / archive)
        s3.upload_file(str(packed), bucket, f"{prefix}/{archive}")
    metrics = apply_metric_definitions(
        request["AlgorithmSpecification"].get("MetricDefinitions", []), log.read_text()
    )
    shown = ", ".join(f"{k} {v[-1]:.4f} (last of {len(v)})" for k, v in metrics.items() if v) or "none found"
    print(f"replay: {name} completed; metrics (the request's MetricDefinitions on the log): {shown}")
    return JobResult(name, log, metrics, f"s3://{bucket}/{prefix}/model.tar.gz")


def apply_metric_definitions(definitions: list[dict[str, str]], text: str) -> dict[str, list[float]]:
    """Every value each definition's regex captures in the log, in order (as SageMaker's metrics agent)."""
    out = {}
    for definition in definitions:
        values = []
        for match in re.findall(definition["Regex"], text):
            value = match[0] if isinstance(match, tuple) else match
            try:
                values.append(float(value))
            except ValueError:
                continue
        out[definition["Name"]] = values
    return out
