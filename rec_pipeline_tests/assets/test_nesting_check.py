"""The "never worse than the model it contains" check of ``model_metrics``, on data where the answer is known.

Planted ratings (mean + biases + 3 latent factors + noise): a trained MF must beat the bias model it contains, and
an MF that cannot learn (learning rate ~0, factors shrunk away, not anchored) must lose to it and be flagged.
"""

from __future__ import annotations

from typing import Any

import pytest

from rec_pipeline.assets.evaluation import nesting_report
from rec_pipeline.evaluation import evaluate_model
from rec_pipeline.models import TrainOptions, create_model
from rec_pipeline_tests.models.conftest import PlantedRatings, make_planted_ratings


@pytest.fixture(scope="module")
def planted() -> PlantedRatings:
    return make_planted_ratings(seed=3)


def _validation_results(planted: PlantedRatings, **models: Any) -> dict[str, Any]:
    results = {}
    for name, model in models.items():
        validated = evaluate_model(model, planted.train, planted.validation)
        results[name] = {"metrics": validated.prefixed("val_"), "training": {}}
    return results


def _verdict(rows: list[dict[str, Any]], model: str) -> str:
    return next(row["verdict"] for row in rows if row["model"] == model)


def test_trained_mf_passes_and_an_mf_that_cannot_learn_is_flagged(planted: PlantedRatings) -> None:
    data = planted.training_data()
    global_mean, biases = create_model("global_mean"), create_model("biases")
    global_mean.fit(data)
    biases.fit(data)
    trained = create_model("mf")
    trained.fit(data, TrainOptions(epochs=15, embedding_dim=8, batch_size=128))
    crippled = create_model("mf", embedding_l2=1e6, bias_l2=1e6, anchor_biases=False)
    crippled.fit(data, TrainOptions(epochs=1, embedding_dim=2, learning_rate=1e-9))

    good = nesting_report(_validation_results(planted, global_mean=global_mean, biases=biases, mf=trained), None)
    assert _verdict(good, "mf") == "ok" and _verdict(good, "biases") == "ok"
    bad = nesting_report(_validation_results(planted, global_mean=global_mean, biases=biases, mf=crippled), None)
    assert _verdict(bad, "mf") == "violation: worse than the model it contains"
    assert _verdict(bad, "neumf") == "not judged: not evaluated"


def test_a_model_still_improving_at_its_last_epoch_is_not_judged() -> None:
    results = {
        "biases": {"metrics": {"val_rmse": 0.80}, "training": {}},
        "mf": {
            "metrics": {"val_rmse": 0.95},
            "training": {"curve_length": 5, "max_epochs": 5, "epochs_run": 5, "best_epoch": 5},
        },
    }
    assert _verdict(nesting_report(results, None), "mf").startswith("not judged: still improving")
