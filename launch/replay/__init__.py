"""`replay=true`: run the requests the launcher sent exactly as SageMaker would, on this machine, no Docker.

- `jobs.replay_training`: a CreateTrainingJob request → an `/opt/ml` tree as the service lays it out (every
  channel downloaded from S3, `hyperparameters.json` with the values as sent, `inputdataconfig.json`,
  `resourceconfig.json`, the checkpoint path), the container's start (the request's ContainerEntrypoint in a
  private mount namespace where `/opt/ml` is that tree, or the framework image's path through the real
  `sagemaker-training` toolkit), then `model.tar.gz` and `output.tar.gz` uploaded where the service puts them,
  the job log kept and the metric definitions' regexes applied to it.
- `tuning.replay_tuning`: a CreateHyperParameterTuningJob request → its static hyperparameters plus sampled
  points of its ranges, passed as the tuner passes them, each replayed as a training job; the objective
  parsed with the definition's own regex; `best_hparams.yaml` and `trials.csv` written.
- `endpoint.replay_endpoint`: a CreateModel request → `ModelDataUrl` downloaded and unpacked as the service
  does, its `SAGEMAKER_PROGRAM` / `SAGEMAKER_SUBMIT_DIRECTORY` contract checked and served on a local port.

A replay that cannot run names the request field responsible (`ReplayError`). What it cannot prove: IAM
permissions, quotas, and the packages the real images have (it checks requirements against this machine).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from dogbreed.errors import DogBreedError


class ReplayError(DogBreedError):
    """The request would not run; the message names the field responsible."""


def s3_client(cfg: DictConfig) -> Any:
    """S3 for replay's own reads and writes (downloads, the job's outputs): not recorded as requests."""
    import boto3

    return boto3.Session(region_name=cfg.region).client("s3")
