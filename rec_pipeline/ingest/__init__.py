"""Streaming ingestion of Amazon review dumps (2014, 2018, 2023 releases) into the common schema."""
