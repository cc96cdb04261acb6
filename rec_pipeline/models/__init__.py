"""Rating-prediction models and rankers behind one interface (fit / predict / score_users / ranking_scores /
recommend / save / load).

Names are imported on first use (PEP 562): ``TrainOptions``, the other data classes, ``ModelNotApplicable``
and the registry cost nothing, while creating a model (and ``Recommender``) imports Keras (and, on the
TensorFlow backend, TensorFlow: several seconds). Importing the package, or ``rec_pipeline.models.backend``,
imports no Keras, so a process can still choose its Keras backend (``backend.use_backend``) before the first
model is created. Dagster code locations should import models inside asset bodies, not at module load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rec_pipeline.models.base import Recommender
    from rec_pipeline.models.data import ItemContent, ModelNotApplicable, TrainingData, TrainingHistory, TrainOptions
    from rec_pipeline.models.registry import MODELS, create_model, load_model

_EXPORTS = {
    "MODELS": "rec_pipeline.models.registry",
    "ItemContent": "rec_pipeline.models.data",
    "ModelNotApplicable": "rec_pipeline.models.data",
    "Recommender": "rec_pipeline.models.base",
    "TrainOptions": "rec_pipeline.models.data",
    "TrainingData": "rec_pipeline.models.data",
    "TrainingHistory": "rec_pipeline.models.data",
    "create_model": "rec_pipeline.models.registry",
    "load_model": "rec_pipeline.models.registry",
}

__all__ = [
    "MODELS",
    "ItemContent",
    "ModelNotApplicable",
    "Recommender",
    "TrainOptions",
    "TrainingData",
    "TrainingHistory",
    "create_model",
    "load_model",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
