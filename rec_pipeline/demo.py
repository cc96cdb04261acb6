"""Settings of the offline demo: small models, few epochs, no weight downloads.

Production defaults live on each asset's Config; the demo changes only what must change to run offline in a few
minutes on two cores. They are written once into the data root's ``settings.yaml`` (see ``rec_pipeline.settings``),
so every later launch on that data (``make ui``, the landing sensor, the schedule, automation, the CLI) uses the
same settings instead of falling back to the production defaults. The CNN uses random weights *by explicit
configuration* here (no ImageNet download is possible offline); colour and texture statistics still separate the
sample's image styles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rec_pipeline.models.registry import CATALOGUE
from rec_pipeline.settings import dump_settings

DEMO_EPOCHS = 20


def demo_ops_config() -> dict[str, Any]:
    ops: dict[str, Any] = {
        "word2vec_model": {"config": {"vector_size": 32, "epochs": 8, "min_count": 2, "workers": 2}},
        "item_images": {"config": {"image_size": 64, "max_retries": 1, "connect_timeout": 2.0, "read_timeout": 5.0}},
        "image_embeddings": {"config": {"weights": "random", "image_size": 64, "projection_dim": 64, "batch_size": 64}},
    }
    for spec in CATALOGUE:
        if spec.keras:
            ops[spec.asset] = {"config": {"epochs": DEMO_EPOCHS, "embedding_dim": 16, "batch_size": 512}}
    return ops


DEMO_SETTINGS_HEADER = """\
# rec_pipeline settings for this data root: every launch reads them (UI, sensors, schedule, automation, CLI).
# Written by `rec-pipeline demo` with the offline demo's values; edit freely. Shape: Dagster run config.
#   ops: <asset>: config: {...}                        for every category
#   categories: <Category>: ops: <asset>: config: {...} for one category (e.g. a lower k for a small dump)
# A run's own config (launchpad, --config file) still overrides these for that run.
"""


def write_demo_settings(path: Path) -> bool:
    """Write the demo's settings to ``path`` unless a settings file is already there; True if written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(DEMO_SETTINGS_HEADER + dump_settings({"ops": demo_ops_config()}), encoding="utf-8")
    return True
