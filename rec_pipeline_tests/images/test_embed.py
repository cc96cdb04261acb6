"""CNN image embeddings: real Keras models (a tiny saved one, a small random MobileNetV3Small), real image files."""

from __future__ import annotations

import hashlib
import logging
import socket
import struct
import subprocess
import sys
import threading
import urllib.error
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

keras = pytest.importorskip("keras")
h5py = pytest.importorskip("h5py")

from rec_pipeline.images.embed import (  # noqa: E402  (after the importorskip guards)
    EmbeddingOptions,
    EmbeddingWeightsError,
    build_embedder,
    embed_images,
    embedder_fingerprint,
    file_sha256,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
SMALL = 32  # MobileNetV3Small's smallest input: keeps the real backbone cheap on a shared CPU


def write_image(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (40, 40), mode: str = "RGB") -> Path:
    image = Image.new("RGB", size, color)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    return {
        "red": write_image(folder / "red.png", (220, 20, 20)),
        "blue": write_image(folder / "blue.jpg", (20, 20, 220)),
        "red_wide": write_image(folder / "red_wide.png", (220, 20, 20), size=(64, 16)),
        "gray": write_image(folder / "gray.png", (128, 128, 128), mode="L"),
        "rgba": write_image(folder / "rgba.png", (20, 200, 20), mode="RGBA"),
        "corrupt": corrupt,
        "missing": folder / "missing.png",
    }


@pytest.fixture(scope="module")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16x16-input Conv2D + global pooling model with fixed weights, saved as .keras like a user's model."""
    inputs = keras.Input((16, 16, 3))
    conv = keras.layers.Conv2D(4, 3, kernel_initializer=keras.initializers.GlorotUniform(seed=1), name="conv")
    rescaled = keras.layers.Rescaling(1 / 255.0)(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(conv(rescaled)), name="tiny")
    path = tmp_path_factory.mktemp("models") / "tiny.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def tiny_embedder(tiny_model_path: Path) -> keras.Model:
    return build_embedder(EmbeddingOptions(model_path=str(tiny_model_path)))


def tiny_options(tiny_model_path: Path, **overrides: object) -> EmbeddingOptions:
    return EmbeddingOptions(**{"model_path": str(tiny_model_path), "batch_size": 2, **overrides})


def random_options(**overrides: object) -> EmbeddingOptions:
    return EmbeddingOptions(**{"weights": "random", "image_size": SMALL, "batch_size": 4, **overrides})


@pytest.fixture(scope="module")
def random_embedder() -> keras.Model:
    return build_embedder(random_options())


# --- embedding through a saved model ---------------------------------------------------------------------


def test_saved_model_gives_one_row_per_image_of_the_model_output_size(tiny_model_path, tiny_embedder, images):
    vectors, mask = embed_images(
        [images["red"], images["blue"], images["gray"]], tiny_embedder, tiny_options(tiny_model_path)
    )
    assert vectors.shape == (3, 4)
    assert vectors.dtype == np.float32
    assert mask.tolist() == [True, True, True]
    assert np.isfinite(vectors).all()


def test_embeddings_are_identical_across_runs(tiny_model_path, tiny_embedder, images):
    paths = [images["red"], images["blue"]]
    first, _ = embed_images(paths, tiny_embedder, tiny_options(tiny_model_path))
    again, _ = embed_images(
        paths, build_embedder(tiny_options(tiny_model_path)), tiny_options(tiny_model_path, batch_size=7)
    )
    np.testing.assert_array_equal(first, again)


def test_red_and_blue_images_get_different_vectors_and_same_colour_the_same(tiny_model_path, tiny_embedder, images):
    vectors, _ = embed_images(
        [images["red"], images["blue"], images["red_wide"]], tiny_embedder, tiny_options(tiny_model_path)
    )
    red, blue, red_wide = vectors
    assert np.linalg.norm(red - blue) > 0.05
    # A plain-coloured image stays the same colour whatever its size, so resizing must not change its vector much.
    np.testing.assert_allclose(red, red_wide, atol=1e-4)


def test_grayscale_and_transparent_images_are_read_as_rgb(tiny_model_path, tiny_embedder, images):
    _, mask = embed_images([images["gray"], images["rgba"]], tiny_embedder, tiny_options(tiny_model_path))
    assert mask.all()


def test_unreadable_files_give_zero_rows_and_false_mask_without_shifting_the_others(
    tiny_model_path, tiny_embedder, images
):
    good = [images["red"], images["blue"], images["gray"]]
    expected, _ = embed_images(good, tiny_embedder, tiny_options(tiny_model_path))
    mixed = [
        images["corrupt"],
        images["red"],
        images["missing"],
        None,
        images["blue"],
        images["gray"],
        images["corrupt"],
    ]
    vectors, mask = embed_images(
        mixed, tiny_embedder, tiny_options(tiny_model_path)
    )  # batch_size 2: failures span batches
    assert mask.tolist() == [False, True, False, False, True, True, False]
    np.testing.assert_array_equal(vectors[~mask], 0.0)
    np.testing.assert_array_equal(vectors[mask], expected)


def test_paths_may_be_strings(tiny_model_path, tiny_embedder, images):
    vectors, mask = embed_images([str(images["red"])], tiny_embedder, tiny_options(tiny_model_path))
    assert mask.tolist() == [True] and vectors.shape == (1, 4)


def test_no_paths_give_empty_arrays_with_the_embedding_width(tiny_model_path, tiny_embedder):
    vectors, mask = embed_images([], tiny_embedder, tiny_options(tiny_model_path))
    assert vectors.shape == (0, 4) and mask.shape == (0,)


def test_progress_and_unreadable_files_are_reported_to_the_given_logger(tiny_model_path, tiny_embedder, images, caplog):
    logger = logging.getLogger("rec_pipeline_tests.embed")
    with caplog.at_level(logging.INFO, logger="rec_pipeline_tests.embed"):
        embed_images([images["red"], images["corrupt"]], tiny_embedder, tiny_options(tiny_model_path), logger=logger)
    messages = [r.getMessage() for r in caplog.records if r.name == "rec_pipeline_tests.embed"]
    assert any("embedded 1 of 2 images" in m for m in messages)
    assert any("1 images could not be read" in m and "corrupt.png" in m for m in messages)


def test_projection_on_a_saved_model_gives_the_configured_size_reproducibly(tiny_model_path, images):
    paths = [images["red"], images["blue"]]
    a, _ = embed_images(
        paths, build_embedder(tiny_options(tiny_model_path, projection_dim=8, seed=3)), tiny_options(tiny_model_path)
    )
    b, _ = embed_images(
        paths, build_embedder(tiny_options(tiny_model_path, projection_dim=8, seed=3)), tiny_options(tiny_model_path)
    )
    c, _ = embed_images(
        paths, build_embedder(tiny_options(tiny_model_path, projection_dim=8, seed=4)), tiny_options(tiny_model_path)
    )
    assert a.shape == (2, 8)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


# --- keras.applications backbone ---------------------------------------------------------------------------


def test_random_backbone_builds_pooled_features_of_the_backbone_width(random_embedder, images):
    vectors, mask = embed_images([images["red"], images["blue"]], random_embedder, random_options())
    assert random_embedder.input_shape == (None, SMALL, SMALL, 3)
    assert vectors.shape == (2, 576)  # MobileNetV3Small's last conv width, globally average-pooled
    assert mask.all() and np.isfinite(vectors).all()


def test_random_backbone_is_reproducible_for_a_seed_and_differs_across_seeds(random_embedder):
    same = build_embedder(random_options())
    other = build_embedder(random_options(seed=1))
    weights, same_weights, other_weights = random_embedder.get_weights(), same.get_weights(), other.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(weights, same_weights, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(weights, other_weights, strict=True))


def test_building_a_seeded_backbone_leaves_python_random_state_alone():
    import random

    random.seed(123)
    expected = random.random()
    random.seed(123)
    build_embedder(random_options(backbone="MobileNetV3Small"))
    assert random.random() == expected


def test_local_weights_file_is_loaded_exactly(random_embedder, tmp_path, images):
    weights_file = tmp_path / "mobilenet_v3_small_notop.weights.h5"
    random_embedder.get_layer("MobileNetV3Small").save_weights(weights_file)
    loaded = build_embedder(random_options(weights=str(weights_file), seed=7))  # seed 7 init must be overwritten
    paths = [images["red"], images["blue"]]
    np.testing.assert_array_equal(
        embed_images(paths, loaded, random_options())[0], embed_images(paths, random_embedder, random_options())[0]
    )


class RefusingProxy:
    """A 127.0.0.1 port that counts connections and resets each one at once: to the client it is a closed port
    (the connection fails straight away, as offline), but unlike a closed port it can say how often it was tried."""

    def __init__(self) -> None:
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = self._listener.getsockname()[1]

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.connections += 1
            # SO_LINGER 0: close with a reset, the nearest a listening socket gets to a refused connection.
            connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            connection.close()

    @contextmanager
    def running(self) -> Iterator[RefusingProxy]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)
            self._listener.close()


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what it was raised from or while handling (Keras re-raises urllib's error as ``Exception``)."""
    current: BaseException | None = error
    while current is not None:
        yield current
        current = current.__cause__ or current.__context__


# Hang guard, not a timing assertion: the build of MobileNetV3Small takes seconds, a download that waited for
# a network that never answers would take forever.
@pytest.mark.timeout(300)
def test_imagenet_weights_offline_fail_fast_naming_the_settings_to_use(tmp_path, monkeypatch):
    # Keep the test on this machine: an empty Keras cache, and every download routed through a local "proxy" that
    # refuses each connection, so the download fails the way it does offline without a packet leaving 127.0.0.1.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    options = EmbeddingOptions(backbone="MobileNetV3Small", weights="imagenet", image_size=224)
    with RefusingProxy().running() as proxy:
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        with pytest.raises(EmbeddingWeightsError) as raised:
            build_embedder(options)
    # Failing fast means one try: a download retried (or looped) until something gave up would show here.
    assert proxy.connections == 1
    # The error is the download's (urllib could not connect), not a later step's, such as a hash or HDF5 check.
    assert any(isinstance(cause, urllib.error.URLError) for cause in _causes(raised.value))
    assert not list((tmp_path / "keras" / "models").glob("*.h5"))  # nothing half-downloaded left in the cache
    message = str(raised.value)
    assert "weights='imagenet'" in message
    assert 'weights="random"' in message and "weights=<path" in message and "model_path=" in message
    assert "storage.googleapis.com" in message  # the underlying cause is kept


def test_missing_local_weights_file_raises_naming_the_settings(tmp_path):
    with pytest.raises(EmbeddingWeightsError, match=r"weights file not found.*weights=\"random\".*model_path="):
        build_embedder(random_options(weights=str(tmp_path / "nope.weights.h5")))


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")  # Keras warns, then we raise
def test_weights_of_another_architecture_raise_instead_of_loading(tmp_path, tiny_model_path):
    weights_file = tmp_path / "tiny.weights.h5"
    keras.saving.load_model(tiny_model_path).save_weights(weights_file)
    with pytest.raises(EmbeddingWeightsError, match=r"could not load weights=.*MobileNetV3Small.*weights=\"random\""):
        build_embedder(random_options(weights=str(weights_file)))


@pytest.mark.filterwarnings("ignore:Skipping nested container:UserWarning")  # Keras warns, then we raise
def test_weights_file_missing_a_layer_raises_instead_of_keeping_random_values(random_embedder, tmp_path):
    weights_file = tmp_path / "partial.weights.h5"
    random_embedder.get_layer("MobileNetV3Small").save_weights(weights_file)
    with h5py.File(weights_file, "r+") as handle:
        layer_with_variables = next(name for name in handle["layers"] if len(handle["layers"][name]["vars"]))
        del handle["layers"][layer_with_variables]
    with pytest.raises(EmbeddingWeightsError, match="could not load weights="):
        build_embedder(random_options(weights=str(weights_file)))


def test_weights_file_with_nan_values_raises(random_embedder, tmp_path):
    weights_file = tmp_path / "nan.weights.h5"
    random_embedder.get_layer("MobileNetV3Small").save_weights(weights_file)
    with h5py.File(weights_file, "r+") as handle:
        kernel = handle["layers"]["conv2d"]["vars"]["0"]
        kernel[...] = np.full(kernel.shape, np.nan, dtype=kernel.dtype)
    with pytest.raises(EmbeddingWeightsError, match=r"1 of \d+ weight tensors are NaN after loading"):
        build_embedder(random_options(weights=str(weights_file)))


def test_corrupt_weights_file_raises(tmp_path):
    weights_file = tmp_path / "corrupt.weights.h5"
    weights_file.write_bytes(b"not hdf5")
    with pytest.raises(EmbeddingWeightsError, match="could not load weights="):
        build_embedder(random_options(weights=str(weights_file)))


def test_missing_or_corrupt_saved_model_raises_naming_model_path(tmp_path):
    with pytest.raises(EmbeddingWeightsError, match="model_path="):
        build_embedder(EmbeddingOptions(model_path=str(tmp_path / "absent.keras")))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip archive")
    with pytest.raises(EmbeddingWeightsError, match="could not load the saved embedding model model_path="):
        build_embedder(EmbeddingOptions(model_path=str(corrupt)))


def test_saved_model_with_unpooled_output_is_rejected(tmp_path):
    inputs = keras.Input((8, 8, 3))
    path = tmp_path / "feature_map.keras"
    keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs)).save(path)
    with pytest.raises(ValueError, match=r"\[batch, d\]"):
        build_embedder(EmbeddingOptions(model_path=str(path)))


def test_unknown_backbone_is_a_configuration_error_listing_known_ones():
    with pytest.raises(ValueError, match=r"unknown backbone='NotANet'.*MobileNetV3Small"):
        build_embedder(random_options(backbone="NotANet"))


@pytest.mark.parametrize("field, value", [("batch_size", 0), ("image_size", 0), ("projection_dim", 0)])
def test_options_reject_non_positive_sizes(field, value):
    with pytest.raises(ValueError, match=field):
        EmbeddingOptions(**{field: value})


# --- fingerprint -------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_short():
    assert embedder_fingerprint(EmbeddingOptions()) == embedder_fingerprint(EmbeddingOptions())
    assert len(embedder_fingerprint(EmbeddingOptions())) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"backbone": "EfficientNetB0"},
        {"weights": "random"},
        {"image_size": 192},
        {"projection_dim": 512},
    ],
)
def test_fingerprint_changes_with_options_that_change_vectors(change):
    assert embedder_fingerprint(EmbeddingOptions(**change)) != embedder_fingerprint(EmbeddingOptions())


def test_fingerprint_follows_the_seed_only_where_the_seed_matters():
    assert embedder_fingerprint(random_options(seed=1)) != embedder_fingerprint(random_options(seed=2))
    projected = EmbeddingOptions(projection_dim=64)
    assert embedder_fingerprint(projected) != embedder_fingerprint(EmbeddingOptions(projection_dim=64, seed=9))
    # ImageNet weights without a projection are the same whatever the seed: no needless re-embedding.
    assert embedder_fingerprint(EmbeddingOptions(seed=1)) == embedder_fingerprint(EmbeddingOptions(seed=2))


def test_fingerprint_ignores_batch_size():
    assert embedder_fingerprint(EmbeddingOptions(batch_size=8)) == embedder_fingerprint(
        EmbeddingOptions(batch_size=256)
    )


def test_fingerprint_follows_the_content_of_a_local_weights_file(tmp_path):
    weights_file = tmp_path / "w.weights.h5"
    weights_file.write_bytes(b"version one")
    first = embedder_fingerprint(EmbeddingOptions(weights=str(weights_file)))
    weights_file.write_bytes(b"version two")
    assert embedder_fingerprint(EmbeddingOptions(weights=str(weights_file))) != first


def test_fingerprint_of_a_saved_model_follows_its_content_not_the_backbone(tmp_path):
    model_file = tmp_path / "m.keras"
    model_file.write_bytes(b"model one")
    first = embedder_fingerprint(EmbeddingOptions(model_path=str(model_file)))
    assert (
        embedder_fingerprint(EmbeddingOptions(model_path=str(model_file), backbone="ResNet50", weights="random"))
        == first
    )
    model_file.write_bytes(b"model two")
    assert embedder_fingerprint(EmbeddingOptions(model_path=str(model_file))) != first


def test_file_sha256_matches_hashlib(tmp_path):
    data = bytes(range(256)) * 5000
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path, chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_importing_the_module_does_not_import_tensorflow():
    code = (
        "import sys, rec_pipeline.images.embed; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
