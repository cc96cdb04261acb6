"""Settings of the offline demo: small models, few epochs, no weight downloads.

Production defaults live on each asset's Config; the demo job overrides only what must change to run offline in
a few minutes on two cores. The CNN uses random weights *by explicit configuration* here (no ImageNet download is
possible offline); colour and texture statistics still separate the sample's image styles.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from rec_pipeline.assets.training import KERAS_MODELS, MODEL_NAMES

DEMO_EPOCHS = 20


def demo_ops_config() -> dict[str, Any]:
    ops: dict[str, Any] = {
        "word2vec_model": {"config": {"vector_size": 32, "epochs": 8, "min_count": 2, "workers": 2}},
        "item_images": {"config": {"image_size": 64, "max_retries": 1, "connect_timeout": 2.0, "read_timeout": 5.0}},
        "image_embeddings": {"config": {"weights": "random", "image_size": 64, "projection_dim": 64, "batch_size": 64}},
    }
    for name in MODEL_NAMES:
        if name in KERAS_MODELS:
            ops[f"model_{name}"] = {"config": {"epochs": DEMO_EPOCHS, "embedding_dim": 16, "batch_size": 512}}
    return ops


def demo_run_config() -> dg.RunConfig:
    return dg.RunConfig(ops=demo_ops_config())
