"""Model kinds by name, and loading any saved model by the kind recorded in its ``model.json``."""

from __future__ import annotations

from pathlib import Path

from rec_pipeline.models.als import ALSMatrixFactorizationRecommender
from rec_pipeline.models.artifacts import read_manifest
from rec_pipeline.models.autorec import AutoRecRecommender
from rec_pipeline.models.base import Recommender
from rec_pipeline.models.biases import BiasesRecommender
from rec_pipeline.models.ease import EASERecommender
from rec_pipeline.models.global_mean import GlobalMeanRecommender
from rec_pipeline.models.hybrid import HybridRecommender
from rec_pipeline.models.hybrid_seed000 import HybridSeed000Recommender
from rec_pipeline.models.mf import MatrixFactorizationRecommender
from rec_pipeline.models.ncf import NCFRecommender
from rec_pipeline.models.neumf import NeuMFRecommender
from rec_pipeline.models.popularity import PopularityRecommender
from rec_pipeline.models.two_tower import TwoTowerRecommender

MODELS: dict[str, type[Recommender]] = {
    model.kind: model
    for model in (
        GlobalMeanRecommender,
        PopularityRecommender,
        BiasesRecommender,
        EASERecommender,
        MatrixFactorizationRecommender,
        ALSMatrixFactorizationRecommender,
        NCFRecommender,
        NeuMFRecommender,
        HybridRecommender,
        HybridSeed000Recommender,
        AutoRecRecommender,
        TwoTowerRecommender,
    )
}


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
