"""Load the materialized text vectors and image embeddings of a category as one aligned ``ItemContent``."""

from __future__ import annotations

import numpy as np
import polars as pl

from rec_pipeline.models.data import ItemContent
from rec_pipeline.warehouse import Artifact
from rec_pipeline.warehouse_io import Upstream


def _vectors(path: pl.DataFrame | None) -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    if path is None or path.height == 0:
        return {}, np.zeros((0, 1), np.float32), np.zeros(0, bool)
    frame = path.filter(pl.col("vector").is_not_null()).unique("item_id", keep="last", maintain_order=True)
    matrix = np.asarray(frame["vector"].to_numpy(), np.float32)
    return {item: row for row, item in enumerate(frame["item_id"].to_list())}, matrix, frame["has_vector"].to_numpy()


def load_item_content(item_text_vectors: Upstream, image_embeddings: Upstream) -> ItemContent | None:
    """Union of items with a text vector or an image embedding (one category of each asset); None when neither
    asset produced anything."""
    columns = ["item_id", "vector", "has_vector"]
    text_artifact, image_artifact = Artifact.ITEM_TEXT_VECTORS, Artifact.IMAGE_EMBEDDINGS
    text = item_text_vectors.read(text_artifact, columns) if item_text_vectors.exists(text_artifact) else None
    image = image_embeddings.read(image_artifact, columns) if image_embeddings.exists(image_artifact) else None
    t_pos, t_mat, t_mask = _vectors(text)
    i_pos, i_mat, i_mask = _vectors(image)
    item_ids = sorted(set(t_pos) | set(i_pos))
    if not item_ids:
        return None

    def aligned(pos: dict[str, int], matrix: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        width = matrix.shape[1] if matrix.ndim == 2 and matrix.shape[1] else 1
        out = np.zeros((len(item_ids), width), np.float32)
        present = np.zeros(len(item_ids), bool)
        for row, item in enumerate(item_ids):
            source = pos.get(item)
            if source is not None:
                out[row] = matrix[source]
                present[row] = bool(mask[source])
        return out, present

    text_vectors, text_mask = aligned(t_pos, t_mat, t_mask)
    image_vectors, image_mask = aligned(i_pos, i_mat, i_mask)
    return ItemContent(item_ids, text_vectors, text_mask, image_vectors, image_mask)


def empty_content(item_ids: list[str]) -> ItemContent:
    """Content with every mask False (1-wide zero vectors): a category without metadata still trains the hybrid,
    whose content branches then contribute nothing."""
    n = len(item_ids)
    zeros = np.zeros((n, 1), np.float32)
    return ItemContent(item_ids, zeros, np.zeros(n, bool), zeros.copy(), np.zeros(n, bool))
