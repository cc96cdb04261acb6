"""Rating-prediction models and rankers behind one interface (fit / predict / score_users / ranking_scores /
recommend / save / load).

Importing this package imports TensorFlow (several seconds); Dagster code locations should import it inside
asset bodies, not at module load.
"""

from rec_pipeline.models.base import ModelNotApplicable, Recommender
from rec_pipeline.models.data import ItemContent, TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.registry import MODELS, create_model, load_model

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
