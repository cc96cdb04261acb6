"""rec_pipeline: a Dagster-orchestrated multimodal recommender over Amazon review dumps.

The sub-packages hold plain, Dagster-free logic (``ingest``, ``interactions``, ``text``, ``images``,
``models``, ``evaluation``, ``sample``); ``assets`` and ``definitions`` wire them into Dagster.
"""

__version__ = "0.1.0"
