"""Evaluation: rating and ranking metrics, ranking protocols, cross-validation and model comparison.

Dagster-free and TensorFlow-free: models are reached only through the ``ScoringModel`` protocol.
"""

from rec_pipeline.evaluation.comparison import comparison_table_md, lower_is_better, results_frame, select_best
from rec_pipeline.evaluation.cross_validation import cross_validate, user_stratified_folds
from rec_pipeline.evaluation.evaluate import EvaluationResult, evaluate_model
from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.ranking_metrics import ranking_metrics_from_hits, top_k_columns
from rec_pipeline.evaluation.ranking_protocols import RankingOutcome, rank_model
from rec_pipeline.evaluation.rating_metrics import rating_metrics
from rec_pipeline.evaluation.scoring_model import ScoringModel

__all__ = [
    "EvaluationOptions",
    "EvaluationResult",
    "RankingOutcome",
    "ScoringModel",
    "comparison_table_md",
    "cross_validate",
    "evaluate_model",
    "lower_is_better",
    "rank_model",
    "ranking_metrics_from_hits",
    "rating_metrics",
    "results_frame",
    "select_best",
    "top_k_columns",
    "user_stratified_folds",
]
