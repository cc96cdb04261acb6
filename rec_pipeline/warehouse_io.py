"""Declared corridors: how assets read what their upstreams wrote and write what they make, without building a path.

Data stays on disk, in the files the catalogue (``rec_pipeline.warehouse``) names. What moves through Dagster is a
light handle:

- ``Stored`` is what an asset receives for each upstream asset it declares (``ins``, loaded by ``DataLake``, the
  lake being Dagster's input manager too): ``splits["Toys"].read(Artifact.TRAIN)``. It names the upstream, so
  lineage is visible in the asset's signature, and it refuses an artifact that upstream does not write
  (``WRITTEN_BY``): an asset cannot read a file past Dagster's back.
- ``CategoryStore`` (``lake.category(c)``) is the one owner of writes: every artifact is written atomically
  (``rec_pipeline.atomic``) and every asset's content fingerprint, its Dagster data version, is computed here
  from the bytes of its ``CONTENT`` artifacts (streamed, so memory stays bounded whatever the size).

Nothing here imports Dagster: the handles are plain objects, usable from scripts and tests.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from rec_pipeline.atomic import read_artifact, read_cache, write_bytes, write_json, write_parquet
from rec_pipeline.paths import DataLayout
from rec_pipeline.warehouse import CONTENT, WRITTEN_BY, Artifact

MODEL_ASSET_PREFIX = "model_"
_CHUNK = 1 << 20
# (path, size, mtime_ns) -> digest: an unchanged file is hashed once per process, however often it is asked for.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks (never the whole file in memory)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if (cached := _DIGESTS.get(key)) is not None:
        return cached
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def _files(path: Path) -> Iterator[tuple[str, Path]]:
    """``(name, file)`` of a file, or of every file under a directory (sorted, temporaries skipped)."""
    if path.is_file():
        yield path.name, path
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            yield f"{path.name}/{file.relative_to(path).as_posix()}", file


def content_fingerprint(paths: Iterable[Path]) -> str:
    """One digest of the bytes of ``paths`` (files or directories); a missing path counts, as missing."""
    digest = hashlib.sha256()
    for path in paths:
        found = False
        for name, file in _files(path):
            found = True
            digest.update(f"{name}\0{file_digest(file)}\n".encode())
        if not found:
            digest.update(f"{path.name}\0missing\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class CategoryStore:
    """The artifacts of one category under ``warehouse/<category>/``: reads, atomic writes, fingerprints."""

    layout: DataLayout
    category: str

    @property
    def directory(self) -> Path:
        return self.layout.category_dir(self.category)

    def path(self, artifact: Artifact) -> Path:
        return self.layout.artifact(self.category, artifact)

    def exists(self, artifact: Artifact) -> bool:
        return self.path(artifact).exists()

    def read(self, artifact: Artifact, columns: list[str] | None = None) -> pl.DataFrame:
        """A Parquet artifact; an error that names the file and the fix when it is missing or damaged."""
        return read_artifact(self.path(artifact), columns=columns)

    def read_json(self, artifact: Artifact) -> Any:
        return json.loads(self.path(artifact).read_text())

    def read_cache(self, artifact: Artifact, log: Any = None) -> pl.DataFrame | None:
        """This asset's own previous output, or None (missing or damaged: a cache never fails a run)."""
        return read_cache(self.path(artifact), log)

    def write(self, artifact: Artifact, value: pl.DataFrame | bytes | Any) -> Path:
        """Write atomically: a frame as Parquet (zstd), bytes as they are, anything else as JSON."""
        target = self.path(artifact)
        if isinstance(value, pl.DataFrame):
            return write_parquet(value, target)
        if isinstance(value, bytes):
            return write_bytes(value, target)
        return write_json(value, target)

    def remove(self, artifact: Artifact) -> None:
        self.path(artifact).unlink(missing_ok=True)

    def model_dir(self, name: str) -> Path:
        return self.layout.model_dir(self.category, name)

    def training_summary(self, name: str) -> Path:
        return self.layout.training_summary(self.category, name)

    def write_training_summary(self, name: str, summary: dict[str, Any]) -> Path:
        return write_json(summary, self.training_summary(name))

    def scratch_dir(self, kind: str, name: str) -> Path:
        """A working directory of this category (``checkpoints/<name>``, ``tensorboard/<name>``)."""
        return self.directory / kind / name

    def fingerprint(self, asset: str) -> str:
        """The content fingerprint of what ``asset`` wrote for this category: the bytes of its ``CONTENT``
        artifacts, or of its saved model (a model skipped as not applicable has none: its training summary)."""
        if asset.startswith(MODEL_ASSET_PREFIX):
            name = asset.removeprefix(MODEL_ASSET_PREFIX)
            model_dir = self.model_dir(name)
            return content_fingerprint([model_dir if model_dir.is_dir() else self.training_summary(name)])
        return content_fingerprint(self.path(a) for a in CONTENT[asset])


@dataclass(frozen=True)
class Upstream:
    """One category of one upstream asset, read-only: only the artifacts that asset writes."""

    asset: str
    store: CategoryStore

    def _checked(self, artifact: Artifact) -> Artifact:
        if artifact not in WRITTEN_BY.get(self.asset, ()):
            raise ValueError(
                f"{artifact.value} is not written by {self.asset}; declare the asset that writes it as an input"
            )
        return artifact

    @property
    def category(self) -> str:
        return self.store.category

    def path(self, artifact: Artifact) -> Path:
        return self.store.path(self._checked(artifact))

    def exists(self, artifact: Artifact) -> bool:
        return self.store.exists(self._checked(artifact))

    def read(self, artifact: Artifact, columns: list[str] | None = None) -> pl.DataFrame:
        return self.store.read(self._checked(artifact), columns)

    def read_json(self, artifact: Artifact) -> Any:
        return self.store.read_json(self._checked(artifact))

    @property
    def fingerprint(self) -> str:
        return self.store.fingerprint(self.asset)

    # Model assets: a saved model directory and the summary its training recorded.
    def _model_name(self) -> str:
        if not self.asset.startswith(MODEL_ASSET_PREFIX):
            raise ValueError(f"{self.asset} is not a model asset")
        return self.asset.removeprefix(MODEL_ASSET_PREFIX)

    @property
    def model_dir(self) -> Path:
        return self.store.model_dir(self._model_name())

    def training(self) -> dict[str, Any]:
        """What training recorded (history, why it was skipped); empty when the model never trained."""
        path = self.store.training_summary(self._model_name())
        return json.loads(path.read_text()) if path.exists() else {}


@dataclass(frozen=True)
class Stored:
    """What an upstream asset holds for the categories of this run: ``stored[category]`` is an ``Upstream``."""

    asset: str
    layout: DataLayout
    categories: tuple[str, ...] = ()

    def __getitem__(self, category: str) -> Upstream:
        return Upstream(self.asset, CategoryStore(self.layout, category))

    def __iter__(self) -> Iterator[str]:
        return iter(self.categories)


def stored(layout: DataLayout | Path | str, asset: str, *categories: str) -> Stored:
    """A ``Stored`` outside Dagster (scripts, tests, benches): ``stored(root, "splits", "Toys")``."""
    if not isinstance(layout, DataLayout):
        layout = DataLayout(Path(os.fspath(layout)))
    return Stored(asset, layout, tuple(categories))
