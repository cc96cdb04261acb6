"""Small sample dumps, written once per test session: generation is deterministic, so sharing them is safe."""

from __future__ import annotations

from pathlib import Path

import pytest

from rec_pipeline.sample import SampleManifest, SampleSpec, write_sample

SMALL = dict(
    n_users=300, n_items=60, n_reviews=3000, dirt_fraction=0.01, duplicate_fraction=0.05, image_size=24, compresslevel=1
)


def small_spec(release: str = "2018", **overrides: object) -> SampleSpec:
    return SampleSpec(release=release, **{**SMALL, **overrides})  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, SampleManifest]]:
    """One small sample per release, each in its own data root."""
    out = {}
    for release in ("2014", "2018", "2023"):
        root = tmp_path_factory.mktemp(f"sample_{release}")
        out[release] = (root, write_sample(root, small_spec(release)))
    return out
