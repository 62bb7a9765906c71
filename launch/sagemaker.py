"""SageMaker jobs from the project's Hydra configs — and their local twin.

    python launch/sagemaker.py hpo=default                      # a tuning job (20 jobs, 2 in parallel)
    python launch/sagemaker.py train=default [hparams=best_hparams.yaml]
    python launch/sagemaker.py train=debugger                   # with Debugger and Profiler
    python launch/sagemaker.py deploy=default                   # endpoint from the latest training job
    python launch/sagemaker.py invoke=<endpoint> image=photo.jpg
    python launch/sagemaker.py delete=<endpoint>                # endpoint, endpoint config and model
    common: instance=<conf/launch/instance name> experiment=<name> dry_run=true wait=false region=…
            role_arn=… bucket=…, and training overrides (data.root=… model.lr=…) anywhere on the line

The launcher's configs are `conf/launch/`. A `key=value` whose key belongs to the training config
(`conf/train.yaml`: data, model, trainer, …) is a training override wherever it stands (`--` still
works); a key neither knows is an error naming both sets. `instance=local` runs the search of
`conf/launch/hpo/<name>.yaml` on this machine with Optuna (see `dogbreed.search`). `dry_run=true` sends
nothing: every request goes to `<run dir>/requests/` and the upper-bound cost is printed.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parent.parent
# Run as a script, Python puts launch/ first on sys.path, where this file would shadow the SageMaker SDK's
# `sagemaker` package: put the repository there instead (it also makes `dogbreed` and `launch` importable).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

from dogbreed.errors import DogBreedError, exit_on_user_error  # noqa: E402
from dogbreed.hparams import SearchSpace  # noqa: E402
from dogbreed.training.config import compose_training, config_keys, training_keys  # noqa: E402

LAUNCH_CONF = REPO / "conf" / "launch"

log = logging.getLogger("launch")


def search_space(cfg: DictConfig) -> SearchSpace:
    """The `hpo=` config's space, validated once; errors name its file and the parameter's key."""
    name = HydraConfig.get().runtime.choices.get("hpo")
    return SearchSpace.from_config(cfg.hpo.params, f"conf/launch/hpo/{name}.yaml")


def local_search(cfg: DictConfig, run_dir: Path) -> None:
    from dogbreed.search.study import run_search

    overrides = [f"+experiment={cfg.experiment}", "data.cache_features=true", *cfg.overrides]
    train_cfg = compose_training([*overrides, f"paths.run_dir={run_dir}"])
    study = run_search(train_cfg, cfg.hpo, search_space(cfg), run_dir)
    best = study.best_trial
    print(f"best trial {best.number}: {cfg.hpo.objective.metric}={best.value:.4f} {best.params}")
    print(f"wrote {run_dir / 'best_hparams.yaml'}, {run_dir / 'trials.csv'}, plots *.png")
    print(
        f"train with them: python -m dogbreed.train +experiment={cfg.experiment} "
        f"+hparams={run_dir / 'best_hparams.yaml'}"
    )


def prepared_data(cfg: DictConfig, run_dir: Path) -> Path:
    """The experiment's dataset folder, downloaded or generated here if missing (`-- data.root=` wins)."""
    from hydra.utils import instantiate

    roots = [o for o in cfg.overrides if o.startswith("data.root=")]
    train_cfg = compose_training([f"+experiment={cfg.experiment}", *roots, f"paths.run_dir={run_dir}"])
    instantiate(train_cfg.data, _convert_="all").prepare_data()
    return Path(train_cfg.data.root)


def data_channel(cfg: DictConfig, boto, run_dir: Path) -> str:
    """The dataset synced to S3 (idempotent)."""
    from launch.aws import sync_to_s3

    root = prepared_data(cfg, run_dir)
    return sync_to_s3(boto, root, cfg.bucket, f"{cfg.prefix}/data/{root.name}")


def local(cfg: DictConfig, run_dir: Path) -> None:
    """The local twin: Optuna for tuning, a subprocess for training, dogbreed.serve for the endpoint."""
    from launch import local as twin

    if cfg.get("hpo") is not None:
        local_search(cfg, run_dir)
    elif cfg.get("train") is not None:
        print(f"model: {twin.train(cfg, prepared_data(cfg, run_dir), run_dir)}")
    elif cfg.get("deploy") is not None:
        twin.deploy(cfg)
    elif cfg.invoke:
        twin.invoke(cfg)
    else:
        raise DogBreedError(
            "instance=local runs hpo=, train=, deploy= and invoke= (a local server has nothing to delete)"
        )


def print_next_step(run_dir: Path) -> None:
    """After a search (real or replayed): the command that trains with its best values."""
    best = run_dir / "best_hparams.yaml"
    print(f"train with them: python launch/sagemaker.py train=default hparams={best}")


def follow(cfg: DictConfig, boto, name: str, run_dir: Path) -> None:
    """Wait with a live view, then fetch what the job leaves: results of a search, rules and reports."""
    from launch import watch

    client = boto.client("sagemaker")
    if cfg.get("hpo") is not None:
        watch.wait_tuning(client, name, cfg.hpo.objective.metric, cfg.poll_seconds)
        objective = cfg.hpo.objective
        watch.tuning_results(client, name, search_space(cfg), objective.metric, objective.direction, run_dir)
        print_next_step(run_dir)
        return
    reply = watch.wait_training(client, name, cfg.poll_seconds)
    for rule, status in watch.rule_statuses(reply):
        print(f"rule {rule:<28} {status}")
    if cfg.train.debugger or cfg.train.profiler:
        for path in watch.download_reports(
            boto.client("s3"), cfg.bucket, f"{cfg.prefix}/jobs/{name}", run_dir
        ):
            print(f"report: {path}")


def upper_bound_cost(cfg: DictConfig) -> float:
    inst = cfg.instance
    jobs = cfg.hpo.max_jobs if cfg.get("hpo") else 1
    return jobs * inst.count * inst.max_runtime_s / 3600 * inst.price_per_hour_usd


def replay(cfg: DictConfig, requests: Any, run_dir: Path) -> None:
    """`replay=true`: run what was just sent, from the requests themselves (see launch/replay)."""
    import boto3

    from launch.replay.endpoint import replay_endpoint
    from launch.replay.jobs import replay_training
    from launch.replay.tuning import replay_tuning

    s3 = boto3.Session(region_name=cfg.region).client("s3")  # replay's own reads and writes: not recorded
    work = run_dir / "replay"
    if cfg.get("hpo") is not None:
        request = requests.of("CreateHyperParameterTuningJob")[-1]
        replay_tuning(request, search_space(cfg), s3, work, run_dir, cfg.replay_trials, cfg.hpo.seed)
        print_next_step(run_dir)
    elif cfg.get("train") is not None:
        replay_training(requests.of("CreateTrainingJob")[-1], s3, work)
        if cfg.train.debugger:
            print(
                "replay: Debugger's rule containers are not replayed; "
                "dogbreed's rules ran in the job (debug=on)"
            )
    elif cfg.get("deploy") is not None:
        replay_endpoint(requests.of("CreateModel")[-1], s3, work, cfg.local_port)


def cloud(cfg: DictConfig, run_dir: Path) -> None:
    from launch.aws import sdk_environment, session

    if cfg.replay and cfg.dry_run:
        raise DogBreedError(
            "replay=true runs the requests that were sent; a dry run sends none: drop dry_run=true"
        )
    if cfg.invoke and cfg.replay:  # the replayed endpoint answers on this machine: no AWS involved
        from launch import local as twin

        twin.invoke(cfg)
        return
    sdk_environment(cfg.telemetry, run_dir)
    boto, requests = session(cfg, run_dir)
    if cfg.get("hpo") is not None or cfg.get("train") is not None:
        if cfg.get("train") is None:  # a tuning job's trials: the plain training job
            with open_dict(cfg):
                cfg.train = {"debugger": False, "profiler": False}
        space = search_space(cfg) if cfg.get("hpo") is not None else None  # checked before any upload
        uri = data_channel(cfg, boto, run_dir)
        with tempfile.TemporaryDirectory(prefix="dogbreed-") as tmp:
            if cfg.get("hpo") is not None:
                from launch.tuning import start_tuning

                start_tuning(cfg, space, boto, uri, Path(tmp))
                name = requests.of("CreateHyperParameterTuningJob")[-1]["HyperParameterTuningJobName"]
                print(f"tuning job {name}")
            else:
                from launch.training import start_training

                start_training(cfg, boto, uri, Path(tmp))
                name = requests.of("CreateTrainingJob")[-1]["TrainingJobName"]
                print(f"training job {name}")
        if cfg.replay:
            replay(cfg, requests, run_dir)
        elif cfg.wait and not cfg.dry_run:
            follow(cfg, boto, name, run_dir)
        print(
            f"cost upper bound: ${upper_bound_cost(cfg):.2f} ({cfg.instance.name} at "
            f"${cfg.instance.price_per_hour_usd}/h × max runtime)"
        )
    elif cfg.get("deploy") is not None:
        from launch.endpoints import deploy

        name = deploy(cfg, boto)
        print(f"endpoint {name}\ndelete it with: python launch/sagemaker.py delete={name}")
        if cfg.replay:
            replay(cfg, requests, run_dir)
    elif cfg.invoke:
        from launch.endpoints import invoke

        invoke(cfg, boto)
    elif cfg.delete:
        from launch.endpoints import delete

        for what in delete(cfg, boto):
            print(f"deleted {what}")
    else:
        raise DogBreedError(
            "say what to run: hpo=default, train=default|debugger, deploy=default, "
            "invoke=<endpoint> image=<photo>, or delete=<endpoint>"
        )
    if cfg.dry_run:
        for path in sorted((run_dir / "requests").glob("*.json")):
            if not path.name.startswith("PutObject"):
                print(f"--- {path.name}\n{path.read_text()}")
        print(f"dry run: {len(requests.requests)} requests written to {run_dir / 'requests'}, none sent")


@hydra.main(version_base="1.3", config_path=str(LAUNCH_CONF), config_name="launch")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with exit_on_user_error(log=log):
        if cfg.instance.name == "local":
            local(cfg, run_dir)
        else:
            cloud(cfg, run_dir)


def route_argv(argv: list[str]) -> list[str]:
    """The launcher's Hydra arguments, with training overrides gathered into `overrides=[…]`.

    A `key=value` goes to the launcher when `conf/launch/launch.yaml` knows its first part, to the training
    run when `conf/train.yaml` does (wherever it stands; everything after `--` too); anything else is an
    error naming both sets of keys.
    """
    cut = argv.index("--") if "--" in argv else len(argv)
    own, training = [], list(argv[cut + 1 :])
    launcher_keys, train_keys = config_keys(LAUNCH_CONF / "launch.yaml"), training_keys()
    for arg in argv[:cut]:
        if arg.startswith("-") or "=" not in arg:  # Hydra's flags (--cfg job, -m …)
            own.append(arg)
            continue
        root = arg.split("=", 1)[0].lstrip("+~").split(".", 1)[0]
        if root in launcher_keys:
            own.append(arg)
        elif root in train_keys:
            training.append(arg)
        else:
            raise DogBreedError(
                f"unknown key {root!r} in {arg!r}: the launcher knows {', '.join(sorted(launcher_keys))}; "
                f"training runs know {', '.join(sorted(train_keys - launcher_keys))}"
            )
    return [*own, f"overrides=[{','.join(json.dumps(o) for o in training)}]"] if training else own


if __name__ == "__main__":
    with exit_on_user_error():
        sys.argv = [sys.argv[0], *route_argv(sys.argv[1:])]
    main()
