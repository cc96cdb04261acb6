"""The shared training loop: early stopping, determinism, logging, checkpoints and CPU fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from rec_pipeline.models import TrainOptions, create_model
from rec_pipeline.models.training import FusedAdam, pair_dataset, resolve_placement, tensorboard_available
from rec_pipeline_tests.models.conftest import PlantedRatings, rmse

pytestmark = pytest.mark.slow


def _on_tensorflow() -> bool:
    import keras

    return keras.backend.backend() == "tensorflow"


tensorflow_only = pytest.mark.skipif(not _on_tensorflow(), reason="tf.data / tf.distribute: TensorFlow backend only")

QUICK = TrainOptions(epochs=2, batch_size=128, embedding_dim=4, learning_rate=1e-2)


def _test_predictions(kind: str, planted: PlantedRatings, options: TrainOptions) -> np.ndarray:
    model = create_model(kind, hidden_units=(8,)) if kind == "ncf" else create_model(kind)
    model.fit(planted.training_data(), options)
    return model.predict(planted.test["user_id"].to_list(), planted.test["item_id"].to_list())


def test_early_stopping_restores_the_best_epoch(planted: PlantedRatings) -> None:
    # No regularization and a large step: validation error bottoms out early, then rises as MF overfits.
    options = TrainOptions(
        epochs=30, batch_size=32, embedding_dim=32, learning_rate=3e-2, l2=0.0, early_stopping_patience=3
    )
    model = create_model("mf", embedding_l2=0.0, bias_l2=0.0)
    history = model.fit(planted.training_data(), options)
    assert history.best_epoch < history.epochs_run < options.epochs
    best, last = min(history.val_rmse), history.val_rmse[-1]
    assert history.val_rmse[history.best_epoch - 1] == best and last > best + 0.01
    kept = rmse(
        model.predict(planted.validation["user_id"].to_list(), planted.validation["item_id"].to_list()),
        planted.validation,
    )
    # Clipping to 1..5 can only lower the error, so the kept model sits at or just under the best epoch.
    assert best - 0.02 < kept <= best + 1e-4


@pytest.mark.parametrize("kind", ["mf", "ncf", "autorec"])
def test_same_seed_gives_identical_predictions(kind: str, planted: PlantedRatings) -> None:
    first = _test_predictions(kind, planted, QUICK)
    assert np.array_equal(first, _test_predictions(kind, planted, QUICK))
    assert not np.array_equal(first, _test_predictions(kind, planted, TrainOptions(**{**QUICK.to_dict(), "seed": 7})))


def test_progress_goes_to_the_logger_and_checkpoints_to_their_dir(
    planted: PlantedRatings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    logger = logging.getLogger("rec_pipeline.test_training")
    options = TrainOptions(**{**QUICK.to_dict(), "checkpoint_dir": tmp_path / "ckpt"})
    with caplog.at_level(logging.INFO, logger=logger.name):
        history = create_model("mf").fit(planted.training_data(), options, logger=logger)
    assert sum("mf epoch" in message for message in caplog.messages) == history.epochs_run == 2
    assert (tmp_path / "ckpt" / "mf.best.weights.h5").is_file()
    assert history.examples_per_second > 0 and history.wall_seconds > 0 and len(history.loss) == 2


def test_tensorboard_logs_are_written_or_skipped_with_a_warning(planted: PlantedRatings, tmp_path: Path) -> None:
    options = TrainOptions(**{**QUICK.to_dict(), "epochs": 1, "tensorboard_dir": tmp_path / "tb"})
    if tensorboard_available():
        create_model("mf").fit(planted.training_data(), options)
        assert any((tmp_path / "tb" / "mf").rglob("events.out.tfevents.*"))
    else:
        with pytest.warns(RuntimeWarning, match="tensorboard"):
            history = create_model("mf").fit(planted.training_data(), options)
        assert history.epochs_run == 1


def test_mixed_precision_and_device_strategies_train_on_cpu(planted: PlantedRatings) -> None:
    for distribution in ("mirrored", "one_device"):
        assert resolve_placement(distribution).replicas >= 1
    options = TrainOptions(**{**QUICK.to_dict(), "mixed_precision": True, "distribution": "one_device"})
    predicted = _test_predictions("ncf", planted, options)
    assert np.all(np.isfinite(predicted)) and np.all((predicted >= 1) & (predicted <= 5))


def test_training_without_validation_still_fits(planted: PlantedRatings) -> None:
    model = create_model("mf")
    history = model.fit(type(planted.training_data())(planted.train), QUICK)
    assert history.val_loss == [] and history.epochs_run == 2


def _epochs(dataset: object, n: int) -> list[list[int]]:
    return [[int(i) for batch in dataset for i in np.asarray(batch)] for _ in range(n)]  # type: ignore[attr-defined]


@tensorflow_only
def test_index_batches_visit_every_example_once_per_epoch_in_a_fresh_seeded_order() -> None:
    import keras

    from rec_pipeline.models.tf_input import index_batches

    keras.utils.set_random_seed(1)
    first, second = _epochs(index_batches(10, 4, seed=3, shuffle=True), 2)
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second  # reshuffled every epoch, not one fixed order
    keras.utils.set_random_seed(1)
    assert _epochs(index_batches(10, 4, seed=3, shuffle=True), 2) == [first, second]
    keras.utils.set_random_seed(1)
    assert _epochs(index_batches(10, 4, seed=4, shuffle=True), 1)[0] != first
    assert [len(batch) for batch in index_batches(10, 4, seed=3, shuffle=True)] == [4, 4, 2]
    assert _epochs(index_batches(10, 4, seed=3, shuffle=False), 1)[0] == list(range(10))


def test_pair_dataset_keeps_features_and_targets_aligned() -> None:
    features = {"user": np.arange(7, dtype=np.int32), "item": np.arange(7, dtype=np.int32) * 10}
    targets = np.arange(7, dtype=np.float32) / 2
    dataset = pair_dataset(features, targets, 3, seed=0, shuffle=True)
    assert len(dataset) == 3
    seen = []
    for x, y in dataset:
        assert np.array_equal(np.asarray(x["item"]), np.asarray(x["user"]) * 10)
        assert np.array_equal(np.asarray(y), np.asarray(x["user"]) / 2)
        seen.extend(np.asarray(x["user"]).tolist())
    assert sorted(seen) == list(range(7))


def test_fused_adam_takes_keras_adam_steps() -> None:
    import keras

    rng = np.random.default_rng(0)
    start, gradients = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(4, 5, 3)).astype(np.float32)
    finals = []
    for optimizer in (keras.optimizers.Adam(0.1), FusedAdam(0.1)):
        variable = keras.Variable(start)
        for gradient in gradients:
            optimizer.apply_gradients([(gradient, variable)])
        finals.append(np.asarray(variable))
    assert np.allclose(finals[0], finals[1], atol=1e-6) and not np.allclose(finals[0], start)


def test_history_times_every_epoch(planted: PlantedRatings) -> None:
    history = create_model("mf").fit(planted.training_data(), QUICK)
    assert len(history.epoch_seconds) == history.epochs_run == 2
    assert all(seconds > 0 for seconds in history.epoch_seconds)
    assert sum(history.epoch_seconds) <= history.wall_seconds


def test_autorec_feeds_sparse_rows_and_scores_observed_cells_only(planted: PlantedRatings) -> None:
    # A dense batch would be rows x every column; these inputs hold only the batch's observed cells.
    model = create_model("autorec", hidden_units=(8, 4))
    model.fit(planted.training_data(), QUICK)
    inputs = {tensor.name: tensor for tensor in model._network.inputs}  # type: ignore[attr-defined]
    assert inputs["ratings"].sparse and set(inputs) == {"ratings", "cell_rows", "cell_columns"}
    assert model._network.output.shape == (None,)  # type: ignore[attr-defined]
