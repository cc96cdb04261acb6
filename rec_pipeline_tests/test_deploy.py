"""Deployment settings: the executor switch, the Celery workers' config file, and the Kubernetes pod config checked
against dagster-k8s's own schema and rendered into the Job it would create (no cluster needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster_celery.cli import get_validated_config
from dagster_k8s import DagsterK8sJobConfig, construct_dagster_k8s_job, k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, get_user_defined_k8s_config
from kubernetes.client import ApiClient

from rec_pipeline.definitions import build_definitions
from rec_pipeline.deploy import (
    CelerySettings,
    DeploySettings,
    K8sSettings,
    build_executor,
    gpu_steps,
    k8s_config_tags,
    k8s_executor_config,
    k8s_pod_config,
)
from rec_pipeline.models.registry import KERAS_MODELS

K8S = K8sSettings(
    data_claim="recs-data", data_root="/mnt/recs", gpu_node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"}
)


def test_the_default_deployment_keeps_dagsters_own_executor() -> None:
    settings = DeploySettings.from_env({})
    assert settings.executor == "multiprocess" and build_executor(settings) is None


def test_celery_settings_come_from_the_environment_and_reach_every_job(tmp_path: Path) -> None:
    settings = DeploySettings.from_env(
        {
            "REC_PIPELINE_EXECUTOR": "Celery",
            "REC_PIPELINE_CELERY_BROKER": "pyamqp://rec@mq.internal//",
            "REC_PIPELINE_CELERY_BACKEND": "redis://cache.internal:6379/3",
            "REC_PIPELINE_CELERY_QUEUE": "recs",
        }
    )
    assert settings == DeploySettings(
        "celery", CelerySettings("pyamqp://rec@mq.internal//", "redis://cache.internal:6379/3", "recs")
    )
    defs = build_definitions(str(tmp_path), settings)
    jobs = [
        defs.resolve_job_def(name) for name in ("recommender_pipeline", "ingest_and_features", "retrain_and_evaluate")
    ]
    assert {job.executor_def.name for job in jobs} == {"celery"}


def test_an_unknown_executor_is_an_error_that_names_the_variable() -> None:
    with pytest.raises(ValueError, match="REC_PIPELINE_EXECUTOR='dask'"):
        DeploySettings.from_env({"REC_PIPELINE_EXECUTOR": "dask"})


def test_the_worker_config_file_passes_dagster_celerys_own_validation(tmp_path: Path) -> None:
    celery = CelerySettings(broker="pyamqp://rec@mq.internal//", backend="redis://cache.internal:6379/3", queue="recs")
    path = tmp_path / "celery_worker.yaml"
    path.write_text(celery.worker_config_yaml())
    config = get_validated_config(str(path))  # what `dagster-celery worker start -y` does with the file
    assert config["broker"] == celery.broker and config["backend"] == celery.backend
    assert config["config_source"] == celery.executor_config()["config_source"]
    assert config["config_source"]["task_default_queue"] == "recs" and config["config_source"]["task_acks_late"] is True


def test_gpu_steps_are_the_keras_steps_of_the_gpu_pool(tmp_path: Path) -> None:
    # Every step that builds, loads or trains Keras models: the CNN, the Keras models, their evaluation (which
    # also cross-validates) and the recommendations scored with the selected model.
    assert gpu_steps(build_definitions(str(tmp_path))) == sorted(
        {"image_embeddings", "model_metrics", "recommendations"} | {f"model_{name}" for name in KERAS_MODELS}
    )


def _rendered_pod(user_config: UserDefinedDagsterK8sConfig) -> dict[str, Any]:
    """The pod spec dagster-k8s would submit for a step with this config, as Kubernetes' API sees it (camelCase)."""
    job_config = DagsterK8sJobConfig(job_image="rec-pipeline:test", dagster_home="/opt/dagster/dagster_home")
    job = construct_dagster_k8s_job(
        job_config,
        args=["dagster", "api", "execute_step"],
        job_name="dagster-step-test",
        user_defined_k8s_config=user_config,
    )
    return ApiClient().sanitize_for_serialization(job)["spec"]["template"]["spec"]


def _step_config(executor_config: dict[str, Any], op: str) -> UserDefinedDagsterK8sConfig:
    """How the k8s executor's step handler combines the config for all steps with the one for ``op``."""
    every_step = UserDefinedDagsterK8sConfig.from_dict(executor_config["step_k8s_config"])
    this_step = UserDefinedDagsterK8sConfig.from_dict(executor_config["per_step_k8s_config"].get(op, {}))
    return (
        K8sContainerContext(run_k8s_config=every_step)
        .merge(K8sContainerContext(run_k8s_config=this_step))
        .run_k8s_config
    )


def test_k8s_executor_config_passes_dagster_k8s_schema(tmp_path: Path) -> None:
    config = k8s_executor_config(K8S, build_definitions(str(tmp_path)))

    @dg.op
    def noop() -> None:
        pass

    @dg.job(executor_def=k8s_job_executor)
    def on_k8s() -> None:
        noop()

    dg.validate_run_config(on_k8s, {"execution": {"config": config}})  # raises DagsterInvalidConfigError if not
    assert set(config["per_step_k8s_config"]) == set(gpu_steps(build_definitions(str(tmp_path))))


def test_keras_step_pods_get_a_gpu_node_a_gpu_and_the_data_volume_once(tmp_path: Path) -> None:
    config = k8s_executor_config(K8S, build_definitions(str(tmp_path)))
    pod = _rendered_pod(_step_config(config, "model_mf"))
    container = pod["containers"][0]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert [v for v in pod["volumes"] if v["name"] == "rec-pipeline-data"] == [
        {"name": "rec-pipeline-data", "persistentVolumeClaim": {"claimName": "recs-data"}}
    ]
    assert [m for m in container["volumeMounts"] if m["name"] == "rec-pipeline-data"] == [
        {"name": "rec-pipeline-data", "mountPath": "/mnt/recs"}
    ]
    assert {"name": "REC_PIPELINE_DATA_DIR", "value": "/mnt/recs"} in container["env"]


def test_other_step_pods_get_the_data_volume_and_no_gpu(tmp_path: Path) -> None:
    config = k8s_executor_config(K8S, build_definitions(str(tmp_path)))
    pod = _rendered_pod(_step_config(config, "raw_reviews"))
    container = pod["containers"][0]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in (container.get("resources") or {}).get("limits", {})
    assert {"name": "rec-pipeline-data", "mountPath": "/mnt/recs"} in container["volumeMounts"]
    assert {"name": "rec-pipeline-data", "persistentVolumeClaim": {"claimName": "recs-data"}} in pod["volumes"]


@pytest.mark.parametrize("gpu", [True, False])
def test_config_tags_parse_with_dagster_k8s_own_tag_reader(gpu: bool) -> None:
    parsed = get_user_defined_k8s_config(k8s_config_tags(K8S, gpu=gpu))  # validates the schema and every k8s field name
    expected = k8s_pod_config(K8S, gpu=gpu)
    assert (
        parsed.container_config == expected["container_config"]
        and parsed.pod_spec_config == expected["pod_spec_config"]
    )
    pod = _rendered_pod(parsed)
    assert ("nodeSelector" in pod) is gpu
