"""What every asset of the pipeline shares, said once: ``category_asset`` (the decorator) and ``materialized`` (the
result).

Every asset is partitioned by category, runs a partition range as one run (``BackfillPolicy.single_run``, so it
loops over ``context.partition_keys``), follows its upstreams eagerly unless told otherwise, and receives a
``Stored`` handle for each upstream it names in ``ins`` (loaded by the lake, see ``rec_pipeline.warehouse_io``):
the function's parameters are its lineage.

Per-partition results. ``materialized`` attaches each category's metadata to that category's materialization with
``context.add_asset_metadata(..., partition_key=c)``, so a ranged run (one run over several categories) records
each partition's own metadata under Dagster's own keys, exactly as a single-partition run does; no
``<category>/`` prefixes. The data version is the exception: Dagster 1.13 gives every partition of one output the
same data-version tags (``DataVersionsByPartition`` exists only for observable source assets), so the content
fingerprint is Dagster's data version in single-partition runs (the ones the sensors, the schedule and the UI's
per-partition "Materialize" launch); in a ranged run Dagster computes its own logical version (code version and
input versions) and each partition's fingerprint is still recorded as its ``content_fingerprint`` metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import dagster as dg

from rec_pipeline.assets.partitions import CATEGORY_PARTITIONS
from rec_pipeline.deploy import GPU_POOL as GPU_POOL  # steps that build Keras models: one at a time holds the device

LAKE = "lake"  # the resource key of the DataLake, also the input manager of every asset input

FINGERPRINT_KEY = "content_fingerprint"


def category_asset(
    *,
    ins: Sequence[str] = (),
    eager: bool = True,
    **kwargs: Any,
) -> Callable[[Callable[..., dg.MaterializeResult]], dg.AssetsDefinition]:
    """``@dg.asset`` with the pipeline's defaults: category partitions, single-run backfills, eager automation
    (``eager=False`` for the roots and the expensive steps that run on request), and one input per upstream asset
    named in ``ins`` (the parameter of the same name receives its ``Stored`` handle). Anything else is passed on."""
    return dg.asset(
        partitions_def=CATEGORY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        automation_condition=dg.AutomationCondition.eager() if eager else None,
        ins={name: dg.AssetIn(key=name, input_manager_key=LAKE) for name in ins},
        **kwargs,
    )


def materialized(
    context: dg.AssetExecutionContext,
    per_category: Mapping[str, Mapping[str, Any]],
    fingerprints: Mapping[str, str],
    check_results: Sequence[dg.AssetCheckResult] = (),
) -> dg.MaterializeResult:
    """The result of a run over ``context.partition_keys``: each category's metadata (and content fingerprint) on
    its own partition, the fingerprint as the data version when the run has one partition (see the module
    docstring for ranged runs)."""
    for category, metadata in per_category.items():
        extra = {FINGERPRINT_KEY: fingerprints[category]} if category in fingerprints else {}
        context.add_asset_metadata({**metadata, **extra}, partition_key=category)
    keys = context.partition_keys
    version = dg.DataVersion(fingerprints[keys[0]]) if len(keys) == 1 and keys[0] in fingerprints else None
    return dg.MaterializeResult(check_results=list(check_results), data_version=version)
