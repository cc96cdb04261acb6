"""The interactions asset streams only the event columns of raw_reviews, and still names a bad file and its fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from rec_pipeline.assets.interactions import _review_events
from rec_pipeline.atomic import ArtifactError
from rec_pipeline.interactions.variants import EVENT_COLUMNS, TEXT_KEY
from rec_pipeline.warehouse import Artifact
from rec_pipeline.warehouse_io import stored
from rec_pipeline_tests.interactions.test_variants import copies, reviews


def test_the_scan_keeps_the_event_columns_and_the_text_key_only(tmp_path: Path) -> None:
    upstream = stored(tmp_path, "raw_reviews", "Toys")["Toys"]
    path = upstream.path(Artifact.RAW_REVIEWS)
    path.parent.mkdir(parents=True)
    reviews(*copies(["B1", "B2"], "u1", 100, "a"), ("u2", "B1", 4.0, 200, None)).write_parquet(path)
    events = _review_events(upstream)
    assert events.columns == [*EVENT_COLUMNS, *TEXT_KEY] and events.height == 3
    assert events["text_bytes"].to_list() == [1, 1, None]


def test_a_missing_or_damaged_raw_reviews_file_is_named_with_the_fix(tmp_path: Path) -> None:
    upstream = stored(tmp_path, "raw_reviews", "Toys")["Toys"]
    with pytest.raises(ArtifactError, match="raw_reviews.parquet does not exist: materialize raw_reviews"):
        _review_events(upstream)
    path = upstream.path(Artifact.RAW_REVIEWS)
    path.parent.mkdir(parents=True)
    reviews(*copies(["B1", "B2"], "u1", 100, "a")).write_parquet(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ArtifactError, match=r"raw_reviews.parquet cannot be read .* materialize raw_reviews again"):
        _review_events(upstream)
