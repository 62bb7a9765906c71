"""SageMaker jobs from the project's Hydra configs — and their local twin.

    python launch/sagemaker.py hpo=default                      # a tuning job (20 jobs, 2 in parallel)
    python launch/sagemaker.py train=default [hparams=best_hparams.yaml]
    python launch/sagemaker.py train=debug                      # with Debugger and Profiler
    python launch/sagemaker.py deploy=default                   # endpoint from the latest training job
    python launch/sagemaker.py invoke=<endpoint> image=photo.jpg
    python launch/sagemaker.py delete=<endpoint>                # endpoint, endpoint config and model
    common: instance=<conf/instance name> experiment=<name> dry_run=true wait=false region=… role_arn=…
            bucket=…  -- <training overrides>

`instance=local` runs the search of `conf/hpo/<name>.yaml` on this machine with Optuna (see
`dogbreed.search`). `dry_run=true` sends nothing: every request goes to `<run dir>/requests/` and the
upper-bound cost is printed.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

import hydra
from hydra import compose
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parent.parent
# Run as a script, Python puts launch/ first on sys.path, where this file would shadow the SageMaker SDK's
# `sagemaker` package: put the repository there instead (it also makes `dogbreed` and `launch` importable).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)

from dogbreed.errors import DogBreedError  # noqa: E402

log = logging.getLogger("launch")


def local_search(cfg: DictConfig, run_dir: Path) -> None:
    from dogbreed.search import run_search

    overrides = [f"+experiment={cfg.train_experiment}", "data.cache_features=true", *cfg.train_overrides]
    train_cfg = compose(config_name="train", overrides=[*overrides, f"paths.run_dir={run_dir}"])
    study = run_search(train_cfg, cfg.hpo, run_dir)
    best = study.best_trial
    print(f"best trial {best.number}: {cfg.hpo.objective.metric}={best.value:.4f} {best.params}")
    print(f"wrote {run_dir / 'best_hparams.yaml'}, {run_dir / 'trials.csv'}, plots *.png")
    print(
        f"train with them: python -m dogbreed.train +experiment={cfg.train_experiment} "
        f"+hparams={run_dir / 'best_hparams.yaml'}"
    )


def prepared_data(cfg: DictConfig, run_dir: Path) -> Path:
    """The experiment's dataset folder, downloaded or generated here if missing (`-- data.root=` wins)."""
    from hydra.utils import instantiate

    roots = [o for o in cfg.train_overrides if o.startswith("data.root=")]
    overrides = [f"+experiment={cfg.train_experiment}", *roots, f"paths.run_dir={run_dir}"]
    train_cfg = compose(config_name="train", overrides=overrides)
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


def follow(cfg: DictConfig, boto, name: str, run_dir: Path) -> None:
    """Wait with a live view, then fetch what the job leaves: results of a search, rules and reports."""
    from launch import watch

    client = boto.client("sagemaker")
    if cfg.get("hpo") is not None:
        watch.wait_tuning(client, name, cfg.hpo.objective.metric, cfg.poll_seconds)
        watch.tuning_results(client, name, cfg.hpo.params, run_dir)
        best = run_dir / "best_hparams.yaml"
        print(f"train with them: python launch/sagemaker.py train=default hparams={best}")
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


def cloud(cfg: DictConfig, run_dir: Path) -> None:
    from launch.aws import sdk_environment, session

    sdk_environment(cfg.telemetry)
    boto, requests = session(cfg, run_dir)
    if cfg.get("hpo") is not None or cfg.get("train") is not None:
        if cfg.get("train") is None:  # a tuning job's trials: the plain training job
            with open_dict(cfg):
                cfg.train = {"debugger": False, "profiler": False}
        uri = data_channel(cfg, boto, run_dir)
        with tempfile.TemporaryDirectory(prefix="dogbreed-") as tmp:
            if cfg.get("hpo") is not None:
                from launch.tuning import start_tuning

                start_tuning(cfg, boto, uri, Path(tmp))
                name = requests.of("CreateHyperParameterTuningJob")[-1]["HyperParameterTuningJobName"]
                print(f"tuning job {name}")
            else:
                from launch.training import start_training

                start_training(cfg, boto, uri, Path(tmp))
                name = requests.of("CreateTrainingJob")[-1]["TrainingJobName"]
                print(f"training job {name}")
        if cfg.wait and not cfg.dry_run:
            follow(cfg, boto, name, run_dir)
        print(
            f"cost upper bound: ${upper_bound_cost(cfg):.2f} ({cfg.instance.name} at "
            f"${cfg.instance.price_per_hour_usd}/h × max runtime)"
        )
    elif cfg.get("deploy") is not None:
        from launch.endpoints import deploy

        name = deploy(cfg, boto)
        print(f"endpoint {name}\ndelete it with: python launch/sagemaker.py delete={name}")
    elif cfg.invoke:
        from launch.endpoints import invoke

        invoke(cfg, boto)
    elif cfg.delete:
        from launch.endpoints import delete

        for what in delete(cfg, boto):
            print(f"deleted {what}")
    else:
        raise DogBreedError(
            "say what to run: hpo=default, train=default|debug, deploy=default, "
            "invoke=<endpoint> image=<photo>, or delete=<endpoint>"
        )
    if cfg.dry_run:
        for path in sorted((run_dir / "requests").glob("*.json")):
            if not path.name.startswith("PutObject"):
                print(f"--- {path.name}\n{path.read_text()}")
        print(f"dry run: {len(requests.requests)} requests written to {run_dir / 'requests'}, none sent")


@hydra.main(version_base="1.3", config_path=str(REPO / "conf"), config_name="launch")
def main(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if cfg.instance.name == "local":
            local(cfg, run_dir)
        else:
            cloud(cfg, run_dir)
    except DogBreedError as exc:
        log.error("%s", exc)
        sys.exit(2)


def split_argv(argv: list[str]) -> list[str]:
    """Hydra arguments for the launcher.

    `experiment=NAME` becomes `train_experiment=NAME` (`experiment` is also a config group of the training
    app, so Hydra would read it as one), and the training overrides after `--` become `train_overrides`.
    """
    cut = argv.index("--") if "--" in argv else len(argv)
    own = [f"train_{a}" if a.startswith("experiment=") else a for a in argv[:cut]]
    extra = argv[cut + 1 :]
    return [*own, f"train_overrides=[{','.join(json.dumps(o) for o in extra)}]"] if extra else own


if __name__ == "__main__":
    sys.argv = [sys.argv[0], *split_argv(sys.argv[1:])]
    main()
