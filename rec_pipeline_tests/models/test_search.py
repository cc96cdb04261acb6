"""The seeded hyperparameter search: spaces checked against the model classes, seeded candidates, the winner known.

Training is kept to MF (and one short two-tower run) on the planted data; the selection logic itself is checked
with an instant fake model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rec_pipeline.models import TrainOptions, create_model
from rec_pipeline.models import search as search_module
from rec_pipeline.models.base import Recommender
from rec_pipeline.models.data import TrainingData, TrainingHistory
from rec_pipeline.models.search import (
    DEFAULT_SPACES,
    SEARCHABLE_MODELS,
    SearchSpace,
    candidates,
    check_overrides,
    constructor_parameters,
    default_objective,
    resolve_space,
    search,
    table_columns,
    valid_parameters,
    validation_objective,
)
from rec_pipeline_tests.models.conftest import PlantedRatings

# Few epochs and a large step: each MF candidate trains in about a second on the planted data.
QUICK = TrainOptions(epochs=5, batch_size=512, embedding_dim=1, learning_rate=2e-2, early_stopping_patience=2)
# The planted ratings have 3-d factors: one dimension under-fits, and an L2 of 3 per rating pins the factors to 0.
KNOWN = SearchSpace({"embedding_dim": [1, 8], "embedding_l2": [0.02, 3.0]}, max_candidates=4)


def _without_seconds(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{key: value for key, value in row.items() if key != "seconds"} for row in table]


# ----- spaces ------------------------------------------------------------------------------------------------------
def test_default_spaces_are_small_valid_and_cover_every_searchable_model() -> None:
    assert set(DEFAULT_SPACES) == set(SEARCHABLE_MODELS) and "hybrid_seed000" not in DEFAULT_SPACES
    for name, space in DEFAULT_SPACES.items():
        assert 2 <= space.max_candidates <= 4
        assert set(space.values) <= set(valid_parameters(name)), name
        assert len(candidates(name, space, seed=0)) == space.max_candidates


def test_unknown_parameter_fails_naming_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown parameter 'embeding_dim'.*valid: \[.*'embedding_dim'.*'embedding_l2'"
    ):
        resolve_space("mf", {"mf": {"embeding_dim": [8, 16]}})
    # Constructor arguments come from the class signature, training options from TrainOptions.
    assert {"embedding_l2", "bias_l2"} <= set(constructor_parameters("mf"))
    assert {"embedding_dim", "learning_rate", "embedding_l2", "bias_l2"} <= set(valid_parameters("mf"))
    assert "hidden_units" in valid_parameters("neumf") and "user_dropout" in valid_parameters("two_tower")


@pytest.mark.parametrize(
    ("name", "entry", "message"),
    [
        ("mf", {"dropout": [0.1, 0.2]}, "no effect"),
        ("mf", {"l2": [1e-4, 1e-3]}, "no effect while embedding_l2 and bias_l2"),
        ("autorec", {"embedding_dim": [8, 16]}, "hidden_units"),
        ("two_tower", {"l2": [1e-4]}, "embedding_l2"),
        ("ncf", {"epochs": [5, 10]}, "early stopping"),
        ("hybrid_seed000", {"embedding_dim": [8]}, "frozen"),
        ("biases", {"user_reg": [1.0]}, "not a Keras model"),
        ("nope", {}, "unknown model"),
    ],
)
def test_parameters_a_model_ignores_and_models_not_searched_are_refused(
    name: str, entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check_overrides({name: entry})


def test_settings_override_listed_parameters_and_keep_the_rest() -> None:
    space = resolve_space("mf", {"mf": {"embedding_dim": [8, 16], "learning_rate": [], "max_candidates": 2}})
    assert space.values["embedding_dim"] == [8, 16] and "learning_rate" not in space.values
    assert space.values["embedding_l2"] == DEFAULT_SPACES["mf"].values["embedding_l2"] and space.max_candidates == 2
    # MF reads options.l2 once a per-example penalty is switched off.
    assert "l2" in resolve_space("mf", {"mf": {"l2": [1e-4, 1e-3], "embedding_l2": [None], "bias_l2": [None]}}).values


def test_an_invalid_value_fails_before_any_training() -> None:
    with pytest.raises(ValueError, match="invalid"):
        candidates("ncf", SearchSpace({"dropout": [1.5]}), seed=0)


# ----- candidates --------------------------------------------------------------------------------------------------
def test_candidates_start_with_the_base_and_follow_a_seeded_order() -> None:
    space = DEFAULT_SPACES["mf"]
    options = TrainOptions(embedding_dim=32)
    first = candidates("mf", space, options, seed=3)
    # The base: what the model trains with untuned (learning_rate None resolves to the model's default).
    assert first[0].is_base and first[0].params == {
        "bias_l2": 0.001,
        "embedding_dim": 32,
        "embedding_l2": 0.05,
        "learning_rate": 5e-3,
    }
    assert [c.params for c in candidates("mf", space, options, seed=3)] == [c.params for c in first]
    orders = {tuple(str(c.params) for c in candidates("mf", space, options, seed=seed)) for seed in range(6)}
    assert len(orders) > 1
    keys = [str(c.params) for c in first]
    assert len(set(keys)) == len(keys) == space.max_candidates
    assert all(not c.is_base for c in first[1:])
    # Values split into constructor arguments and training options.
    assert first[1].options.embedding_dim == first[1].params["embedding_dim"]
    assert first[1].model_params == {
        "bias_l2": first[1].params["bias_l2"],
        "embedding_l2": first[1].params["embedding_l2"],
    }


def test_each_candidate_checkpoints_and_logs_in_its_own_directory(tmp_path: Path) -> None:
    options = TrainOptions(checkpoint_dir=tmp_path / "ckpt", tensorboard_dir=tmp_path / "tb")
    drawn = candidates("ncf", DEFAULT_SPACES["ncf"], options, seed=0)
    assert [c.options.checkpoint_dir for c in drawn] == [tmp_path / "ckpt" / f"candidate_{i:02d}" for i in range(3)]
    assert drawn[2].options.tensorboard_dir == tmp_path / "tb" / "candidate_02"


def test_a_larger_budget_extends_the_candidates_without_reshuffling_them() -> None:
    space = DEFAULT_SPACES["ncf"]
    few = candidates("ncf", SearchSpace(space.values, 2), seed=11)
    many = candidates("ncf", SearchSpace(space.values, 6), seed=11)
    assert [c.params for c in many[:2]] == [c.params for c in few]


def test_a_grid_smaller_than_the_budget_is_searched_whole() -> None:
    drawn = candidates("mf", KNOWN, QUICK, {"embedding_l2": 3.0}, seed=0)
    assert sorted((c.params["embedding_dim"], c.params["embedding_l2"]) for c in drawn) == [
        (1, 0.02),
        (1, 3.0),
        (8, 0.02),
        (8, 3.0),
    ]


# ----- selection (an instant fake model) ---------------------------------------------------------------------------
class _Fake(Recommender):
    """Scores nothing; ``search`` sees only its history and the objective the test patches in."""

    kind = "mf"

    def __init__(self, embedding_l2: float | None = None, bias_l2: float | None = None) -> None:
        super().__init__()

    def fit(
        self, data: TrainingData, options: TrainOptions | None = None, logger: logging.Logger | None = None
    ) -> TrainingHistory:
        self._options = options
        return TrainingHistory(best_epoch=1, epochs_run=2)

    def predict(self, user_ids: Sequence[str], item_ids: Sequence[str]) -> np.ndarray:
        return np.zeros(len(user_ids), np.float32)

    def score_users(self, user_ids: Sequence[str]) -> np.ndarray:
        return np.zeros((len(user_ids), 0), np.float32)

    def _save_state(self, directory: Path) -> None:
        pass

    def _load_state(self, directory: Path) -> None:
        pass


@pytest.mark.parametrize(("objective", "expected"), [("rmse", 16), ("ndcg@10", 64)])
def test_selection_follows_the_objective_direction_and_ties_keep_the_earlier(
    objective: str, expected: int, planted: PlantedRatings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(search_module, "_create_model", lambda name, **params: _Fake(**params))
    value_of = {16: 1.0, 32: 2.0, 64: 3.0, 8: 2.0}
    monkeypatch.setattr(
        search_module, "validation_objective", lambda model, *args, **kwargs: value_of[model.options.embedding_dim]
    )
    space = SearchSpace({"embedding_dim": [8, 16, 32, 64]}, max_candidates=4)
    result = search("mf", space, planted.training_data(), TrainOptions(embedding_dim=32), objective=objective)
    assert result.chosen == {"embedding_dim": expected} and result.options.embedding_dim == expected
    assert sum(row["chosen"] for row in result.table) == 1 and result.table[0]["base"]
    assert result.higher_is_better is (objective != "rmse")
    # All tie (8 and 32 both score 2): the base, trained first, stays chosen.
    monkeypatch.setattr(search_module, "validation_objective", lambda *args, **kwargs: 2.0)
    tied = search("mf", space, planted.training_data(), TrainOptions(embedding_dim=32), seed=5, objective=objective)
    assert tied.chosen_index == 0 and tied.chosen == {"embedding_dim": 32}


def test_objectives_default_by_how_a_model_is_trained() -> None:
    assert default_objective("two_tower") == "ndcg@10"
    assert {default_objective(name) for name in ("mf", "ncf", "neumf", "hybrid", "autorec")} == {"rmse"}


# ----- real searches -----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_mf_search_finds_the_known_winner_beats_biases_and_repeats(planted: PlantedRatings) -> None:
    data = planted.training_data()
    biases = create_model("biases")
    biases.fit(data)
    baseline = validation_objective(biases, planted.train, planted.validation, "rmse")
    result = search("mf", KNOWN, data, QUICK, seed=0, model_params={"embedding_l2": 3.0}, baseline=baseline)
    assert result.chosen == {"embedding_dim": 8, "embedding_l2": 0.02}
    assert result.table[0]["base"] and result.table[0]["embedding_dim"] == 1 and len(result.table) == 4
    assert result.best_value == min(row["objective"] for row in result.table) < result.base_value - 0.1
    assert set(table_columns(result)) == set(result.table[0]) and result.to_dict()["columns"] == table_columns(result)
    assert json.loads(json.dumps(result.to_dict()))["chosen"] == result.chosen
    assert all(1 <= row["best_epoch"] <= row["epochs_run"] <= QUICK.epochs for row in result.table)
    # The winner comes back fitted: no refit, and it scores exactly what the table says.
    assert validation_objective(result.model, planted.train, planted.validation, "rmse") == result.best_value
    assert result.model.get_config()["embedding_l2"] == 0.02 and result.options.embedding_dim == 8
    # MF contains the bias model: tuned, it must not be worse on validation.
    assert result.not_worse_than_baseline and result.to_dict()["baseline"] == "biases"
    # Same seed, same rows (seconds aside): a rerun of the first two candidates (a larger budget only appends).
    again = search("mf", SearchSpace(KNOWN.values, 2), data, QUICK, seed=0, model_params={"embedding_l2": 3.0})
    first_two = [{**row, "chosen": row["candidate"] == again.chosen_index} for row in _without_seconds(result.table)]
    assert _without_seconds(again.table) == first_two[:2]


@pytest.mark.slow
def test_two_tower_search_is_judged_on_validation_ndcg(planted: PlantedRatings) -> None:
    options = TrainOptions(epochs=2, batch_size=256, embedding_dim=8, early_stopping_patience=1)
    space = SearchSpace({"embedding_dim": [8, 16]}, max_candidates=2)
    result = search("two_tower", space, planted.training_data(), options, seed=0, model_params={"n_negatives": 32})
    assert result.objective == "ndcg@10" and result.higher_is_better
    assert result.best_value == max(row["objective"] for row in result.table)
    assert validation_objective(result.model, planted.train, planted.validation, "ndcg@10") == result.best_value
