"""Where every artifact lives under the one data root.

A single layout object keeps path conventions in one place: assets, the CLI and tests all ask it rather than
joining strings themselves.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "REC_PIPELINE_DATA_DIR"
DEFAULT_DATA_DIR = "./data"


def default_data_dir() -> Path:
    """The data root: ``$REC_PIPELINE_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get(DATA_DIR_ENV, DEFAULT_DATA_DIR)).expanduser().resolve()


@dataclass(frozen=True)
class DataLayout:
    """Paths under a data root.

    ``raw/`` is the landing folder where dumps keep their original names; ``images/mirror/`` is a local image
    mirror consulted before the network; ``warehouse/<category>/`` holds every materialized artifact.
    """

    root: Path

    @property
    def raw_dir(self) -> Path:
        return self.root / "raw"

    @property
    def image_mirror_dir(self) -> Path:
        return self.root / "images" / "mirror"

    @property
    def image_cache_dir(self) -> Path:
        return self.root / "images" / "cache"

    @property
    def truth_dir(self) -> Path:
        """Ground truth of generated sample data (known model, noise sigma)."""
        return self.root / "sample_truth"

    def category_dir(self, category: str) -> Path:
        return self.root / "warehouse" / category

    def artifact(self, category: str, name: str) -> Path:
        return self.category_dir(category) / name

    def model_dir(self, category: str, model_name: str) -> Path:
        return self.category_dir(category) / "models" / model_name

    def training_summary(self, category: str, model_name: str) -> Path:
        """What training a model recorded: its inputs' fingerprint, history, and why it was skipped, if it was."""
        return self.category_dir(category) / "models" / f"{model_name}.training.json"

    def ensure(self) -> DataLayout:
        for path in (self.raw_dir, self.image_mirror_dir, self.image_cache_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self
