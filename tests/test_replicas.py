"""How the Ray Serve app's replicas and TorchServe's workers share the cores (`dogbreed.serving.replicas`)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from dogbreed.container import CONF_DIR
from dogbreed.serving.replicas import DEFAULT_REPLICAS, direct_ingress, serve_settings, worker_threads


def test_by_default_one_replica_runs_on_every_core() -> None:
    two = serve_settings({}, cores=2)
    assert DEFAULT_REPLICAS == 1 and (two["replicas"], two["threads"], two["num_cpus"]) == (1, 2, 2.0)
    assert (two["max_batch_size"], two["batch_wait_timeout_s"], two["spinning"]) == (16, 0.0, True)
    assert serve_settings({}, cores=8)["threads"] == 8
    one = serve_settings({}, cores=1)
    assert (one["replicas"], one["threads"], one["num_cpus"]) == (1, 1, 1.0)


def test_every_replica_fits_on_the_machines_cpus_whatever_its_threads() -> None:
    for cores, replicas in [(2, 3), (4, 3), (2, 2), (3, 7)]:
        config = serve_settings({"DOGBREED_SERVE_REPLICAS": str(replicas)}, cores=cores)
        assert config["replicas"] * config["num_cpus"] <= cores
        assert config["threads"] == max(1, cores // replicas)
    asked = serve_settings({"DOGBREED_SERVE_REPLICAS": "2", "DOGBREED_SERVE_THREADS": "2"}, cores=2)
    assert (asked["threads"], asked["num_cpus"]) == (2, 1.0)  # oversubscribed as asked, but scheduled


def test_the_environment_sets_batching_and_nonsense_is_refused() -> None:
    config = serve_settings({"DOGBREED_SERVE_MAX_BATCH_SIZE": "4", "DOGBREED_SERVE_MAX_WAIT_MS": "2.5"}, 2)
    assert (config["max_batch_size"], config["batch_wait_timeout_s"]) == (4, 0.0025)
    assert serve_settings({"DOGBREED_SERVE_SPINNING": "0"}, 2)["spinning"] is False
    with pytest.raises(ValueError, match=r"DOGBREED_SERVE_SPINNING must be 1 .* got 'true'"):
        serve_settings({"DOGBREED_SERVE_SPINNING": "true"}, cores=2)
    with pytest.raises(ValueError, match="must be ≥ 1"):
        serve_settings({"DOGBREED_SERVE_REPLICAS": "0"}, cores=2)


def test_direct_ingress_takes_one_replica_and_more_is_one_line_saying_what_to_set() -> None:
    assert not direct_ingress({}) and not direct_ingress({"RAY_SERVE_ENABLE_DIRECT_INGRESS": "true"})
    optimized = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    assert direct_ingress(optimized) and direct_ingress({"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"})
    assert not direct_ingress({**optimized, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"})
    assert serve_settings({**optimized, "DOGBREED_SERVE_REPLICAS": "1"}, cores=2)["replicas"] == 1
    with pytest.raises(ValueError, match="DOGBREED_SERVE_REPLICAS=2 with Ray Serve's direct ingress"):
        serve_settings({**optimized, "DOGBREED_SERVE_REPLICAS": "2"}, cores=2)
    behind_proxy = {**optimized, "RAY_SERVE_ENABLE_DIRECT_INGRESS": "0", "DOGBREED_SERVE_REPLICAS": "2"}
    assert serve_settings(behind_proxy, cores=2)["replicas"] == 2


def test_deploy_defaults_are_the_apps_own() -> None:
    """conf/launch/deploy/default.yaml states the app's defaults (what a model without them gets)."""
    environment = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "launch/deploy/default.yaml").environment)
    assert serve_settings(environment, cores=2) == serve_settings({}, cores=2)


def test_torchserve_workers_share_the_cores_instead_of_each_taking_all() -> None:
    assert worker_threads({}, cores=4) == 1  # TorchServe's default: one worker per core
    assert worker_threads({"SAGEMAKER_MODEL_SERVER_WORKERS": "1"}, cores=4) == 4
    assert worker_threads({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"}, cores=2) == 1
    # a SAGEMAKER_TS_* setting left TorchServe one worker (the toolkit's default): it gets every core
    one = {"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "SAGEMAKER_TS_MIN_WORKERS": "1"}
    assert worker_threads(one, cores=2) == 2
    assert (
        worker_threads({"SAGEMAKER_MODEL_SERVER_WORKERS": "2", "DOGBREED_SERVE_THREADS": "2"}, cores=2) == 2
    )
    with pytest.raises(ValueError, match="must be ≥ 1"):
        worker_threads({"DOGBREED_SERVE_THREADS": "0"}, cores=2)
