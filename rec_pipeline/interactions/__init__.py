"""From normalized reviews to the interaction table models train on: dedup, k-core, splits, statistics."""
