"""Where steps run: one machine (the default), Celery workers on several machines, or Kubernetes pods.

The deployment is chosen by environment variables, read once by ``DeploySettings.from_env`` where the code location
is built (``rec_pipeline.definitions``) and nowhere else:

- ``REC_PIPELINE_EXECUTOR``: ``multiprocess`` (default: Dagster's executor, one process per step) or ``celery``;
- ``REC_PIPELINE_CELERY_BROKER``, ``REC_PIPELINE_CELERY_BACKEND``, ``REC_PIPELINE_CELERY_QUEUE``: where the Celery
  executor sends steps and reads their results. Workers must be started with the same values:
  ``python -m rec_pipeline.deploy celery-worker-config`` writes their config file (README "Scaling out").

Kubernetes is rendered here, not switched on: ``k8s_executor_config`` and ``k8s_config_tags`` produce the
``dagster-k8s`` configuration (GPU nodes for the ``gpu`` pool's Keras steps, the shared data volume for every step)
for a deployment that runs ``dagster_k8s.k8s_job_executor``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast, get_args

import dagster as dg
import yaml

EXECUTOR_ENV = "REC_PIPELINE_EXECUTOR"
CELERY_BROKER_ENV = "REC_PIPELINE_CELERY_BROKER"
CELERY_BACKEND_ENV = "REC_PIPELINE_CELERY_BACKEND"
CELERY_QUEUE_ENV = "REC_PIPELINE_CELERY_QUEUE"

ExecutorKind = Literal["multiprocess", "celery"]
GPU_POOL = "gpu"


@dataclass(frozen=True)
class CelerySettings:
    """The broker that carries steps to the workers, the backend that carries their results back, and the queue
    the workers listen on (one per deployment sharing a broker)."""

    broker: str = "pyamqp://guest@127.0.0.1//"
    backend: str = "redis://127.0.0.1:6379/0"
    queue: str = "dagster"

    def executor_config(self) -> dict[str, Any]:
        """Config of ``dagster_celery.celery_executor``; the workers' config file holds the same block."""
        return {
            "broker": self.broker,
            "backend": self.backend,
            "config_source": {
                "task_default_queue": self.queue,
                # A step is acknowledged when it ends, not when a worker takes it: if the worker's host dies (or it
                # is SIGKILLed), the broker hands the step to another worker instead of the run waiting forever.
                # A step whose own process is killed (OOM) still fails: reject_on_worker_lost stays off, so a step
                # that kills its process every time cannot loop.
                "task_acks_late": True,
                # A fresh process per step, as with the multiprocess executor: TensorFlow keeps device memory for
                # its process's life, so a long-lived worker process would keep the GPU after its Keras step.
                "worker_max_tasks_per_child": 1,
            },
        }

    def worker_config_yaml(self) -> str:
        """The ``-y`` file of ``dagster-celery worker start``: the executor's config under ``execution: config:``."""
        return yaml.safe_dump({"execution": {"config": self.executor_config()}}, sort_keys=False)


@dataclass(frozen=True)
class DeploySettings:
    executor: ExecutorKind = "multiprocess"
    celery: CelerySettings = field(default_factory=CelerySettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> DeploySettings:
        executor = environ.get(EXECUTOR_ENV, "multiprocess").strip().lower() or "multiprocess"
        if executor not in get_args(ExecutorKind):
            raise ValueError(f"{EXECUTOR_ENV}={executor!r}: expected one of {', '.join(get_args(ExecutorKind))}")
        defaults = CelerySettings()
        celery = CelerySettings(
            broker=environ.get(CELERY_BROKER_ENV) or defaults.broker,
            backend=environ.get(CELERY_BACKEND_ENV) or defaults.backend,
            queue=environ.get(CELERY_QUEUE_ENV) or defaults.queue,
        )
        return cls(executor=cast(ExecutorKind, executor), celery=celery)


def build_executor(settings: DeploySettings) -> dg.ExecutorDefinition | None:
    """The executor of every job; ``None`` keeps Dagster's default (multiprocess, or in-process by run config)."""
    if settings.executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor.configured(settings.celery.executor_config())
    return None


# --- Kubernetes (dagster-k8s), rendered on paper --------------------------------------------------------------

DATA_VOLUME = "rec-pipeline-data"


@dataclass(frozen=True)
class K8sSettings:
    """A shared data volume for every pod, and what a Keras step needs from the cluster.

    ``data_claim`` names a ReadWriteMany PersistentVolumeClaim holding the data root; it is mounted at ``data_root``
    in every run and step pod, and ``REC_PIPELINE_DATA_DIR`` points there. The default node selector is the label
    NVIDIA's GPU feature discovery puts on GPU nodes; the toleration matches the usual taint of GPU node pools.
    """

    data_claim: str = "rec-pipeline-data"
    data_root: str = "/data"
    gpu_node_selector: Mapping[str, str] = field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    gpus_per_step: int = 1
    gpu_tolerations: Sequence[Mapping[str, str]] = (
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
    )


def k8s_pod_config(settings: K8sSettings, *, gpu: bool) -> dict[str, Any]:
    """One ``dagster-k8s/config`` value: the data volume, plus GPU node, toleration and ``nvidia.com/gpu``
    limit when ``gpu``."""
    container: dict[str, Any] = {
        "env": [{"name": "REC_PIPELINE_DATA_DIR", "value": settings.data_root}],
        "volume_mounts": [{"name": DATA_VOLUME, "mount_path": settings.data_root}],
    }
    pod: dict[str, Any] = {
        "volumes": [{"name": DATA_VOLUME, "persistent_volume_claim": {"claim_name": settings.data_claim}}]
    }
    if gpu:
        # Extended resources are requested by their limit (a quantity, hence a string); Kubernetes sets the request.
        container["resources"] = {"limits": {"nvidia.com/gpu": str(settings.gpus_per_step)}}
        pod["node_selector"] = dict(settings.gpu_node_selector)
        pod["tolerations"] = [dict(t) for t in settings.gpu_tolerations]
    return {"container_config": container, "pod_spec_config": pod}


def k8s_config_tags(settings: K8sSettings, *, gpu: bool) -> dict[str, str]:
    """The ``dagster-k8s/config`` tag of a run (``gpu=False``: the run pod needs the data volume) or of an op."""
    return {"dagster-k8s/config": json.dumps(k8s_pod_config(settings, gpu=gpu), sort_keys=True)}


def gpu_steps(defs: dg.Definitions) -> list[str]:
    """Names of the ops in the ``gpu`` pool (the Keras steps), as ``per_step_k8s_config`` keys them."""
    return sorted(
        {a.op.name for a in defs.assets or () if isinstance(a, dg.AssetsDefinition) and a.op.pool == GPU_POOL}
    )


def k8s_executor_config(settings: K8sSettings, defs: dg.Definitions) -> dict[str, Any]:
    """Config of ``dagster_k8s.k8s_job_executor``: every step pod mounts the data volume; the ``gpu`` pool's
    steps also get a GPU node and an ``nvidia.com/gpu`` limit (dagster-k8s merges the per-step block into the
    common one, keeping the volume once)."""
    return {
        "step_k8s_config": k8s_pod_config(settings, gpu=False),
        "per_step_k8s_config": {name: k8s_pod_config(settings, gpu=True) for name in gpu_steps(defs)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m rec_pipeline.deploy celery-worker-config``: the Celery workers' config file, from the same
    environment as the code location."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args != ["celery-worker-config"]:
        print("usage: python -m rec_pipeline.deploy celery-worker-config > celery_worker.yaml", file=sys.stderr)
        return 2
    sys.stdout.write(DeploySettings.from_env().celery.worker_config_yaml())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
