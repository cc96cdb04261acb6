"""Evaluation: rating and ranking metrics, ranking protocols, cross-validation and model comparison.

Dagster-free and TensorFlow-free: models are reached only through the ``ScoringModel`` protocol.
"""

from rec_pipeline.evaluation.bootstrap import Interval, UserStatistics
from rec_pipeline.evaluation.cold_items import (
    ColdFallback,
    cold_candidates,
    cold_metric_name,
    cold_metrics,
    evaluate_cold_items,
    only_items,
    select_cold_items,
    without_items,
)
from rec_pipeline.evaluation.comparison import (
    BootstrapComparison,
    compare_models,
    comparison_table_md,
    difference_table_md,
    lower_is_better,
    results_frame,
    select_best,
)
from rec_pipeline.evaluation.cross_validation import cross_validate, user_stratified_folds
from rec_pipeline.evaluation.evaluate import EvaluationResult, evaluate_model
from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.ranking_metrics import ranking_metrics_from_hits
from rec_pipeline.evaluation.ranking_protocols import RankingOutcome, default_candidates, rank_model
from rec_pipeline.evaluation.rating_metrics import rating_metrics
from rec_pipeline.evaluation.scoring_model import ScoringModel, ranking_scores
from rec_pipeline.evaluation.top_k import TieBreaker, top_k_columns
from rec_pipeline.evaluation.user_sample import UserSample, sample_users

__all__ = [
    "BootstrapComparison",
    "ColdFallback",
    "EvaluationOptions",
    "EvaluationResult",
    "Interval",
    "RankingOutcome",
    "ScoringModel",
    "TieBreaker",
    "UserSample",
    "UserStatistics",
    "cold_candidates",
    "cold_metric_name",
    "cold_metrics",
    "compare_models",
    "comparison_table_md",
    "cross_validate",
    "default_candidates",
    "difference_table_md",
    "evaluate_cold_items",
    "evaluate_model",
    "lower_is_better",
    "only_items",
    "rank_model",
    "ranking_metrics_from_hits",
    "ranking_scores",
    "rating_metrics",
    "results_frame",
    "sample_users",
    "select_best",
    "select_cold_items",
    "top_k_columns",
    "user_stratified_folds",
    "without_items",
]
