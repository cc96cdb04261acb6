"""Keras backends: every Keras model trains on JAX as on TensorFlow; the backend setting; batch-size/LR scaling.

The cross-backend test fits each Keras model on the planted data in a subprocess with ``KERAS_BACKEND=jax`` (Keras
fixes its backend at import, so one process cannot run both) and compares its metric with TensorFlow's on the
same data and settings. The backends draw different random numbers (initial weights, dropout, shuffles), so the
results agree within a tolerance, not exactly; both must also clearly beat the global mean.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rec_pipeline.models.data import Backend, TrainingData, TrainOptions

REPO = Path(__file__).resolve().parents[2]
KERAS_KINDS = ("mf", "ncf", "neumf", "hybrid", "hybrid_seed000", "autorec", "two_tower")
CONTENT_KINDS = {"hybrid", "hybrid_seed000", "two_tower"}
# Small models, one size for both backends; a batch of 512 gives ~7 steps per epoch on the planted data.
OPTIONS = TrainOptions(epochs=8, batch_size=512, embedding_dim=8, learning_rate=1e-2, early_stopping_patience=0)
CONFIGS: dict[str, dict[str, Any]] = {"ncf": {"hidden_units": [16, 8]}, "autorec": {"hidden_units": [16, 8]}}
# |metric(jax) - metric(tensorflow)| <= RELATIVE x metric(tensorflow): different random streams, same model.
RELATIVE = 0.15


def fit_models(kinds: tuple[str, ...] = KERAS_KINDS) -> dict[str, Any]:
    """Fit ``kinds`` on the planted data on this process's backend: test RMSE per rating model, the last epoch's
    loss for the two-tower ranker; also the global mean's RMSE and, with several CPU devices, a data-parallel MF.

    No validation split (no early stopping either): each distinct batch shape costs JAX one more compilation."""
    import keras

    from rec_pipeline.models import create_model
    from rec_pipeline_tests.models.conftest import make_planted_ratings, rmse

    planted = make_planted_ratings()
    # Whole batches only: on JAX every distinct batch shape is one more XLA compilation, the bulk of this test.
    data = TrainingData(planted.train.head(planted.train.height - planted.train.height % OPTIONS.batch_size))
    with_content = dataclasses.replace(data, content=planted.content)
    users, items = planted.test["user_id"].to_list(), planted.test["item_id"].to_list()
    out: dict[str, Any] = {
        "backend": keras.backend.backend(),
        "global_mean": rmse(np.full(planted.test.height, planted.train["rating"].mean()), planted.test),
    }
    for kind in kinds:
        model = create_model(kind, **CONFIGS.get(kind, {}))
        history = model.fit(with_content if kind in CONTENT_KINDS else data, OPTIONS)
        if kind == "two_tower":
            out[kind] = history.loss[-1]
            assert np.isfinite(model.ranking_scores(users[:3])).all()
        else:
            out[kind] = rmse(model.predict(users, items), planted.test)
    if keras.backend.backend() == "jax" and len(keras.distribution.list_devices("cpu")) > 1:
        model = create_model("mf")
        # Per-replica batches of half the size: the same global batch, so the same steps, as the others.
        split = dataclasses.replace(OPTIONS, distribution="mirrored", batch_size=OPTIONS.batch_size // 2)
        model.fit(data, split)
        out["mf_data_parallel"] = rmse(model.predict(users, items), planted.test)
    return out


def _jax_available() -> bool:
    return importlib.util.find_spec("jax") is not None


def _start(backend: str, extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``fit_models()`` in a new process with ``KERAS_BACKEND=backend``; ``_result`` collects it."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", **(extra_env or {})}
    code = "import json; from rec_pipeline_tests.models import test_backends as t; print(json.dumps(t.fit_models()))"
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _result(process: subprocess.Popen[str]) -> dict[str, Any]:
    try:
        stdout, stderr = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, stderr[-4000:]
    return dict(json.loads(stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_every_keras_model_trains_on_jax_as_on_tensorflow() -> None:
    if not _jax_available():
        pytest.skip("jax is not installed (pip install 'jax>=0.4'): the JAX backend cannot be tested")
    import keras

    # Two CPU devices let the same run check keras.distribution.DataParallel (distribution="mirrored").
    # The TensorFlow reference trains here (or in a second process) meanwhile: the JAX run is mostly compiling.
    jax_run = _start("jax", {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    try:
        tensorflow = fit_models() if keras.backend.backend() == "tensorflow" else _result(_start("tensorflow"))
    finally:
        jax = _result(jax_run)
    assert jax["backend"] == "jax" and tensorflow["backend"] == "tensorflow"
    for kind in KERAS_KINDS:
        assert np.isfinite(jax[kind]), kind
        assert abs(jax[kind] - tensorflow[kind]) <= RELATIVE * tensorflow[kind], (kind, jax[kind], tensorflow[kind])
        if kind != "two_tower":
            assert jax[kind] < jax["global_mean"], (kind, jax[kind])
    # Data parallel over two devices with the same global batch: the single-device run's result.
    assert jax["mf_data_parallel"] == pytest.approx(jax["mf"], rel=1e-3)


# ----- the backend setting -------------------------------------------------------------------------------------


def test_a_backend_other_than_the_running_one_fails_naming_keras_backend() -> None:
    import keras

    from rec_pipeline.models.backend import BackendMismatch, check_backend, use_backend

    running = keras.backend.backend()
    assert use_backend(running) == running
    other = "jax" if running != "jax" else "tensorflow"
    with pytest.raises(BackendMismatch, match=f"KERAS_BACKEND={other}"):
        use_backend(other)
    with pytest.raises(ValueError, match="unknown Keras backend"):
        use_backend("theano")
    check_backend(running)
    with pytest.raises(ValueError, match="unknown backend"):
        TrainOptions(backend="theano")  # type: ignore[arg-type]


def test_fit_checks_the_backend_option() -> None:
    import keras

    from rec_pipeline.models import create_model
    from rec_pipeline.models.backend import BackendMismatch
    from rec_pipeline_tests.models.conftest import make_planted_ratings

    other: Backend = "jax" if keras.backend.backend() != "jax" else "tensorflow"
    with pytest.raises(BackendMismatch, match="KERAS_BACKEND"):
        create_model("mf").fit(make_planted_ratings().training_data(), TrainOptions(epochs=1, backend=other))


def test_the_package_and_the_backend_module_import_no_keras_so_a_step_can_still_choose() -> None:
    code = (
        "import sys, rec_pipeline.models.backend; from rec_pipeline.models import ModelNotApplicable, TrainingData, "
        "TrainOptions, create_model; assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules"
    )
    env = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


# ----- batch size and learning rate --------------------------------------------------------------------------


def test_linear_scaling_multiplies_the_rate_by_the_batch_ratio_and_caps_it() -> None:
    linear = TrainOptions(learning_rate_scaling="linear", reference_batch_size=256)
    assert linear.scaled_learning_rate(1e-3, 256) == pytest.approx(1e-3)
    assert linear.scaled_learning_rate(1e-3, 1024) == pytest.approx(4e-3)
    assert linear.scaled_learning_rate(1e-3, 128) == pytest.approx(5e-4)
    capped = TrainOptions(learning_rate_scaling="linear", max_learning_rate=2e-3)
    assert capped.scaled_learning_rate(1e-3, 4096) == pytest.approx(2e-3)
    sqrt = TrainOptions(learning_rate_scaling="sqrt")
    assert sqrt.scaled_learning_rate(1e-3, 1024) == pytest.approx(2e-3)
    # The default keeps every rate as tuned, whatever the batch size.
    assert TrainOptions().scaled_learning_rate(1e-3, 4096) == 1e-3
    with pytest.raises(ValueError):
        TrainOptions(learning_rate_scaling="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        TrainOptions(reference_batch_size=0)


def test_the_optimizer_rate_is_scaled_to_the_global_batch_and_warmed_up() -> None:
    import keras

    from rec_pipeline.models.training import ScaledLearningRate, training_learning_rate

    plain = TrainOptions()
    assert training_learning_rate(plain, 5e-3, 4096) == 5e-3  # unchanged: a plain float
    # Four replicas of 256: a global batch of 1024, four times the reference.
    linear = TrainOptions(learning_rate=1e-3, learning_rate_scaling="linear", warmup_steps=4)
    schedule = training_learning_rate(linear, 5e-3, 1024)
    assert isinstance(schedule, ScaledLearningRate)
    rates = [float(keras.ops.convert_to_numpy(schedule(step))) for step in range(6)]
    assert rates == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3, 4e-3, 4e-3])
    # A model's own schedule (hybrid_seed000's decay) is scaled, not replaced, and survives serialization.
    decay = keras.optimizers.schedules.InverseTimeDecay(1e-2, decay_steps=1, decay_rate=0.5)
    scaled = training_learning_rate(TrainOptions(learning_rate_scaling="linear"), decay, 512)
    assert isinstance(scaled, ScaledLearningRate)
    assert float(keras.ops.convert_to_numpy(scaled(2))) == pytest.approx(2 * 1e-2 / 2)
    restored = ScaledLearningRate.from_config(scaled.get_config())
    assert float(keras.ops.convert_to_numpy(restored(2))) == pytest.approx(1e-2)


def test_array_batches_visit_every_example_once_per_epoch_in_a_fresh_seeded_order() -> None:
    from rec_pipeline.models.training import ArrayBatches

    def epochs(batches: ArrayBatches, n: int) -> list[list[int]]:
        return [[int(i) for batch in batches for i in batch] for _ in range(n)]

    first, second = epochs(ArrayBatches(10, 4, seed=3, shuffle=True, make_batch=lambda rows: rows), 2)
    assert sorted(first) == sorted(second) == list(range(10)) and first != second
    assert epochs(ArrayBatches(10, 4, seed=3, shuffle=True, make_batch=lambda rows: rows), 2) == [first, second]
    assert epochs(ArrayBatches(10, 4, seed=4, shuffle=True, make_batch=lambda rows: rows), 1)[0] != first
    batches = ArrayBatches(10, 4, seed=3, shuffle=False, make_batch=lambda rows: rows)
    assert [len(batch) for batch in batches] == [4, 4, 2] and epochs(batches, 1)[0] == list(range(10))
    # Data-parallel: the last batch trimmed to a multiple of the device count, or dropped when nothing remains.
    assert [len(batch) for batch in ArrayBatches(11, 4, 3, True, lambda rows: rows, multiple_of=2)] == [4, 4, 2]
    assert len(ArrayBatches(10, 4, seed=3, shuffle=True, make_batch=lambda rows: rows, multiple_of=4)) == 2
