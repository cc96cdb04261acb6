"""One default per setting: where a Dagster Config and the domain options it feeds share a setting's name, their
defaults must agree (they had drifted: projection_dim 512 vs None, pretrained_limit 500,000 vs None)."""

from __future__ import annotations

import dataclasses

import dagster as dg
import pytest

from rec_pipeline.assets import features, images, ingestion, interactions, training
from rec_pipeline.images.embed import EmbeddingOptions
from rec_pipeline.images.fetch import FetchOptions
from rec_pipeline.ingest.normalize import IngestOptions
from rec_pipeline.interactions.splits import SplitOptions
from rec_pipeline.interactions.variants import VariantOptions
from rec_pipeline.models import TrainOptions
from rec_pipeline.text.clean import TextCleaningOptions
from rec_pipeline.text.word2vec import Word2VecOptions

PAIRS: list[tuple[type[dg.Config], type]] = [
    (images.ItemImagesConfig, FetchOptions),
    (images.ImageEmbeddingsConfig, EmbeddingOptions),
    (features.Word2VecConfig, Word2VecOptions),
    (features.ItemTextConfig, TextCleaningOptions),
    (training.TrainingConfig, TrainOptions),
    (interactions.InteractionsConfig, VariantOptions),
    (ingestion.IngestConfig, IngestOptions),
    (interactions.SplitsConfig, SplitOptions),
]
# Different name or shape on purpose: the Config takes one side of a square image and megabytes; the options
# take (width, height) and bytes. Config field -> (options field, conversion).
CONVERTED = {
    ("ItemImagesConfig", "image_size"): ("image_size", lambda side: (side, side)),
    ("IngestConfig", "chunk_mb"): ("chunk_bytes", lambda mb: mb << 20),
    ("IngestConfig", "max_line_mb"): ("max_line_bytes", lambda mb: mb << 20),
}


def _default(field: dataclasses.Field) -> object:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


@pytest.mark.parametrize("config, options", PAIRS, ids=lambda c: c.__name__)
def test_a_setting_shared_by_a_config_and_its_domain_options_has_one_default(
    config: type[dg.Config], options: type
) -> None:
    config_defaults = dict(config().model_dump())
    for (owner, name), (target, convert) in CONVERTED.items():
        if owner == config.__name__:
            config_defaults[target] = convert(config_defaults.pop(name))
    shared = [
        f for f in dataclasses.fields(options) if f.name in config_defaults and _default(f) is not dataclasses.MISSING
    ]
    assert shared, f"{config.__name__} and {options.__name__} share no setting: the pair is wrong"
    for field in shared:
        value = config_defaults[field.name]
        expected = _default(field)
        assert (list(value) if isinstance(value, tuple | list) else value) == (
            list(expected) if isinstance(expected, tuple | list) else expected
        ), f"{config.__name__}.{field.name} defaults to {value!r} but {options.__name__}.{field.name} to {expected!r}"
