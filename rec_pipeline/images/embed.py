"""CNN image embeddings: a Keras backbone (or a saved ``.keras`` model) run over cached images through ``tf.data``.

The backbone runs on whichever Keras backend the process uses (``KERAS_BACKEND``); TensorFlow only reads,
decodes and resizes the images, and is hidden from the GPUs when it is not the Keras backend.

The embedder is a plain ``keras.Model`` mapping float32 RGB images in ``[0, 255]`` of shape
``(size, size, 3)`` to ``[batch, d]`` vectors. With ``model_path`` unset it is a ``keras.applications`` backbone
(``include_top=False, pooling="avg"``) preceded by that backbone's own ``preprocess_input``, so every backbone
takes the same raw-pixel input and callers never need to know which normalisation it expects.

Weights are never silently random: ``weights="imagenet"`` uses the standard Keras download (cached under
``$KERAS_HOME/models``, default ``~/.keras/models``), a path loads a local file, and only the explicit
``weights="random"`` gives random initialisation. Any failure to load raises ``EmbeddingWeightsError`` naming the
settings that fix it, because an embedding of random weights looks like a working one until recommendations
quietly get worse.

Re-runs embed only new or changed images: ``embedder_fingerprint`` hashes everything that changes the vectors,
so the caller can key cached vectors by ``(image content or URL hash, fingerprint)``.

TensorFlow and Keras are imported inside the functions that need them: importing this module (for
``embedder_fingerprint`` or ``file_sha256``) stays cheap, and the package ``rec_pipeline.images`` never pulls
TensorFlow in.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.metadata
import json
import logging
import random
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

# Bump when the input pipeline changes in a way that changes vectors (resize method, pixel range), so cached
# embeddings made by the old pipeline are recomputed.
PIPELINE_VERSION = 1

# The Keras download (urllib without a timeout) would wait forever on a network that drops packets instead of
# refusing them; a per-socket-operation timeout turns that into a prompt error while leaving slow but
# progressing downloads alone.
DOWNLOAD_SOCKET_TIMEOUT_S = 30.0

RANDOM_WEIGHTS = "random"
IMAGENET_WEIGHTS = "imagenet"


class EmbeddingWeightsError(RuntimeError):
    """Pretrained weights (or the saved model) could not be loaded; the message says which setting to change."""


@dataclass(frozen=True)
class EmbeddingOptions:
    """How images become vectors.

    ``weights``: ``"imagenet"`` (standard Keras download; fails offline unless already in the Keras cache), a path
    to a local weights file for the same backbone (``include_top=False``), or ``"random"`` (explicit opt-in to
    seeded random initialisation, for tests and smoke runs). ``model_path``: a whole saved ``.keras`` model whose
    output is the embedding; when set, ``backbone`` and ``weights`` are ignored. ``projection_dim``: a final
    bias-free Dense layer to this size. It is a *fixed random projection* (Gaussian, seeded, scaled by
    ``1/sqrt(projection_dim)`` so distances are roughly preserved, Johnson-Lindenstrauss style), not a learned
    one, unless someone trains it. ``batch_size`` only changes speed and memory, not the vectors.
    """

    backbone: str = "MobileNetV3Small"
    weights: str = IMAGENET_WEIGHTS
    image_size: int = 224
    projection_dim: int | None = None
    batch_size: int = 64
    seed: int = 0
    model_path: str | None = None

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.projection_dim is not None and self.projection_dim < 1:
            raise ValueError(f"projection_dim must be positive or None, got {self.projection_dim}")


def file_sha256(path: Path | str, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in chunks so large weight files do not need to fit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def embedder_fingerprint(options: EmbeddingOptions) -> str:
    """A short stable hash of everything that changes the vectors (not ``batch_size``).

    Only fields that matter for the chosen mode are included, so e.g. changing ``backbone`` while ``model_path``
    is set does not needlessly invalidate a cache. Local files (weights, saved model) are hashed by content: a
    retrained model saved under the same name gets a new fingerprint. The Keras major.minor version is included
    because architectures, initialisers and download weights belong to it; a missing file hashes as
    ``"missing"`` (building the embedder will fail with a clear error anyway).
    """
    payload: dict[str, object] = {
        "pipeline": PIPELINE_VERSION,
        "keras": ".".join(importlib.metadata.version("keras").split(".")[:2]),
        "image_size": options.image_size,
        "projection_dim": options.projection_dim,
    }
    if options.model_path is not None:
        payload["model_sha256"] = _content_hash(options.model_path)
    else:
        payload["backbone"] = options.backbone
        if options.weights in (IMAGENET_WEIGHTS, RANDOM_WEIGHTS):
            payload["weights"] = options.weights
        else:
            payload["weights_sha256"] = _content_hash(options.weights)
    if options.projection_dim is not None or (options.model_path is None and options.weights == RANDOM_WEIGHTS):
        payload["seed"] = options.seed
    blob = json.dumps(payload, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def _content_hash(path: str) -> str:
    return file_sha256(path) if Path(path).is_file() else "missing"


def build_embedder(options: EmbeddingOptions) -> keras.Model:
    """Build the embedding model: raw RGB ``[0, 255]`` in, ``[batch, d]`` float vectors out.

    Raises ``EmbeddingWeightsError`` when the pretrained weights or the saved model cannot be loaded (offline
    download, missing file, wrong architecture), and ``ValueError`` for an unknown backbone name.
    """
    import keras

    if options.model_path is not None:
        base = _load_saved_model(options.model_path)
    else:
        base = _build_backbone(options)
    if len(base.outputs) != 1 or len(base.output.shape) != 2:
        raise ValueError(f"the embedding model must have one output of shape [batch, d]; got {base.output.shape}")
    if options.projection_dim is None:
        return base
    inputs = keras.Input(shape=base.input.shape[1:], name="image")
    projection = keras.layers.Dense(
        options.projection_dim,
        use_bias=False,
        kernel_initializer=keras.initializers.RandomNormal(stddev=options.projection_dim**-0.5, seed=options.seed),
        name="projection",
    )
    return keras.Model(inputs, projection(base(inputs)), name="image_embedder")


def _load_saved_model(model_path: str) -> keras.Model:
    import keras

    path = Path(model_path)
    if not path.is_file():
        raise EmbeddingWeightsError(
            f"saved embedding model not found at model_path={model_path!r}; point model_path= at an existing .keras "
            f"file, or unset model_path to use a keras.applications backbone"
        )
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as exc:  # any loader failure means the same thing to the caller: this file is unusable
        raise EmbeddingWeightsError(
            f"could not load the saved embedding model model_path={model_path!r}: {_short(exc)}"
        ) from exc
    if len(model.inputs) != 1:
        raise EmbeddingWeightsError(
            f"model_path={model_path!r} must take exactly one image input, it takes {len(model.inputs)}"
        )
    return model


def _build_backbone(options: EmbeddingOptions) -> keras.Model:
    import keras

    constructor = getattr(keras.applications, options.backbone, None)
    if not options.backbone[:1].isupper() or not callable(constructor):
        known = sorted(name for name in dir(keras.applications) if name[:1].isupper())
        raise ValueError(f"unknown backbone={options.backbone!r}; keras.applications offers: {', '.join(known)}")
    preprocess = getattr(importlib.import_module(constructor.__module__), "preprocess_input", None)
    input_shape = (options.image_size, options.image_size, 3)

    def make(weights: str | None) -> keras.Model:
        # Keras initialisers draw their default seeds from Python's `random`; seeding it for the duration of the
        # build makes random weights reproducible without touching Keras' or NumPy's global seeds.
        with _python_random_seeded(options.seed):
            return constructor(include_top=False, weights=weights, input_shape=input_shape, pooling="avg")

    settings_hint = (
        f'set weights=<path to a local {options.backbone} no-top weights file>, or weights="random" to accept '
        f"random initialisation explicitly, or model_path=<saved .keras embedding model>"
    )
    if options.weights == RANDOM_WEIGHTS:
        backbone = make(None)
    elif options.weights == IMAGENET_WEIGHTS:
        try:
            with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT_S):
                backbone = make(IMAGENET_WEIGHTS)
        except Exception as exc:  # download, hash and HDF5 errors all mean "no pretrained weights"
            raise EmbeddingWeightsError(
                f"could not load ImageNet weights for backbone={options.backbone!r} (weights='imagenet' downloads "
                f"them from storage.googleapis.com into the Keras cache, $KERAS_HOME/models, default "
                f"~/.keras/models): {_short(exc)}. Without network access, {settings_hint}"
            ) from exc
    else:
        if not Path(options.weights).is_file():
            raise EmbeddingWeightsError(f"weights file not found: weights={options.weights!r}; {settings_hint}")
        backbone = make(None)
        # Poison every weight first: Keras may skip parts of a file with only a warning, and a tensor that is
        # still NaN afterwards proves it was not in the file (instead of silently keeping random values).
        backbone.set_weights([np.full(w.shape, np.nan, dtype=w.dtype) for w in backbone.get_weights()])
        try:
            backbone.load_weights(options.weights)
            missing = [v.path for v in backbone.weights if np.isnan(np.asarray(v.numpy(), dtype=np.float64)).any()]
            if missing:
                raise ValueError(
                    f"{len(missing)} of {len(backbone.weights)} weight tensors are NaN after loading (missing from "
                    f"the file, or NaN in it), e.g. {missing[:3]}"
                )
        except Exception as exc:  # wrong architecture, wrong format or a corrupt file
            raise EmbeddingWeightsError(
                f"could not load weights={options.weights!r} into backbone={options.backbone!r} at image_size="
                f"{options.image_size}: {_short(exc)}. Fix the file, or {settings_hint}"
            ) from exc

    inputs = keras.Input(shape=input_shape, name="image")
    features = preprocess(inputs) if preprocess is not None else inputs
    return keras.Model(inputs, backbone(features), name=f"{options.backbone}_embedder")


def _short(exc: BaseException, limit: int = 500) -> str:
    """The cause for an error message; Keras load errors list every layer and run to many kilobytes."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line: it ends up in a Dagster failure description
    return text if len(text) <= limit else text[:limit] + " ..."


@contextlib.contextmanager
def _python_random_seeded(seed: int) -> Iterator[None]:
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # Process-wide, so it is set only around the download and restored straight after.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def embed_images(
    paths: Sequence[Path | str | None],
    embedder: keras.Model,
    options: EmbeddingOptions,
    logger: logging.Logger | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed image files; return ``(vectors float32 [n, d], mask bool [n])`` in the order of ``paths``.

    Reading, decoding and resizing run in a ``tf.data`` pipeline (parallel map, batch, prefetch). A file that
    cannot be read or decoded (missing, truncated, not an image, ``None``) gets a zero row and ``mask=False``
    instead of failing the whole batch: each element carries its index, failing elements are dropped with
    ``ignore_errors`` and the survivors are scattered back by index. Images are resized to the embedder's input
    size (``options.image_size`` when the model accepts any size); the fetch step already padded them square.
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        # TensorFlow only decodes images here; on another backend it must not claim the GPUs that backend uses.
        with contextlib.suppress(RuntimeError):  # raised once TensorFlow's devices exist: too late, keep going
            tf.config.set_visible_devices([], "GPU")
    log = logger or logging.getLogger(__name__)
    dim = int(embedder.output_shape[-1])
    height, width = _input_size(embedder, options.image_size)
    n = len(paths)
    vectors = np.zeros((n, dim), dtype=np.float32)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return vectors, mask

    def load(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width), antialias=True)
        return index, tf.clip_by_value(image, 0.0, 255.0)

    names = [str(p) if p is not None else "" for p in paths]
    dataset = (
        tf.data.Dataset.from_tensor_slices((np.arange(n, dtype=np.int64), names))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .batch(options.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    started = time.perf_counter()
    total_batches = -(-n // options.batch_size)
    report_every = max(1, total_batches // 10)
    for batch_number, (indices, images) in enumerate(dataset, start=1):
        rows = indices.numpy()
        # numpy in: the embedder may run on any Keras backend, and every backend takes numpy.
        vectors[rows] = np.asarray(embedder.predict_on_batch(images.numpy()), dtype=np.float32)
        mask[rows] = True
        if batch_number % report_every == 0:
            log.info(f"embedded {int(mask.sum())}/{n} images ({time.perf_counter() - started:.1f} s)")
    elapsed = time.perf_counter() - started
    unreadable = [names[i] for i in np.flatnonzero(~mask)]
    log.info(
        f"embedded {n - len(unreadable)} of {n} images into {dim} dimensions in {elapsed:.1f} s "
        f"({n / max(elapsed, 1e-9):.1f} images/s)"
    )
    if unreadable:
        log.warning(
            f"{len(unreadable)} images could not be read or decoded (zero vectors, mask False), e.g. {unreadable[:3]}"
        )
    return vectors, mask


def _input_size(embedder: keras.Model, default: int) -> tuple[int, int]:
    """The model's fixed input height and width, or ``default`` for dimensions it leaves open."""
    shape = tuple(embedder.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"the embedder must take [batch, height, width, 3] images; its input shape is {shape}")
    return int(shape[1] or default), int(shape[2] or default)
