"""``dagster dev`` end to end: the UI serves every definition, runs a partition, and draws the asset graph.

Everything goes through the interfaces a person uses: the webserver's GraphQL API (what the UI itself calls)
and a real headless browser. The screenshot is kept under ``test-artifacts/`` for a human to look at.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from rec_pipeline.definitions import defs
from rec_pipeline.paths import DataLayout
from rec_pipeline_tests.ops.conftest import (
    REPO_ROOT,
    chromium_command,
    cli,
    link_real_dumps,
    process_group,
    run_cli,
    subprocess_env,
)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACT_DIR = REPO_ROOT / "test-artifacts"
TERMINAL = {"SUCCESS", "FAILURE", "CANCELED"}

REPOSITORY_QUERY = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    name location { name }
    assetNodes { assetKey { path } assetChecksOrError { ... on AssetChecks { checks { name } } } }
    sensors { name jobOriginId sensorState { selectorId status } }
    schedules { name scheduleState { status } }
} } } }
"""
LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on Error { message }
    ... on RunConfigValidationInvalid { errors { message } }
} }
"""
RUN_STATUS = "query Status($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
PARTITION_STATS = """
{ assetNodes(assetKeys: [{path: ["raw_reviews"]}]) { partitionStats { numMaterialized numPartitions } } }
"""
STOP_SENSOR = """
mutation Stop($origin: String!, $selector: String!) { stopSensor(jobOriginId: $origin, jobSelectorId: $selector) {
    __typename ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message }
} }
"""


EXPECTED_IN_GRAPH = ("raw_reviews", "raw_items", "50% filled", "2 / 2 Passed")


def _graphql(client: httpx.Client, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    response = client.post("/graphql", json={"query": query, "variables": variables or {}})
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _wait_until_serving(client: httpx.Client, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"dagster dev exited with {proc.returncode}:\n{log.read_text()[-4000:]}"
        try:
            if client.get("/server_info").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the webserver did not answer /server_info within {timeout_s} s:\n{log.read_text()[-4000:]}")


def _wait_for_run(client: httpx.Client, run_id: str, log: Path, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _graphql(client, RUN_STATUS, {"id": run_id})["runOrError"]["status"]
        if status in TERMINAL:
            return status
        time.sleep(1)
    pytest.fail(f"run {run_id} did not finish within {timeout_s} s:\n{log.read_text()[-4000:]}")


def _run_chromium(command: list[str]) -> str:
    """Run Chromium once and return its stdout; its D-Bus complaints on stderr are expected in containers."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_dagster_dev_serves_the_definitions_runs_a_partition_and_draws_the_asset_graph(
    dagster_home: Path, data_dir: Path, free_port: int, chromium: Path, tmp_path: Path
) -> None:
    link_real_dumps(data_dir / "raw", ["All_Beauty_5.json.gz", "Appliances_5.json.gz"])
    env = subprocess_env(dagster_home, data_dir)
    # The landing sensor is on by default and would launch full ingest-and-features runs for both dumps on the
    # daemon's first tick; stopping it beforehand (the state lives in the instance) keeps this test to one run.
    run_cli([cli("dagster"), "sensor", "stop", "landing_sensor", "-m", "rec_pipeline.definitions"], env)

    log = tmp_path / "dagster_dev.log"
    command = [cli("dagster"), "dev", "-h", "127.0.0.1", "-p", str(free_port), "-m", "rec_pipeline.definitions"]
    with (
        process_group(command, env, log) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{free_port}", timeout=60) as client,
    ):
        _wait_until_serving(client, proc, log)

        [repository] = _graphql(client, REPOSITORY_QUERY)["repositoriesOrError"]["nodes"]
        location = repository["location"]["name"]
        asset_graph = defs.resolve_asset_graph()
        served_assets = {"/".join(node["assetKey"]["path"]) for node in repository["assetNodes"]}
        assert served_assets == {key.to_user_string() for key in asset_graph.get_all_asset_keys()}
        served_checks = {
            ("/".join(node["assetKey"]["path"]), check["name"])
            for node in repository["assetNodes"]
            for check in node["assetChecksOrError"]["checks"]
        }
        assert served_checks == {(key.asset_key.to_user_string(), key.name) for key in asset_graph.asset_check_keys}
        sensors = {sensor["name"]: sensor for sensor in repository["sensors"]}
        assert {"landing_sensor", "run_failure_recorder"} <= set(sensors)
        assert sensors["landing_sensor"]["sensorState"]["status"] == "STOPPED"  # the CLI and the UI share state
        assert sensors["run_failure_recorder"]["sensorState"]["status"] == "RUNNING"
        assert sensors["run_reaper"]["sensorState"]["status"] == "RUNNING"
        assert [schedule["name"] for schedule in repository["schedules"]] == ["retrain_schedule"]
        # Eager automation would materialize interactions and splits after our run; it has nothing to do before,
        # so stopping it now is race-free and keeps the two cores for the run under test.
        automation = sensors["default_automation_condition_sensor"]
        # On by default in a fresh instance (declared RUNNING in definitions): the README's eager promise holds.
        assert automation["sensorState"]["status"] == "RUNNING"
        stopped = _graphql(
            client,
            STOP_SENSOR,
            {"origin": automation["jobOriginId"], "selector": automation["sensorState"]["selectorId"]},
        )
        assert stopped["stopSensor"]["__typename"] == "StopSensorMutationResult", stopped

        # Both landed dumps were registered as partitions when the code server loaded the definitions.
        stats = _graphql(client, PARTITION_STATS)["assetNodes"][0]["partitionStats"]
        assert stats == {"numMaterialized": 0, "numPartitions": 2}

        params = {
            "selector": {
                "repositoryLocationName": location,
                "repositoryName": repository["name"],
                "jobName": "__ASSET_JOB",
                "assetSelection": [{"path": ["raw_reviews"]}],
            },
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "All_Beauty"}]},
            "runConfigData": {},
        }
        launched = _graphql(client, LAUNCH_RUN, {"params": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        # Queued, dequeued by the daemon, launched in its own process: the whole production path.
        assert _wait_for_run(client, launched["run"]["runId"], log) == "SUCCESS", log.read_text()[-4000:]
        assert DataLayout(data_dir).artifact("All_Beauty", "raw_reviews.parquet").is_file()
        assert _graphql(client, PARTITION_STATS)["assetNodes"][0]["partitionStats"]["numMaterialized"] == 1

        # The first visit from localhost opens a newsletter dialog over the graph; dismiss it as a user would.
        assert _graphql(client, "mutation { setNuxSeen }")["setNuxSeen"] is True
        page = f"http://127.0.0.1:{free_port}/locations/{location}/asset-groups/ingestion"
        ARTIFACT_DIR.mkdir(exist_ok=True)
        screenshot = ARTIFACT_DIR / "asset_graph_ingestion.png"
        screenshot.unlink(missing_ok=True)
        # Virtual time lets the UI's polling settle without waiting, but on a loaded machine its GraphQL answers can
        # still arrive after the budget: render again (bounded) until the graph, not a spinner, is in the DOM.
        dom = ""
        for attempt, budget_ms in enumerate((15_000, 30_000, 60_000)):
            budget = f"--virtual-time-budget={budget_ms}"
            dom = _run_chromium(
                chromium_command(chromium, tmp_path / f"chromium-dom-{attempt}", budget, "--dump-dom", page)
            )
            if all(text in dom for text in EXPECTED_IN_GRAPH):
                break
        _run_chromium(
            chromium_command(chromium, tmp_path / "chromium-shot", budget, f"--screenshot={screenshot}", page)
        )

    # The rendered graph, not a spinner: both asset nodes, their partition fill and checks are in the DOM.
    for text in EXPECTED_IN_GRAPH:
        assert text in dom, text
    assert "Join the Dagster community" not in dom
    with Image.open(screenshot) as image:
        assert image.size == (1600, 1000)
        colors = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colors is None or len(colors) > 100, "the screenshot is (nearly) blank"
