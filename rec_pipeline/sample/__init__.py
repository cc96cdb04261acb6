"""Sample dumps with a known rating model: realistic files in each release's format plus the truth behind them.

``write_sample`` is what ``rec-pipeline make-sample`` and the demo call; the truth files it saves beside the data
(``sample_truth/``) let later stages measure how close a model gets to the noise floor.
"""

from rec_pipeline.sample.dumps import DIRT_KINDS, SampleManifest, dump_file_names, write_sample
from rec_pipeline.sample.truth import expected_rating, noise_floor_rmse
from rec_pipeline.sample.world import ReviewDraw, SampleSpec, World, draw_reviews, generate_world

__all__ = [
    "DIRT_KINDS",
    "ReviewDraw",
    "SampleManifest",
    "SampleSpec",
    "World",
    "draw_reviews",
    "dump_file_names",
    "expected_rating",
    "generate_world",
    "noise_floor_rmse",
    "write_sample",
]
