"""Training throughput benchmark: the project's MF and hybrid beside plain Keras models on the same data.

    python bench/train.py                        # 1M interactions, 100k users, 20k items, batch 1024
    python bench/train.py --interactions 200000 --epochs 3
    python bench/train.py --backend jax --batch-size 4096   # the same on JAX (pip install jax), larger batches

Generates ratings from random factors (Zipf-like item popularity) and per-item content (a 64-d title vector and a
512-d image embedding, a tenth of each missing), then trains, in this process and on the same data:

- plain Keras MF: ``Embedding`` user/item factors and biases, ``Dot`` + ``Add``, MSE, Adam, fed ``fit(x=arrays,
  shuffle=True)`` (Keras' own vectorized array pipeline);
- rec_pipeline's MF (``create_model("mf")``: per-example L2, masks for unknown ids, its own input pipeline);
- seed 000's hybrid network as written: normalized-dot MF + an NN branch (Dense 16 over both embeddings) + title
  (Dense 64) and image (Dense 256) towers merged through Dense 128, all through Dense 64, MAE loss, Adam lr 0.01,
  the content fed *per row* (an interactions x 576 float array beside the ids, as the seed did);
- rec_pipeline's hybrid (``create_model("hybrid")``: content looked up per batch from item tables).

Every model runs ``--epochs`` epochs (no validation, no early stopping) and reports the median of its per-epoch
examples/s; the first epoch includes graph tracing (XLA compilation on JAX), which the median discounts.

``--backend`` picks the Keras backend (tensorflow, jax or torch): it is set as ``KERAS_BACKEND`` before this
process first imports Keras (``rec_pipeline.models.backend.use_backend``), so ``KERAS_BACKEND=jax python
bench/train.py`` and ``python bench/train.py --backend jax`` are the same run. On TensorFlow rec_pipeline feeds
``tf.data`` pipelines and a fused Adam kernel; on the others ``keras.utils.PyDataset`` batches and Keras' Adam.
``--lr-scaling linear`` scales the project models' learning rates with ``--batch-size`` (reference 256).

Targets (issue 12, item 2): project MF >= 0.9x plain Keras MF; project hybrid >= 1.5x seed 000's network.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from _measure import print_table  # noqa: E402

BACKENDS = ("tensorflow", "jax", "torch")
TEXT_DIM = 64
IMAGE_DIM = 512
EMBEDDING_DIM = 32


class Data:
    """Index arrays (0-based), ratings and per-item content, plus the same as rec_pipeline frames."""

    def __init__(self, n_interactions: int, n_users: int, n_items: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
        self.user = rng.integers(0, n_users, n_interactions).astype(np.int32)
        self.item = rng.choice(n_items, n_interactions, p=popularity / popularity.sum()).astype(np.int32)
        user_factors = rng.normal(0, 0.4, (n_users, 8))
        item_factors = rng.normal(0, 0.4, (n_items, 8))
        score = 3.8 + np.einsum("ij,ij->i", user_factors[self.user], item_factors[self.item])
        self.rating = np.clip(np.rint(score + rng.normal(0, 0.5, n_interactions)), 1, 5).astype(np.float32)
        self.text = rng.normal(size=(n_items, TEXT_DIM)).astype(np.float32)
        self.image = rng.normal(size=(n_items, IMAGE_DIM)).astype(np.float32)
        self.text_mask = rng.random(n_items) > 0.1
        self.image_mask = rng.random(n_items) > 0.1
        self.text[~self.text_mask] = 0.0
        self.image[~self.image_mask] = 0.0
        self.n_users, self.n_items = n_users, n_items

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "user_id": np.char.add("u", self.user.astype(str)),
                "item_id": np.char.add("i", self.item.astype(str)),
                "rating": self.rating,
            }
        )

    def content(self) -> object:
        from rec_pipeline.models import ItemContent

        return ItemContent(
            [f"i{i}" for i in range(self.n_items)], self.text, self.text_mask, self.image, self.image_mask
        )


Epochs = list[tuple[float, float]]  # (wall seconds, process CPU seconds) per epoch


def epoch_timer() -> tuple[object, Epochs]:
    """A Keras callback that records each epoch's wall and CPU time."""
    import keras

    epochs: Epochs = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: object = None) -> None:
            self._started = (time.perf_counter(), time.process_time())

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            epochs.append((time.perf_counter() - self._started[0], time.process_time() - self._started[1]))

    return Timer(), epochs


class EpochLogTimer(logging.Handler):
    """Times rec_pipeline's epochs from its own log lines ("<model> epoch i/n"), since ``fit`` takes no callbacks:
    wall time comes from the history, CPU time from the gap between consecutive lines."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu_marks: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if re.search(r" epoch \d+/\d+:", message) or "training examples" in message:
            self.cpu_marks.append(time.process_time())


def plain_keras_mf(data: Data, epochs: int, batch_size: int) -> Epochs:
    """The textbook Keras biased MF, fed plain arrays: the reference the project's MF is held to."""
    import keras

    keras.utils.set_random_seed(0)
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    p = keras.layers.Embedding(data.n_users, EMBEDDING_DIM)(user)
    q = keras.layers.Embedding(data.n_items, EMBEDDING_DIM)(item)
    b_u = keras.layers.Embedding(data.n_users, 1, embeddings_initializer="zeros")(user)
    b_i = keras.layers.Embedding(data.n_items, 1, embeddings_initializer="zeros")(item)
    summed = keras.layers.Add()([keras.layers.Dot(axes=1)([p, q]), b_u, b_i])
    rating = keras.layers.Rescaling(1.0, offset=float(data.rating.mean()))(summed)
    model = keras.Model({"user": user, "item": item}, rating)
    model.compile(optimizer=keras.optimizers.Adam(5e-3), loss="mse")
    timer, timed = epoch_timer()
    model.fit(
        {"user": data.user, "item": data.item},
        data.rating,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[timer],
    )
    return timed


def seed000_hybrid(data: Data, epochs: int, batch_size: int) -> Epochs:
    """Seed 000's network as written, content fed per row (an interactions x 576 float32 array beside the ids)."""
    import keras

    keras.utils.set_random_seed(0)
    user = keras.Input(shape=(), dtype="int32", name="user")
    item = keras.Input(shape=(), dtype="int32", name="item")
    title = keras.Input(shape=(TEXT_DIM,), name="title")
    image = keras.Input(shape=(IMAGE_DIM,), name="image")
    p = keras.layers.Embedding(data.n_users, EMBEDDING_DIM)(user)
    q = keras.layers.Embedding(data.n_items, EMBEDDING_DIM)(item)
    collaborative = keras.layers.Dot(axes=1, normalize=True)([p, q])
    neural = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([p, q]))
    content = keras.layers.Dense(128, activation="relu")(
        keras.layers.Concatenate()(
            [keras.layers.Dense(64, activation="relu")(title), keras.layers.Dense(256, activation="relu")(image)]
        )
    )
    merged = keras.layers.Dense(64, activation="relu")(keras.layers.Concatenate()([collaborative, neural, content]))
    model = keras.Model({"user": user, "item": item, "title": title, "image": image}, keras.layers.Dense(1)(merged))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mae")
    inputs = {"user": data.user, "item": data.item, "title": data.text[data.item], "image": data.image[data.item]}
    timer, timed = epoch_timer()
    model.fit(inputs, data.rating, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
    return timed


def project_model(kind: str, backend: str, lr_scaling: str) -> Callable[[Data, int, int], Epochs]:
    def run(data: Data, epochs: int, batch_size: int) -> Epochs:
        from rec_pipeline.models import TrainingData, TrainOptions, create_model

        content = data.content() if kind == "hybrid" else None
        options = TrainOptions(
            epochs=epochs,
            batch_size=batch_size,
            embedding_dim=EMBEDDING_DIM,
            early_stopping_patience=0,
            seed=0,
            backend=backend,  # type: ignore[arg-type]
            learning_rate_scaling=lr_scaling,  # type: ignore[arg-type]
        )
        logger = logging.getLogger(f"bench.train.{kind}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        marks = EpochLogTimer()
        logger.addHandler(marks)
        history = create_model(kind).fit(TrainingData(data.frame(), None, content), options, logger=logger)  # type: ignore[arg-type]
        cpu = np.diff(marks.cpu_marks).tolist()
        return list(zip(history.epoch_seconds, cpu, strict=True))

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--interactions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3, help="per model; examples/s is the median over epochs")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=os.environ.get("KERAS_BACKEND", "tensorflow"),
        help="Keras backend, set as KERAS_BACKEND before Keras is imported (default: $KERAS_BACKEND or tensorflow)",
    )
    parser.add_argument(
        "--lr-scaling",
        choices=("none", "linear", "sqrt"),
        default="none",
        help="TrainOptions.learning_rate_scaling of the rec_pipeline models (reference batch 256)",
    )
    parser.add_argument("--only", nargs="*", default=None, help="subset of: keras_mf mf seed000 hybrid")
    args = parser.parse_args()
    from rec_pipeline.models.backend import use_backend

    use_backend(args.backend)  # before anything imports Keras: Keras fixes its backend at its first import

    data = Data(args.interactions, args.users, args.items, seed=0)
    contenders: dict[str, tuple[str, Callable[[Data, int, int], Epochs]]] = {
        "keras_mf": ("plain Keras MF (arrays)", plain_keras_mf),
        "mf": ("rec_pipeline mf", project_model("mf", args.backend, args.lr_scaling)),
        "seed000": ("seed 000 hybrid (content per row)", seed000_hybrid),
        "hybrid": ("rec_pipeline hybrid", project_model("hybrid", args.backend, args.lr_scaling)),
    }
    rates: dict[str, float] = {}
    cpu_rates: dict[str, float] = {}
    rows: list[dict[str, object]] = []
    for key, (label, run) in contenders.items():
        if args.only is not None and key not in args.only:
            continue
        timed = run(data, args.epochs, args.batch_size)
        per_epoch = [args.interactions / wall for wall, _ in timed]
        rates[key] = statistics.median(per_epoch)
        cpu_rates[key] = statistics.median(args.interactions / cpu for _, cpu in timed)
        rows.append(
            {
                "model": label,
                "examples/s (median)": f"{rates[key]:,.0f}",
                "per epoch": " ".join(f"{rate:,.0f}" for rate in per_epoch),
                "examples/CPU-s (median)": f"{cpu_rates[key]:,.0f}",
                "load": f"{os.getloadavg()[0]:.1f}",
            }
        )
        print(
            f"{label}: {rows[-1]['per epoch']} examples/s; {rows[-1]['examples/CPU-s (median)']} examples/CPU-s",
            flush=True,
        )
    print(
        f"\n{args.interactions:,} interactions, {args.users:,} users, {args.items:,} items, batch {args.batch_size}, "
        f"backend {args.backend}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
    )
    print_table(rows)
    print(
        "\n(load: the 1-minute load average when the model finished; examples/CPU-s counts this process's CPU time,\n"
        " tf.data threads included, and moves less than wall time when other processes share the cores)"
    )
    print("\nTargets (on wall-clock examples/s):")
    for mine, theirs, factor in (("mf", "keras_mf", 0.9), ("hybrid", "seed000", 1.5)):
        if mine in rates and theirs in rates:
            ratio = rates[mine] / rates[theirs]
            verdict = "met" if ratio >= factor else "MISSED"
            print(
                f"  [{verdict}] {contenders[mine][0]} at {ratio:.2f}x {contenders[theirs][0]} (target >= {factor}x; "
                f"per CPU-second {cpu_rates[mine] / cpu_rates[theirs]:.2f}x)"
            )


if __name__ == "__main__":
    main()
