"""Dagster assets: thin wiring of the plain modules, plus metadata and checks. Grouped by domain."""
