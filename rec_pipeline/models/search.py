"""A small seeded hyperparameter search per Keras model, judged on the validation split.

Dagster-free: the training asset calls ``search`` where it would call ``fit``, and gets back the fitted winner
(no refit), the chosen values and one table row per candidate for its metadata.

- **Space**: per model, a mapping ``parameter -> candidate values`` (``DEFAULT_SPACES``, overridable from settings
  by ``resolve_space``). A parameter is either a constructor argument of the model class (checked against
  ``inspect.signature``) or one of the shared training options in ``OPTION_PARAMETERS`` (embedding size, L2,
  learning rate, dropout...). Epochs are not searched: every candidate trains up to ``TrainOptions.epochs`` with
  early stopping on validation, and the table records how many epochs each ran.
- **Candidates**: the *base* configuration first (the options and constructor arguments the model would be
  trained with anyway, i.e. the untuned model), then a seeded random sample without replacement from the grid of
  the space, up to ``max_candidates`` in all. The base is always a candidate, so tuning can never choose something
  worse on validation than the untuned model.
- **Objective**: validation RMSE for rating models (``predict`` + ``evaluation.rating_metrics``), validation
  NDCG@10 for the ranking-trained ``two_tower`` (``evaluation.rank_model`` under the pipeline's full protocol,
  ranking the training items with each user's training items excluded). Ties go to the earlier candidate.
- **Nesting**: MF contains the bias model, NeuMF and the hybrid contain MF (``CONTAINS``). Given the contained
  model's validation objective as ``baseline``, the result says whether the tuned model is not worse than it.

Same data, space, options and seed: same candidates in the same order, same table (seconds aside), same winner.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from rec_pipeline.evaluation.comparison import lower_is_better
from rec_pipeline.evaluation.options import EvaluationOptions
from rec_pipeline.evaluation.ranking_metrics import RANKING_METRICS
from rec_pipeline.evaluation.ranking_protocols import default_candidates, rank_model
from rec_pipeline.evaluation.rating_metrics import rating_metrics
from rec_pipeline.evaluation.user_sample import DEFAULT_MAX_USERS, sample_users
from rec_pipeline.models.data import TrainingData, TrainingHistory, TrainOptions
from rec_pipeline.models.registry import CATALOGUE, NESTED_MODELS

if TYPE_CHECKING:
    from rec_pipeline.models.base import Recommender

# Training options a search may vary (``TrainOptions`` fields); everything else (epochs, seed, devices, paths)
# stays as configured. Epochs are left to early stopping.
OPTION_PARAMETERS = ("embedding_dim", "l2", "learning_rate", "dropout", "id_dropout", "batch_size")

# Keras models the search tunes. ``hybrid_seed000`` reproduces a published network with its published settings:
# tuning it would make it a different model.
FROZEN_MODELS = {"hybrid_seed000": "a frozen reproduction of a published network: its settings are not tuned"}
SEARCHABLE_MODELS = tuple(spec.name for spec in CATALOGUE if spec.keras and spec.name not in FROZEN_MODELS)

# Options a model never reads: searching them would train identical candidates and report a meaningless table.
_IGNORED_OPTIONS: dict[str, dict[str, str]] = {
    "mf": {
        "dropout": "MF has no dropout layer",
        "id_dropout": "MF masks unknown ids instead of training an unknown row",
    },
    "autorec": {
        "embedding_dim": "AutoRec's sizes are its hidden_units (outer, code)",
        "id_dropout": "AutoRec has no id embeddings",
    },
    "two_tower": {
        "dropout": "the two-tower model's dropouts are the constructor's user_dropout and item_dropout",
        "l2": "the two-tower model regularizes with the constructor's embedding_l2 and content_l2",
    },
}

# "A contains B": A can represent B exactly, so tuned A must not be worse than B on validation (the registry's
# ``ModelSpec.contains``, restricted to the searched models).
CONTAINS: dict[str, str] = {model: base for model, base in NESTED_MODELS if model in SEARCHABLE_MODELS}

RATING_OBJECTIVE = "rmse"
RANKING_OBJECTIVE = "ndcg@10"
RANKING_MODELS = frozenset({"two_tower"})  # trained on a ranking loss: their ratings are a constant


@dataclass(frozen=True)
class SearchSpace:
    """Candidate values per parameter and how many candidates to train (the base configuration included)."""

    values: Mapping[str, Sequence[Any]]
    max_candidates: int = 3

    def __post_init__(self) -> None:
        if self.max_candidates < 1:
            raise ValueError("max_candidates must be at least 1")
        for name, values in self.values.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or len(values) == 0:
                raise ValueError(f"search values of {name!r} must be a non-empty list, got {values!r}")
        object.__setattr__(self, "values", {name: list(self.values[name]) for name in sorted(self.values)})

    @property
    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.values.values())

    def to_dict(self) -> dict[str, Any]:
        return {**{name: list(values) for name, values in self.values.items()}, "max_candidates": self.max_candidates}


# Small on purpose: each candidate is a full training run. 2-4 candidates per model, the untuned base among them;
# the values bracket each model's tuned defaults (bench/quality.py), mostly by a factor of ~2 on either side.
DEFAULT_SPACES: dict[str, SearchSpace] = {
    "mf": SearchSpace(
        {
            "embedding_dim": [16, 32, 64],
            # Up to 0.3: on the generated sample with leave-last-out splits (about 12 ratings a user) MF's best
            # validation RMSE came from 0.1-0.3 on the factors and 0.01-0.03 on the biases.
            "embedding_l2": [0.02, 0.05, 0.1, 0.3],
            "bias_l2": [0.001, 0.01, 0.03],
            "learning_rate": [2e-3, 5e-3, 1e-2],
        },
        max_candidates=4,
    ),
    "ncf": SearchSpace(
        {
            "embedding_dim": [16, 32],
            "l2": [1e-5, 1e-4, 1e-3],
            "dropout": [0.1, 0.2, 0.3],
            "learning_rate": [5e-4, 1e-3, 2e-3],
        }
    ),
    "neumf": SearchSpace(
        {
            "embedding_dim": [16, 32],
            "l2": [1e-5, 1e-4, 1e-3],
            "dropout": [0.1, 0.2, 0.3],
            "learning_rate": [5e-4, 1e-3, 2e-3],
        }
    ),
    "hybrid": SearchSpace(
        {
            "embedding_dim": [16, 32],
            "embedding_l2": [0.02, 0.05, 0.1],
            "dropout": [0.1, 0.2],
            "learning_rate": [2e-3, 5e-3],
        }
    ),
    "autorec": SearchSpace(
        {
            "hidden_units": [[256, 64], [128, 32]],
            "l2": [1e-5, 1e-4, 1e-3],
            "dropout": [0.1, 0.2, 0.3],
            "learning_rate": [2e-3, 5e-3],
        }
    ),
    "two_tower": SearchSpace(
        {
            "embedding_dim": [16, 32, 64],
            "embedding_l2": [1e-4, 1e-3, 1e-2],
            "user_dropout": [0.3, 0.5],
            "learning_rate": [2e-3, 5e-3],
        }
    ),
}

MAX_CANDIDATES_KEY = "max_candidates"
_PERMUTED_GRID_MAX = 1 << 16


# ----- parameters ------------------------------------------------------------------------------------------------
def constructor_parameters(name: str) -> dict[str, Any]:
    """The model class's constructor arguments and their defaults (``inspect.Parameter.empty`` when none)."""
    model_class = _model_class(name)
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(model_class.__init__).parameters.values()
        if parameter.name != "self" and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }


def valid_parameters(name: str) -> list[str]:
    """What a search space of ``name`` may name: its constructor arguments and the options it reads."""
    ignored = _IGNORED_OPTIONS.get(name, {})
    return sorted({*constructor_parameters(name), *(o for o in OPTION_PARAMETERS if o not in ignored)})


def _model_class(name: str) -> type[Recommender]:
    if name in FROZEN_MODELS:
        raise ValueError(f"model {name!r} is not searched: {FROZEN_MODELS[name]}")
    if name not in SEARCHABLE_MODELS:
        known = "unknown model" if name not in _models() else "not a Keras model"
        raise ValueError(f"{name!r}: {known}; the search tunes {list(SEARCHABLE_MODELS)}")
    return _models()[name]


# The registry imports Keras: reached only when a model is needed, so importing this module leaves the Keras
# backend unchosen (``rec_pipeline.models.backend``).
def _models() -> Mapping[str, type[Recommender]]:
    from rec_pipeline.models.registry import MODELS

    return MODELS


def _create_model(name: str, **params: Any) -> Recommender:
    from rec_pipeline.models.registry import create_model

    return create_model(name, **params)


def check_space(name: str, space: SearchSpace, model_params: Mapping[str, Any] | None = None) -> None:
    """Fail, naming the valid parameters, on a parameter ``name`` does not take or never reads."""
    constructor = constructor_parameters(name)
    valid = valid_parameters(name)
    for parameter in space.values:
        if parameter == "epochs":
            raise ValueError(
                f"search space of {name!r}: 'epochs' is not searched: every candidate trains up to the configured "
                "epochs with early stopping on validation (early_stopping_patience)"
            )
        reason = _IGNORED_OPTIONS.get(name, {}).get(parameter)
        if reason is not None and parameter not in constructor:
            raise ValueError(f"search space of {name!r}: {parameter!r} has no effect ({reason}); valid: {valid}")
        if parameter not in constructor and parameter not in OPTION_PARAMETERS:
            raise ValueError(f"search space of {name!r}: unknown parameter {parameter!r}; valid: {valid}")
    if name == "mf" and "l2" in space.values:
        # MF reads options.l2 only for a table whose per-example penalty is None.
        params = {**constructor, **(model_params or {})}
        # Ineffective when no candidate switches a per-example penalty off (None).
        per_example = [
            key
            for key in ("embedding_l2", "bias_l2")
            if all(value is not None for value in space.values.get(key, [params.get(key)]))
        ]
        if len(per_example) == 2:
            raise ValueError(
                f"search space of 'mf': 'l2' has no effect while embedding_l2 and bias_l2 are set (per-example "
                f"penalties replace it); search embedding_l2/bias_l2 instead; valid: {valid}"
            )


def resolve_space(
    name: str,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    model_params: Mapping[str, Any] | None = None,
) -> SearchSpace:
    """The space of ``name``: ``DEFAULT_SPACES`` with the settings' entry for ``name`` laid over it.

    ``overrides`` is the settings mapping ``{model: {parameter: [values], "max_candidates": n}}``; each listed
    parameter replaces that parameter's default values (an empty list removes it), unlisted ones keep theirs.
    ``model_params``: the model's configured constructor arguments (they decide whether e.g. MF reads ``l2``).
    """
    default = DEFAULT_SPACES.get(name)
    if default is None:
        _model_class(name)  # raises with the reason
        raise ValueError(f"no default search space for {name!r}")  # pragma: no cover
    entry = dict((overrides or {}).get(name, {}))
    max_candidates = int(entry.pop(MAX_CANDIDATES_KEY, default.max_candidates))
    values: dict[str, Sequence[Any]] = {key: list(v) for key, v in default.values.items()}
    for parameter, listed in entry.items():
        if isinstance(listed, Sequence) and not isinstance(listed, str) and len(listed) == 0:
            values.pop(parameter, None)
        else:
            values[parameter] = listed
    space = SearchSpace(values, max_candidates)
    check_space(name, space, model_params)
    return space


def check_overrides(
    overrides: Mapping[str, Mapping[str, Any]], model_params: Mapping[str, Mapping[str, Any]] | None = None
) -> None:
    """Validate a whole settings mapping at once (e.g. when the config is read), before any training;
    ``model_params``: configured constructor arguments per model."""
    for name in overrides:
        resolve_space(name, overrides, (model_params or {}).get(name))


# ----- candidates ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    """One point of the space: the searched values, and how they split into constructor arguments and options."""

    index: int
    params: dict[str, Any]
    model_params: dict[str, Any]
    options: TrainOptions
    is_base: bool


def base_point(name: str, space: SearchSpace, options: TrainOptions, model_params: Mapping[str, Any]) -> dict[str, Any]:
    """The values the searched parameters take without a search (``learning_rate=None``: the model's default)."""
    constructor = constructor_parameters(name)
    point: dict[str, Any] = {}
    for parameter in space.values:
        if parameter in constructor:
            value = model_params.get(parameter, constructor[parameter])
            point[parameter] = list(value) if isinstance(value, tuple) else value
        else:
            value = getattr(options, parameter)
            if parameter == "learning_rate" and value is None:
                value = getattr(_models()[name], "default_learning_rate", None)
            point[parameter] = value
    return point


def candidates(
    name: str,
    space: SearchSpace,
    options: TrainOptions | None = None,
    model_params: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> list[Candidate]:
    """The base configuration, then up to ``max_candidates - 1`` distinct grid points in a seeded random order.

    Each candidate's model and options are built here, so a value a model rejects fails before any training.
    ``checkpoint_dir``/``tensorboard_dir``, when set, get a ``candidate_NN`` subdirectory per candidate.
    """
    options = options or TrainOptions()
    model_params = dict(model_params or {})
    check_space(name, space, model_params)
    names = list(space.values)
    base = base_point(name, space, options, model_params)
    base_key = _key(base)
    points = [base]
    seen = {base_key}
    for flat in _grid_order(space.grid_size, seed):
        if len(points) >= space.max_candidates:
            break
        point = _decode(flat, names, space)
        key = _key(point)
        if key not in seen:
            seen.add(key)
            points.append(point)
    constructor = constructor_parameters(name)
    out = []
    for index, point in enumerate(points):
        constructor_values = {k: v for k, v in point.items() if k in constructor}
        option_values = {k: v for k, v in point.items() if k not in constructor}
        candidate_params = {**model_params, **constructor_values}
        # Each candidate checkpoints and logs apart (TensorBoard shows them as runs side by side).
        for directory in ("checkpoint_dir", "tensorboard_dir"):
            if getattr(options, directory) is not None:
                option_values[directory] = getattr(options, directory) / f"candidate_{index:02d}"
        try:
            candidate_options = dataclasses.replace(options, **option_values)
            _create_model(name, **candidate_params)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"search candidate {point} of {name!r} is invalid: {exc}") from exc
        out.append(Candidate(index, point, candidate_params, candidate_options, index == 0))
    return out


def _grid_order(grid_size: int, seed: int) -> Iterator[int]:
    """Grid indices in a seeded random order without repeats. A prefix never depends on how many are taken, so a
    larger ``max_candidates`` extends the candidate list rather than reshuffling it. Large grids are sampled
    lazily (the grid is never listed)."""
    rng = np.random.default_rng(seed)
    if grid_size <= _PERMUTED_GRID_MAX:
        yield from (int(flat) for flat in rng.permutation(grid_size))
        return
    drawn: set[int] = set()
    while len(drawn) < grid_size:
        flat = int(rng.integers(grid_size))
        if flat not in drawn:
            drawn.add(flat)
            yield flat


def _decode(flat: int, names: Sequence[str], space: SearchSpace) -> dict[str, Any]:
    point = {}
    for parameter in reversed(names):
        values = space.values[parameter]
        flat, position = divmod(flat, len(values))
        point[parameter] = values[position]
    return {parameter: point[parameter] for parameter in names}


def _key(point: Mapping[str, Any]) -> str:
    """Identity of a point (tuples and lists alike), to keep the base from reappearing as a grid point."""
    return json.dumps(_jsonable(dict(point)), sort_keys=True, default=str)


# ----- objective -------------------------------------------------------------------------------------------------
def default_objective(name: str) -> str:
    """Validation NDCG@10 for ranking-trained models, validation RMSE for rating models."""
    return RANKING_OBJECTIVE if name in RANKING_MODELS else RATING_OBJECTIVE


def validation_objective(
    model: Recommender,
    train: pl.DataFrame,
    validation: pl.DataFrame,
    objective: str,
    evaluation: EvaluationOptions | None = None,
    max_users: int | None = DEFAULT_MAX_USERS,
) -> float:
    """``objective`` of a fitted model on ``validation``, by the project's own evaluation functions.

    ``rmse``/``mae``: ``rating_metrics`` of ``predict``. ``ndcg@K``, ``recall@K``, ``hr@K``, ``map@K``: ``rank_model``
    with the training items as candidates and each user's training items excluded (``evaluation`` sets the protocol,
    relevance threshold and tie-break seed; its ``ks`` gain K). Also what the asset can call on a saved contained
    model to get the ``baseline`` of ``search``.
    """
    if objective in ("rmse", "mae"):
        predicted = model.predict(validation["user_id"].to_list(), validation["item_id"].to_list())
        value = rating_metrics(validation["rating"].to_numpy(), predicted)[objective]
    else:
        metric, _, k = objective.partition("@")
        if metric not in RANKING_METRICS or not k.isdigit():
            raise ValueError(f"unknown objective {objective!r}; use rmse, mae or one of {list(RANKING_METRICS)}@K")
        options = dataclasses.replace(evaluation or EvaluationOptions(), ks=(int(k),))
        # Ranking is O(users x items): a seeded sample of users, the same for every candidate (user_sample.py).
        ranked = sample_users({"validation": validation}, max_users, options.seed).required("validation")
        outcome = rank_model(model, train, ranked, options=options, candidates=default_candidates(train))
        value = outcome.metrics.get(objective)
    if value is None or not math.isfinite(value):
        raise ValueError(f"validation {objective} is undefined (no validation pairs or relevant items to judge by)")
    return float(value)


# ----- search ----------------------------------------------------------------------------------------------------
@dataclass
class SearchResult:
    """The winner (fitted), its values, and one row per candidate in the order they were trained.

    ``table`` rows: ``candidate`` (0 = base), ``base``, each searched parameter, ``objective`` (validation value),
    ``best_epoch``, ``epochs_run``, ``seconds`` (fit + validation scoring), ``chosen``.
    ``not_worse_than_baseline`` is ``None`` when no ``baseline`` was given.
    """

    model_name: str
    objective: str
    higher_is_better: bool
    seed: int
    space: SearchSpace
    chosen: dict[str, Any]
    chosen_index: int
    model_params: dict[str, Any]
    options: TrainOptions
    best_value: float
    base_value: float
    table: list[dict[str, Any]]
    model: Recommender = field(repr=False)
    history: TrainingHistory = field(repr=False)
    baseline_name: str | None = None
    baseline_value: float | None = None
    seconds: float = 0.0

    @property
    def not_worse_than_baseline(self) -> bool | None:
        if self.baseline_value is None:
            return None
        if self.higher_is_better:
            return self.best_value >= self.baseline_value
        return self.best_value <= self.baseline_value

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no model) for the training summary file and asset metadata."""
        return {
            "model": self.model_name,
            "objective": f"val_{self.objective}",
            "higher_is_better": self.higher_is_better,
            "seed": self.seed,
            "space": self.space.to_dict(),
            "chosen": self.chosen,
            "chosen_candidate": self.chosen_index,
            "model_params": _jsonable(self.model_params),
            "options": {k: v for k, v in self.options.to_dict().items() if k in OPTION_PARAMETERS},
            "best_value": self.best_value,
            "base_value": self.base_value,
            "baseline": self.baseline_name,
            "baseline_value": self.baseline_value,
            "not_worse_than_baseline": self.not_worse_than_baseline,
            "seconds": round(self.seconds, 2),
            "columns": table_columns(self),
            "table": _jsonable(self.table),
        }


def search(
    name: str,
    space: SearchSpace,
    data: TrainingData,
    options: TrainOptions | None = None,
    seed: int = 0,
    objective: str | None = None,
    model_params: Mapping[str, Any] | None = None,
    evaluation: EvaluationOptions | None = None,
    baseline: float | None = None,
    logger: logging.Logger | None = None,
) -> SearchResult:
    """Train every candidate of ``space`` on ``data.train`` (early stopping on ``data.validation``), keep the best.

    ``options``/``model_params``: what the model would be trained with untuned (the base candidate); searched
    values replace them per candidate. ``seed`` draws the candidates (training itself is seeded by
    ``options.seed``). ``objective`` defaults to ``default_objective(name)``. ``baseline``: the contained model's
    value of the same objective on the same validation split (``CONTAINS``), reported on the result.
    """
    if not data.has_validation or data.validation is None:
        raise ValueError(f"searching {name!r} needs a validation split to judge candidates by")
    options = options or TrainOptions()
    objective = objective or default_objective(name)
    higher = not lower_is_better(objective)
    points = candidates(name, space, options, model_params, seed)
    started = time.perf_counter()
    table: list[dict[str, Any]] = []
    best: tuple[Candidate, Recommender, TrainingHistory, float] | None = None
    for candidate in points:
        if logger is not None:
            logger.info("%s search: candidate %d of %d: %s", name, candidate.index, len(points), candidate.params)
        model = _create_model(name, **candidate.model_params)
        tick = time.perf_counter()
        history = model.fit(data, candidate.options, logger=logger)
        value = validation_objective(model, data.train, data.validation, objective, evaluation)
        table.append(
            {
                "candidate": candidate.index,
                "base": candidate.is_base,
                **candidate.params,
                "objective": value,
                "best_epoch": history.best_epoch,
                "epochs_run": history.epochs_run,
                "seconds": round(time.perf_counter() - tick, 2),
            }
        )
        if logger is not None:
            logger.info("%s search: candidate %d: val_%s=%.5f", name, candidate.index, objective, value)
        # Strictly better only: on a tie the earlier candidate (the base first, then the seeded order) stays.
        if best is None or (value > best[3] if higher else value < best[3]):
            best = (candidate, model, history, value)
    assert best is not None
    winner, model, history, value = best
    for row in table:
        row["chosen"] = row["candidate"] == winner.index
    result = SearchResult(
        model_name=name,
        objective=objective,
        higher_is_better=higher,
        seed=seed,
        space=space,
        chosen=dict(winner.params),
        chosen_index=winner.index,
        model_params=dict(winner.model_params),
        options=winner.options,
        best_value=value,
        base_value=float(table[0]["objective"]),
        table=table,
        model=model,
        history=history,
        baseline_name=CONTAINS.get(name) if baseline is not None else None,
        baseline_value=None if baseline is None else float(baseline),
        seconds=time.perf_counter() - started,
    )
    if logger is not None:
        logger.info(
            "%s search: chose candidate %d %s (val_%s=%.5f)", name, winner.index, winner.params, objective, value
        )
        if result.not_worse_than_baseline is False:
            logger.warning(
                "%s search: best val_%s %.5f is worse than the contained %s's %.5f",
                name,
                objective,
                value,
                result.baseline_name,
                baseline,
            )
    return result


def table_columns(result: SearchResult) -> list[str]:
    """Column order of ``result.table`` for a markdown table: candidate, the parameters, then the outcome."""
    return ["candidate", "base", *result.space.values, "objective", "best_epoch", "epochs_run", "seconds", "chosen"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = [
    "CONTAINS",
    "DEFAULT_SPACES",
    "OPTION_PARAMETERS",
    "SEARCHABLE_MODELS",
    "Candidate",
    "SearchResult",
    "SearchSpace",
    "base_point",
    "candidates",
    "check_overrides",
    "check_space",
    "constructor_parameters",
    "default_objective",
    "resolve_space",
    "search",
    "table_columns",
    "valid_parameters",
    "validation_objective",
]
