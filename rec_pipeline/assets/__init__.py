"""Dagster assets: thin wiring of the plain modules, plus metadata and checks. Grouped by domain."""

import warnings

from dagster import BetaWarning

# Every asset takes `backfill_policy=BackfillPolicy.single_run()` (beta in Dagster 1.13) knowingly: it is what
# makes `--partition-range` one run. Said once here rather than on every code-location load.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
