"""Product images: safe, incremental fetching into a disk cache (``fetch``, built on ``transport``, ``retry`` and
``hosts``), the cache itself (``cache``), decoding (``decode``), URL rules (``url_policy``) and CNN embeddings
(``embed``).

Kept import-light on purpose: importing ``rec_pipeline.images`` must not pull in TensorFlow or httpx, so import
the sub-modules directly (``from rec_pipeline.images.fetch import fetch_images``).
"""
