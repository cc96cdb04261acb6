"""Real-data quality benchmark: every project model beside peer libraries, on one split and one candidate set.

    python bench/real_quality.py                       # the three real dumps + one generated sparse dump
    python bench/real_quality.py --only Appliances     # one dataset
    python bench/real_quality.py --setup-peers         # create bench/.venv-peers first (pip, PyPI)

Datasets: the real 2018 5-core files in ``../shared/data/real`` (read in place; skipped, with the reason, when the
folder or a file is absent) at the k each needs once variant copies are collapsed (All_Beauty k=3, Appliances
k=2 with its metadata prefix, Magazine_Subscriptions k=5 with metadata), and a generated dump shaped like real
sparse categories (median ~6-7 ratings per user, Zipf-popular items, some variant families) at the default k=5.

Each dataset runs through the real Dagster job in-process (ingest, variant collapsing, dedup, k-core, temporal
leave-last-out split, text and image features, the cold-item hold-out, every model at its default training
settings; images offline, random CNN weights). Peers then train on the same training split the project models
saw (the warm ``splits/train.parquet``, held-out cold items removed): Cornac's MF, BPR and ItemKNN and
Surprise's SVD, each at its library defaults, in their own venv (``bench/.venv-peers``, pinned in
``bench/requirements-peers.txt``) so the project venv keeps its pins. That subprocess writes predictions for the
test pairs and full score rows (test users x candidate items) back as Parquet; here each peer becomes a small
``ScoringModel`` and every model, project or peer, goes through ``evaluate_model`` with the same candidates
(the training items), the same seeded tie-break and paired bootstrap intervals over users. Popularity is the
project's own ``popularity`` ranker. Where the pipeline held cold items out (items with content), a second table
measures the project models on them with ``evaluate_cold_items`` (peers have no content and are left out).

Targets (issue 10, item 5), printed as met / missed with the margin:
- the best project rating model's test RMSE is better than the best peer's, or within its bootstrap interval;
- the best project ranker's NDCG@10 is at or above every peer's, and clearly above popularity (interval > 0);
- on generated cold items the hybrid/two-tower beat MF and popularity by more than the interval: NDCG@10 on the
  cold protocol, and the hybrid's RMSE against MF's (only when ``rec_pipeline.evaluation`` has the cold-item
  protocol and the pipeline held items out; otherwise "cold protocol not available").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["REC_PIPELINE_REGISTER_ON_LOAD"] = "0"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_REAL_DIR = REPO_DIR.parent / "shared" / "data" / "real"
PEERS_VENV = BENCH_DIR / ".venv-peers"
PEERS_REQUIREMENTS = BENCH_DIR / "requirements-peers.txt"
SEED = 42
K = 10
NDCG = f"ndcg@{K}"
BOOTSTRAP_METRICS = ("rmse", "mae", NDCG, f"recall@{K}", f"hr@{K}")

PEER_RATING_MODELS = ("cornac_mf", "cornac_itemknn", "surprise_svd")
PEER_RANKERS = ("cornac_bpr",)
PEERS = (*PEER_RATING_MODELS, *PEER_RANKERS)
# Rankers predict the training mean for every pair: their rating columns say nothing and are left out.
RANKERS = frozenset({"popularity", "ease", "two_tower", *PEER_RANKERS})
CONTENT_MODELS = ("hybrid", "two_tower")


@dataclass(frozen=True)
class Dataset:
    category: str
    k: int
    reviews: str | None = None  # file name in the real folder; None: generated
    meta: str | None = None


REAL_DATASETS = (
    Dataset("All_Beauty", 3, "All_Beauty_5.json.gz"),
    Dataset("Appliances", 2, "Appliances_5.json.gz", "meta_Appliances.json.gz"),
    Dataset("Magazine_Subscriptions", 5, "Magazine_Subscriptions_5.json.gz", "meta_Magazine_Subscriptions.json.gz"),
)
GENERATED = Dataset("Sparse_Toys", 5)


def generated_spec():  # type: ignore[no-untyped-def]
    """Sparse like the real 5-cores: 8 reviews per user on average over 2,000 Zipf-popular items. After the 5-core:
    ~27.7k interactions, 3.7k users (median 6, p90 11 ratings), 1.3k items, the top 1% of items holding ~23%."""
    from rec_pipeline.sample import SampleSpec

    return SampleSpec(
        category=GENERATED.category,
        release="2018",
        n_users=4000,
        n_items=2000,
        n_reviews=32_000,
        variant_families=0.1,
        seed=11,
    )


# ----- the pipeline's data and models, the pipeline's way --------------------------------------------------------
def pipeline_run_config(k: int) -> dict:
    """Offline feature settings (as the demo: images from the local mirror only, random CNN weights); the models
    keep every default of ``TrainingConfig``."""
    from rec_pipeline.demo import demo_ops_config

    demo = demo_ops_config()
    images = {**demo["item_images"]["config"], "offline": True}
    return {
        "ops": {
            "interactions": {"config": {"k": k}},
            "item_images": {"config": images},
            "image_embeddings": demo["image_embeddings"],
        },
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }


def run_pipeline(root: Path, dataset: Dataset) -> float:
    """Materialize everything up to the trained models (not ``model_metrics``/``recommendations``: evaluated here)."""
    import logging

    import dagster as dg

    from rec_pipeline.automation import MAIN_JOB_NAME
    from rec_pipeline.definitions import build_definitions

    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # per-call retracing notes, not results
    defs = build_definitions(str(root))
    job = defs.resolve_job_def(MAIN_JOB_NAME)
    keys = [
        key for key in defs.resolve_all_asset_keys() if key.to_user_string() not in ("model_metrics", "recommendations")
    ]
    started = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("category", [dataset.category])
        result = job.execute_in_process(
            partition_key=dataset.category,
            instance=instance,
            asset_selection=keys,
            run_config=pipeline_run_config(dataset.k),
            raise_on_error=True,
        )
    assert result.success
    return time.perf_counter() - started


def project_models(root: Path, category: str) -> tuple[dict, dict[str, float], dict[str, str]]:
    """Saved project models, their fit seconds, and the reasons of any the pipeline skipped."""
    from rec_pipeline.assets.training import MODEL_NAMES
    from rec_pipeline.models import load_model
    from rec_pipeline.paths import DataLayout

    layout = DataLayout(root)
    models, seconds, skipped = {}, {}, {}
    for name in MODEL_NAMES:
        directory = layout.model_dir(category, name)
        summary_path = directory.parent / f"{name}.training.json"
        summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        if not (directory / "model.json").exists():
            skipped[name] = summary.get("skipped_reason") or "not trained"
            continue
        models[name] = load_model(directory)
        seconds[name] = float(summary.get("history", {}).get("wall_seconds") or 0.0)
    return models, seconds, skipped


def load_splits(
    root: Path, category: str
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, pl.DataFrame | None, list[str]]:
    """(train, validation, test) as the models were trained on, the cold interactions and the held-out items.

    Pipelines with the cold-item hold-out train on the warm splits; older ones on the splits as written.
    """
    from rec_pipeline.paths import DataLayout

    layout = DataLayout(root)
    try:
        from rec_pipeline.assets.training import cold_item_ids, warm_split
        from rec_pipeline.warehouse import Artifact
    except ImportError:
        train, validation, test = (
            pl.read_parquet(layout.artifact(category, f"splits/{s}.parquet")) for s in ("train", "validation", "test")
        )
        return train, validation, test, None, []
    train, validation, test = (warm_split(layout, category, name) for name in ("train", "validation", "test"))
    held_out = cold_item_ids(layout, category)
    cold_path = layout.artifact(category, Artifact.COLD_INTERACTIONS)
    cold = pl.read_parquet(cold_path) if held_out and cold_path.exists() else None
    return train, validation, test, cold, held_out


# ----- peers: a subprocess of their own venv -------------------------------------------------------------------
class PeerScores:
    """A peer's answers read back from Parquet, behind the ``ScoringModel`` protocol ``evaluate_model`` calls.

    ``item_ids`` are the candidates the scores were computed for. ``predict`` answers the test pairs it was
    given (anything else gets the training mean); ``ranking_scores`` are the peer's own unclipped scores.
    """

    def __init__(
        self, candidates: list[str], users: list[str], scores: np.ndarray, pairs: pl.DataFrame, fallback: float
    ):
        self._items = list(candidates)
        self._row = {user: row for row, user in enumerate(users)}
        self._scores = scores
        self._pairs = {(u, i): p for u, i, p in pairs.select("user_id", "item_id", "prediction").iter_rows()}
        self._fallback = fallback

    @property
    def item_ids(self) -> list[str]:
        return self._items

    def predict(self, user_ids, item_ids) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.array(
            [self._pairs.get((u, i), self._fallback) for u, i in zip(user_ids, item_ids, strict=True)], dtype=np.float32
        )

    def ranking_scores(self, user_ids) -> np.ndarray:  # type: ignore[no-untyped-def]
        rows = [self._row.get(user, -1) for user in user_ids]
        out = np.zeros((len(rows), len(self._items)))
        known = np.array([row >= 0 for row in rows], dtype=bool)
        out[known] = self._scores[[row for row in rows if row >= 0]]
        return out

    def score_users(self, user_ids) -> np.ndarray:  # type: ignore[no-untyped-def]
        return np.clip(self.ranking_scores(user_ids), 1.0, 5.0)


def peers_python(explicit: Path | None) -> Path | None:
    candidate = explicit or PEERS_VENV / "bin" / "python"
    return candidate if candidate.exists() else None


def setup_peers() -> None:
    print(f"creating {PEERS_VENV.relative_to(REPO_DIR)} and installing {PEERS_REQUIREMENTS.name} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run(
        [str(PEERS_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(PEERS_REQUIREMENTS)], check=True
    )


def run_peers(
    python: Path, work: Path, train: pl.DataFrame, test: pl.DataFrame, candidates: list[str]
) -> tuple[dict[str, PeerScores], dict[str, float], dict[str, str], str]:
    """Train every peer on ``train`` in the peers venv; read back their scores as ``PeerScores``."""
    work.mkdir(parents=True, exist_ok=True)
    train.select("user_id", "item_id", "rating").write_parquet(work / "train.parquet")
    test.select("user_id", "item_id").write_parquet(work / "test_pairs.parquet")
    pl.DataFrame({"item_id": candidates}).write_parquet(work / "candidates.parquet")
    proc = subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--peer-worker", str(work)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        reason = "peer subprocess failed: " + " | ".join(tail)
        return {}, {}, {name: reason for name in PEERS}, ""
    report = json.loads((work / "peers.json").read_text())
    fallback = float(train["rating"].mean())  # type: ignore[arg-type]
    models = {}
    for name in report["fitted"]:
        rows = pl.read_parquet(work / f"{name}.scores.parquet")
        models[name] = PeerScores(
            candidates,
            rows["user_id"].to_list(),
            rows["scores"].to_numpy().astype(np.float64),
            pl.read_parquet(work / f"{name}.predictions.parquet"),
            fallback,
        )
    versions = ", ".join(f"{library} {version}" for library, version in report["versions"].items())
    if report["unknown_users"]:
        versions += (
            f"; {report['unknown_users']} test users unknown to training (they rated only held-out cold "
            f"items there) get each library's cold-user scores"
        )
    return models, report["seconds"], report["failed"], versions


def peer_worker(work: Path) -> None:
    """Runs inside the peers venv: fit each peer on train.parquet; write scores for the test users over the
    candidates, predictions for the test pairs (clipped to 1..5, as the project's), fit seconds and failures."""
    train = pl.read_parquet(work / "train.parquet")
    pairs = pl.read_parquet(work / "test_pairs.parquet")
    candidates = pl.read_parquet(work / "candidates.parquet")["item_id"].to_list()
    users = pairs["user_id"].unique().sort().to_list()
    user_row = {user: row for row, user in enumerate(users)}
    item_col = {item: col for col, item in enumerate(candidates)}
    pair_rows = np.array([user_row[u] for u in pairs["user_id"].to_list()])
    pair_cols = np.array([item_col.get(i, -1) for i in pairs["item_id"].to_list()])
    mean = float(train["rating"].mean())  # type: ignore[arg-type]
    triples = list(train.select("user_id", "item_id", "rating").iter_rows())
    known_users = set(train["user_id"].unique().to_list())
    report: dict = {
        "fitted": [],
        "seconds": {},
        "failed": {},
        "versions": {},
        "unknown_users": sum(user not in known_users for user in users),
    }

    def save(name: str, scores: np.ndarray, rating_model: bool) -> None:
        predicted = np.full(len(pair_rows), mean)
        if rating_model:
            known = pair_cols >= 0
            predicted[known] = np.clip(scores[pair_rows[known], pair_cols[known]], 1.0, 5.0)
        pl.DataFrame({"user_id": users, "scores": scores.astype(np.float32)}).write_parquet(
            work / f"{name}.scores.parquet"
        )
        pairs.with_columns(prediction=pl.Series(predicted)).write_parquet(work / f"{name}.predictions.parquet")
        report["fitted"].append(name)

    def run(name: str, fit_and_score) -> None:  # type: ignore[no-untyped-def]
        try:
            fit_and_score(name)
        except Exception as exc:  # noqa: BLE001 - one failing peer must not hide the others
            report["failed"][name] = f"{type(exc).__name__}: {exc}"

    try:
        import cornac
        from cornac.models import BPR, MF, ItemKNN

        report["versions"]["cornac"] = cornac.__version__
        dataset = cornac.data.Dataset.from_uir(triples, seed=SEED)
        user_idx = [dataset.uid_map.get(user) for user in users]
        item_idx = np.array([dataset.iid_map[item] for item in candidates])

        def cornac_peer(model, rating_model: bool, unknown_user):  # type: ignore[no-untyped-def]
            """``unknown_user(model)``: the scores of a test user absent from training (all their training ratings
            were on held-out cold items): what the library itself falls back to."""

            def fit_and_score(name: str) -> None:
                started = time.perf_counter()
                model.fit(dataset)
                report["seconds"][name] = time.perf_counter() - started
                rows = [model.score(u) if u is not None else unknown_user(model) for u in user_idx]
                save(name, np.stack([np.asarray(row, dtype=np.float64)[item_idx] for row in rows]), rating_model)

            return fit_and_score

        # MF: global mean + item bias (its own cold-user path); BPR: item bias; ItemKNN: Cornac's default_score.
        run("cornac_mf", cornac_peer(MF(seed=SEED), True, lambda model: model.score(-1)))
        run("cornac_bpr", cornac_peer(BPR(seed=SEED), False, lambda model: np.copy(model.i_biases)))
        run(
            "cornac_itemknn",
            cornac_peer(ItemKNN(verbose=False), True, lambda model: np.full(model.num_items, model.default_score())),
        )
    except ImportError as exc:
        for name in ("cornac_mf", "cornac_bpr", "cornac_itemknn"):
            report["failed"][name] = f"cornac does not import: {exc}"

    try:
        import pandas as pd
        import surprise

        report["versions"]["scikit-surprise"] = surprise.__version__

        def svd(name: str) -> None:
            frame = pd.DataFrame(triples, columns=["user_id", "item_id", "rating"])
            trainset = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(1, 5))).build_full_trainset()
            algo = surprise.SVD(random_state=SEED)
            started = time.perf_counter()
            algo.fit(trainset)
            report["seconds"][name] = time.perf_counter() - started
            # SVD.estimate, vectorized: mu + b_u + b_i + q_i . p_u (unclipped; predictions clip as surprise does).
            # A user unknown to training gets mu + b_i, as SVD.estimate does.
            known = np.array([trainset.knows_user(trainset._raw2inner_id_users.get(user, -1)) for user in users])
            u = np.array([trainset.to_inner_uid(user) if ok else 0 for user, ok in zip(users, known, strict=True)])
            i = np.array([trainset.to_inner_iid(item) for item in candidates])
            user_part = np.where(known[:, None], algo.bu[u][:, None] + algo.pu[u] @ algo.qi[i].T, 0.0)
            save(name, trainset.global_mean + algo.bi[i][None, :] + user_part, rating_model=True)

        run("surprise_svd", svd)
    except ImportError as exc:
        report["failed"]["surprise_svd"] = f"scikit-surprise does not import (not installed or failed to build): {exc}"
    (work / "peers.json").write_text(json.dumps(report))


# ----- evaluation and report -----------------------------------------------------------------------------------
def evaluate_all(
    models: dict, train: pl.DataFrame, validation: pl.DataFrame, test: pl.DataFrame, candidates: list[str]
):  # type: ignore[no-untyped-def]
    from rec_pipeline.evaluation import EvaluationOptions, compare_models, evaluate_model

    options = EvaluationOptions(ks=(K,), seed=0)  # model_metrics' defaults: full protocol, relevant = rating >= 4
    results = {
        name: evaluate_model(model, train, test, validation=validation, options=options, candidates=candidates)
        for name, model in models.items()
    }
    comparison = compare_models({name: r.user_stats for name, r in results.items()}, BOOTSTRAP_METRICS, 200, seed=0)
    return results, comparison


def evaluate_cold(
    models: dict,
    train: pl.DataFrame,
    validation: pl.DataFrame,
    test: pl.DataFrame,
    cold: pl.DataFrame,  # type: ignore[type-arg]
    held_out: list[str],
    candidates: list[str],
):  # type: ignore[no-untyped-def]
    """The project models on the held-out items, exactly as ``model_metrics`` does (its candidates, its history)."""
    from rec_pipeline.evaluation import EvaluationOptions, cold_candidates, compare_models, evaluate_cold_items

    options = EvaluationOptions(ks=(K,), seed=0)
    candidates_cold = cold_candidates(held_out, candidates, options.seed)
    history = pl.concat([validation, test], how="vertical_relaxed")
    results = {
        name: evaluate_cold_items(model, train, cold, candidates_cold, history, options)
        for name, model in models.items()
        if name not in PEERS
    }
    comparison = compare_models(
        {name: r.user_stats for name, r in results.items()}, ("rmse", NDCG, f"recall@{K}"), 200, seed=0
    )
    return results, comparison


def print_cold(results, comparison, n_held_out: int) -> None:  # type: ignore[no-untyped-def]
    from _measure import print_table

    rows = []
    for name, result in results.items():
        m = result.metrics
        ranker = name in RANKERS
        rows.append(
            {
                "model": name,
                "rmse_cold": "–" if ranker else f"{m['rmse']:.4f}",
                "rmse_cold vs best [95%]": "ranker"
                if ranker
                else "best"
                if comparison.best["rmse"] == name
                else comparison.intervals[name]["rmse"].compact(3),
                f"ndcg_cold@{K}": f"{m[NDCG]:.4f}",
                f"recall_cold@{K}": f"{m[f'recall@{K}']:.4f}",
                f"ndcg_cold@{K} vs best [95%]": "best"
                if comparison.best[NDCG] == name
                else comparison.intervals[name][NDCG].compact(3),
            }
        )
    print_table(rows)
    counts = next(iter(results.values())).counts
    print(
        f"\nCold items: {n_held_out:,} items with content held out of all training; "
        f"{counts['n_test']:,} of their ratings by known users; each user's relevant cold items ranked among "
        f"{counts['n_candidates']:,} candidates (every cold item + as many sampled warm ones), "
        f"{counts['n_users_evaluated']:,} users ranked. Models that cannot score "
        f"an unseen item use their item-agnostic score (rmse: the user/global mean). Peers have no content: not shown."
    )


def cold_checks(results, comparison) -> list[tuple[str, bool | None]]:  # type: ignore[no-untyped-def]
    """Each content model against MF and popularity on cold NDCG@10, and the hybrid against MF on cold RMSE."""
    checks: list[tuple[str, bool | None]] = []
    metric_label = {"rmse": "rmse_cold", NDCG: f"ndcg_cold@{K}"}
    pairs = [(c, b, NDCG) for c in CONTENT_MODELS for b in ("mf", "popularity")] + [("hybrid", "mf", "rmse")]
    for model, baseline, metric in pairs:
        if model not in results or baseline not in results:
            checks.append((f"cold items: {model} vs {baseline}: not both evaluated", None))
            continue
        gap = comparison.difference(model, baseline, metric)
        lower = metric == "rmse"
        ok = gap.low is not None and gap.high is not None and (gap.high < 0 if lower else gap.low > 0)
        a, b = results[model].metrics[metric], results[baseline].metrics[metric]
        better = gap.diff is not None and (gap.diff < 0 if lower else gap.diff > 0)
        how = (
            "beats it by more than the interval"
            if ok
            else ("better, but within the interval" if better else f"missed: worse by {abs(gap.diff or 0.0):.4f}")
        )
        checks.append(
            (f"cold items: {model} {metric_label[metric]} {a:.4f} vs {baseline} {b:.4f}: {gap.compact(4)}: {how}", ok)
        )
    return checks


def source_of(name: str) -> str:
    return name.split("_", 1)[0] if name in PEERS else "project"


def print_results(results, comparison, seconds: dict[str, float]) -> None:  # type: ignore[no-untyped-def]
    from _measure import print_table

    def fmt(value: float | None, digits: int = 4) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    rows = []
    for name, result in results.items():
        m = result.metrics
        ranker = name in RANKERS
        rmse_vs = "ranker" if ranker else comparison.intervals[name]["rmse"].compact(3)
        rows.append(
            {
                "model": name,
                "from": source_of(name),
                "fit_s": f"{seconds.get(name, 0.0):.2f}",
                "rmse": "–" if ranker else fmt(m["rmse"]),
                "mae": "–" if ranker else fmt(m["mae"]),
                "rmse vs best [95%]": "best" if comparison.best["rmse"] == name else rmse_vs,
                NDCG: fmt(m[NDCG]),
                f"recall@{K}": fmt(m[f"recall@{K}"]),
                f"hr@{K}": fmt(m[f"hr@{K}"]),
                f"coverage@{K}": fmt(m[f"coverage@{K}"], 3),
                f"{NDCG} vs best [95%]": "best"
                if comparison.best[NDCG] == name
                else comparison.intervals[name][NDCG].compact(3),
            }
        )
    print_table(rows)
    any_result = next(iter(results.values()))
    counts = any_result.counts
    print(
        f"\n{any_result.protocol}; {counts['n_candidates']:,} candidate items (the training items), "
        f"{counts['n_users_evaluated']:,} of {counts['n_test_users']:,} test users ranked, {counts['n_test']:,} test "
        f"ratings; seeded tie-break; intervals: paired bootstrap over users, 200 resamples. Rankers "
        f"({', '.join(n for n in results if n in RANKERS)}) predict the training mean: rating columns left out."
    )


def best_of(results, names, metric: str, lower: bool) -> str | None:  # type: ignore[no-untyped-def]
    defined = [
        (results[n].metrics[metric], n) for n in names if n in results and results[n].metrics[metric] is not None
    ]
    if not defined:
        return None
    return (min if lower else max)(defined)[1]


def check_targets(results, comparison) -> list[tuple[str, bool | None]]:  # type: ignore[no-untyped-def]
    checks: list[tuple[str, bool | None]] = []
    value = lambda name, metric: results[name].metrics[metric]  # noqa: E731
    project = [name for name in results if name not in PEERS]
    proj = best_of(results, [name for name in project if name not in RANKERS], "rmse", lower=True)
    peer = best_of(results, PEER_RATING_MODELS, "rmse", lower=True)
    if proj and peer:
        gap = comparison.difference(proj, peer, "rmse")
        ok = gap.diff is not None and (gap.diff <= 0 or (gap.low is not None and gap.low <= 0))
        how = (
            ("better" if gap.diff <= 0 else "within the interval")
            if ok
            else f"missed by {gap.diff:.4f} (interval excludes 0)"
        )
        checks.append(
            (
                f"best project rating model `{proj}` RMSE {value(proj, 'rmse'):.4f} vs best peer `{peer}` "
                f"{value(peer, 'rmse'):.4f}: {gap.compact(4)}: {how}",
                ok,
            )
        )
    else:
        checks.append(("RMSE vs peers: no peer rating model ran", None))
    ranker = best_of(results, [name for name in project if name != "popularity"], NDCG, lower=False)
    peer = best_of(results, PEERS, NDCG, lower=False)
    if ranker and peer:
        gap = comparison.difference(ranker, peer, NDCG)
        ok = gap.diff is not None and gap.diff >= 0
        how = "met" if ok else f"missed by {-gap.diff:.4f}"
        tie = " (tied within the interval)" if not ok and gap.contains_zero else ""
        checks.append(
            (
                f"best project ranker `{ranker}` {NDCG} {value(ranker, NDCG):.4f} >= every peer's (best peer "
                f"`{peer}` {value(peer, NDCG):.4f}): {gap.compact(4)}: {how}{tie}",
                ok,
            )
        )
    else:
        checks.append((f"{NDCG} vs peers: no peer ran", None))
    if ranker and "popularity" in results:
        gap = comparison.difference(ranker, "popularity", NDCG)
        ok = gap.low is not None and gap.low > 0
        how = (
            "clearly above"
            if ok
            else (
                f"missed: below by {-gap.diff:.4f}"
                if gap.diff is not None and gap.diff < 0
                else "missed: not clearly above (the interval reaches 0)"
            )
        )
        checks.append(
            (
                f"best project ranker `{ranker}` {NDCG} {value(ranker, NDCG):.4f} vs popularity "
                f"{value('popularity', NDCG):.4f}: {gap.compact(4)}: {how}",
                ok,
            )
        )
    return checks


def cold_protocol_available() -> bool:
    """Whether ``rec_pipeline.evaluation`` has the item cold-start protocol (``evaluate_cold_items``)."""
    import rec_pipeline.evaluation as evaluation

    return hasattr(evaluation, "evaluate_cold_items")


def prepare_root(root: Path, dataset: Dataset, real_dir: Path) -> str | None:
    """Fill ``root/raw`` for ``dataset`` (real files are linked, read in place); a reason string when skipped."""
    raw = root / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    if dataset.reviews is None:
        from rec_pipeline.sample import write_sample

        write_sample(root, generated_spec())
        return None
    if not real_dir.is_dir():
        return f"real data folder {real_dir} is absent"
    for name in (dataset.reviews, dataset.meta):
        if name is None:
            continue
        if not (real_dir / name).is_file():
            return f"{real_dir / name} is absent"
        (raw / name).symlink_to((real_dir / name).resolve())
    return None


def bench_dataset(
    dataset: Dataset, real_dir: Path, out: Path, python: Path | None, peer_note: str
) -> list[tuple[str, bool | None]]:
    label = "generated" if dataset.reviews is None else "real 2018 5-core" + (" + metadata" if dataset.meta else "")
    print(f"\n## {dataset.category} ({label}, k={dataset.k})\n", flush=True)
    root = out / dataset.category
    shutil.rmtree(root, ignore_errors=True)
    reason = prepare_root(root, dataset, real_dir)
    if reason is not None:
        print(f"skipped: {reason}")
        return []
    wall = run_pipeline(root, dataset)
    from rec_pipeline.evaluation import default_candidates
    from rec_pipeline.paths import DataLayout

    layout = DataLayout(root)
    train, validation, test, cold, held_out = load_splits(root, dataset.category)
    interactions = pl.read_parquet(layout.artifact(dataset.category, "interactions.parquet"))
    per_user = interactions.group_by("user_id").len()["len"]
    per_item = interactions.group_by("item_id").len()["len"].sort(descending=True)
    top = per_item.head(max(1, per_item.len() // 100)).sum() / interactions.height
    print(
        f"{interactions.height:,} interactions, {per_user.len():,} users (median {per_user.median():.0f} ratings, "
        f"p90 {per_user.quantile(0.9):.0f}), {per_item.len():,} items (median {per_item.median():.0f}, max "
        f"{per_item.max():,}, top 1% of items hold {top:.0%}); split train/validation/test "
        f"{train.height:,}/{validation.height:,}/{test.height:,} (temporal leave-last-out"
        f"{f'; {len(held_out):,} cold items held out' if held_out else ''}); pipeline {wall:.0f} s"
    )
    candidates = default_candidates(train)
    models, seconds, skipped = project_models(root, dataset.category)
    failed: dict[str, str] = {}
    if python is not None:
        peers, peer_seconds, failed, versions = run_peers(
            python, out / f"{dataset.category}.peers", train, test, candidates
        )
        models.update(peers)
        seconds.update(peer_seconds)
        print(f"peers: {versions}; library defaults, seed 42")
    else:
        failed = {name: peer_note for name in PEERS}
    for name, why in {**skipped, **failed}.items():
        print(f"not in the table: {name}: {why}")
    print()
    results, comparison = evaluate_all(models, train, validation, test, candidates)
    print_results(results, comparison, seconds)
    checks = check_targets(results, comparison)
    if cold is not None and cold_protocol_available():
        print()
        cold_results, cold_comparison = evaluate_cold(models, train, validation, test, cold, held_out, candidates)
        print_cold(cold_results, cold_comparison, len(held_out))
        if dataset.reviews is None:
            checks += cold_checks(cold_results, cold_comparison)
    elif dataset.reviews is None:
        checks.append(("cold items: cold protocol not available", None))
    print("\nTargets:")
    for text, ok in checks:
        print(f"  [{'n/a' if ok is None else 'met' if ok else 'MISSED'}] {text}")
    return [(f"{dataset.category}: {text}", ok) for text, ok in checks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real-dir", type=Path, default=DEFAULT_REAL_DIR)
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one, removed after)")
    parser.add_argument("--only", action="append", help="run only this category (repeatable)")
    parser.add_argument("--peers-python", type=Path, default=None, help=f"default: {PEERS_VENV}/bin/python")
    parser.add_argument("--setup-peers", action="store_true", help="create the peers venv from requirements-peers.txt")
    parser.add_argument("--peer-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_worker is not None:
        peer_worker(args.peer_worker)
        return
    if args.setup_peers and peers_python(args.peers_python) is None:
        setup_peers()
    python = peers_python(args.peers_python)
    peer_note = (
        f"no peers venv: run `python bench/real_quality.py --setup-peers` (or python3.11 -m venv {PEERS_VENV.name} "
        f"&& pip install -r {PEERS_REQUIREMENTS.name})"
    )
    if python is None:
        print(peer_note)
    datasets = [d for d in (*REAL_DATASETS, GENERATED) if not args.only or d.category in args.only]
    out = args.out or Path(tempfile.mkdtemp(prefix="real_quality_"))
    summary: list[tuple[str, bool | None]] = []
    try:
        for dataset in datasets:
            summary += bench_dataset(dataset, args.real_dir, out, python, peer_note)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    print("\n## Targets, all datasets\n")
    for text, ok in summary:
        print(f"[{'n/a' if ok is None else 'met' if ok else 'MISSED'}] {text}")


if __name__ == "__main__":
    main()
