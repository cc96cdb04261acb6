"""The one list of models: each model's name, class and needs, and loading any saved model by the kind recorded in
its ``model.json``.

``CATALOGUE`` is the only place a model is listed. Everything else derives from it: the training assets (one per
entry, in this order), the ``gpu`` pool (``keras``), the content features a model reads (``content``), the demo's
settings and the evaluation's model list. Importing this module imports no Keras: a model's class is imported
the first time ``MODELS[name]`` (or ``ModelSpec.model_class``) asks for it, so a Dagster code location can read
the catalogue at load time and still leave TensorFlow to the step processes that train.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rec_pipeline.models.artifacts import read_manifest

if TYPE_CHECKING:
    from rec_pipeline.models.base import Recommender


@dataclass(frozen=True)
class ModelSpec:
    """A model of the catalogue and what it needs."""

    name: str  # the model's kind (``Recommender.kind``), its asset is ``model_<name>``
    module: str  # under rec_pipeline.models
    class_name: str
    keras: bool = False  # trains (and is scored) with Keras: the ``gpu`` pool, TensorBoard logs
    content: bool = False  # reads item content: text vectors and image embeddings
    # The model this one contains (can represent exactly): after training it must not be worse on validation.
    # A violation means under-training or mis-regularization, not a property of the data.
    contains: str | None = None

    @property
    def asset(self) -> str:
        return f"model_{self.name}"

    @property
    def model_class(self) -> type[Recommender]:
        model_class: type[Recommender] = getattr(
            importlib.import_module(f"rec_pipeline.models.{self.module}"), self.class_name
        )
        return model_class


CATALOGUE: tuple[ModelSpec, ...] = (
    ModelSpec("global_mean", "global_mean", "GlobalMeanRecommender"),
    ModelSpec("popularity", "popularity", "PopularityRecommender"),
    ModelSpec("biases", "biases", "BiasesRecommender", contains="global_mean"),
    ModelSpec("ease", "ease", "EASERecommender"),
    ModelSpec("mf", "mf", "MatrixFactorizationRecommender", keras=True, contains="biases"),
    ModelSpec("mf_als", "als", "ALSMatrixFactorizationRecommender"),
    ModelSpec("ncf", "ncf", "NCFRecommender", keras=True),
    ModelSpec("neumf", "neumf", "NeuMFRecommender", keras=True, contains="mf"),
    ModelSpec("hybrid", "hybrid", "HybridRecommender", keras=True, content=True, contains="mf"),
    ModelSpec("hybrid_seed000", "hybrid_seed000", "HybridSeed000Recommender", keras=True, content=True),
    ModelSpec("autorec", "autorec", "AutoRecRecommender", keras=True),
    ModelSpec("two_tower", "two_tower", "TwoTowerRecommender", keras=True, content=True),
)
SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in CATALOGUE}
MODEL_NAMES: tuple[str, ...] = tuple(SPECS)
KERAS_MODELS: frozenset[str] = frozenset(spec.name for spec in CATALOGUE if spec.keras)
CONTENT_MODELS: frozenset[str] = frozenset(spec.name for spec in CATALOGUE if spec.content)
NESTED_MODELS: tuple[tuple[str, str], ...] = tuple((s.name, s.contains) for s in CATALOGUE if s.contains)


class _Models(Mapping[str, "type[Recommender]"]):
    """``{kind: class}`` over the catalogue, each class imported on first access."""

    def __getitem__(self, kind: str) -> type[Recommender]:
        return SPECS[kind].model_class

    def __iter__(self) -> Iterator[str]:
        return iter(SPECS)

    def __len__(self) -> int:
        return len(SPECS)


MODELS: Mapping[str, type[Recommender]] = _Models()


def create_model(kind: str, **config: object) -> Recommender:
    """A fresh, unfitted model of ``kind`` with model-specific constructor arguments."""
    try:
        model_class = MODELS[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODELS)}") from None
    try:
        return model_class(**config)
    except TypeError as exc:
        raise ValueError(f"model {kind!r} does not take {sorted(config)}: {exc}") from None


def load_model(directory: Path | str) -> Recommender:
    """Load whatever model ``directory`` holds (dispatching on ``model.json``'s kind)."""
    kind = read_manifest(directory)["kind"]
    if kind not in MODELS:
        raise ValueError(f"{directory} holds unknown model kind {kind!r}")
    return MODELS[kind].load(directory)
