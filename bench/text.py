"""Item text benchmark: rec_pipeline's cleaning + vectorizing vs the way notebooks do it.

    python bench/text.py                 # 200,000 synthetic items
    python bench/text.py --items 50000

Generates synthetic items in the items schema (titles, features and descriptions with HTML, entities, CSS,
some titles that are whole HTML documents, some empty items), trains one Word2Vec model on a subsample, then
times, in the same process and on the same data and model:

- rec_pipeline: ``clean_item_text`` (polars expressions) + ``item_vectors`` (one sparse matrix product);
- baseline: pandas ``DataFrame.apply`` of a per-item cleaning function (re + html.unescape + nltk
  RegexpTokenizer + stopword set) + per-item Python averaging of ``model.wv[token]`` vectors.

and prints items/second for each stage, plus how often the two agree on the tokens (the baseline's regexes
are simpler, so CSS and URLs survive in it) and the mean cosine between the two vectors of the same item.
"""

from __future__ import annotations

import argparse
import html
import re
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _measure import print_table  # noqa: E402

from rec_pipeline.schema import ITEM_SCHEMA  # noqa: E402
from rec_pipeline.text.clean import TOKEN_PATTERN, TextCleaningOptions, clean_item_text  # noqa: E402
from rec_pipeline.text.stopwords import load_stopwords  # noqa: E402
from rec_pipeline.text.vectors import item_vectors  # noqa: E402
from rec_pipeline.text.word2vec import Word2VecOptions, train_word2vec  # noqa: E402

HTML_TITLE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>{w0}</title>"
    "<style type='text/css'>.aplus-v2 .a-box {{ margin: 0 auto; width: 970px; }}</style>"
    "<script>var x = 1;</script></head><body><div class='title'><h1>{words}</h1></div></body></html>"
)
DECORATIONS = ("<b>{}</b>", "{}<br>", "<p>{}</p>", "{} &amp;", "&nbsp;{}", "{}&#39;s", "caf\u00e9 {}", "{} 2019")


def synthetic_items(n_items: int, seed: int = 7) -> pl.DataFrame:
    """Items with Zipf-distributed pseudo-words, so Word2Vec and the stopword filter see a realistic spread."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = ["".join(rng.choice(letters, rng.integers(3, 10))) for _ in range(8000)]
    vocabulary[:40] = [
        "the",
        "and",
        "for",
        "with",
        "this",
        "is",
        "of",
        "to",
        "in",
        "a",
        "it",
        "on",
        "you",
        "your",
        "are",
        "be",
        "can",
        "not",
        "all",
        "from",
        "steel",
        "black",
        "set",
        "pack",
        "kitchen",
        "home",
        "cable",
        "usb",
        "case",
        "cover",
        "light",
        "water",
        "bottle",
        "toy",
        "kids",
        "women",
        "men",
        "size",
        "large",
        "small",
    ]
    words = np.array(vocabulary, dtype=object)

    def phrases(count: int, low: int, high: int) -> list[str]:
        lengths = rng.integers(low, high, count)
        flat = words[np.minimum(rng.zipf(1.3, int(lengths.sum())) - 1, len(words) - 1)].tolist()
        decorate = rng.random(count) < 0.3
        styles = rng.integers(0, len(DECORATIONS), count)
        out, start = [], 0
        for i, length in enumerate(lengths.tolist()):
            text = " ".join(flat[start : start + length])
            start += length
            out.append(DECORATIONS[styles[i]].format(text) if decorate[i] else text)
        return out

    titles = phrases(n_items, 4, 12)
    html_rows = np.flatnonzero(rng.random(n_items) < 0.05)
    for row in html_rows.tolist():
        titles[row] = HTML_TITLE.format(w0=titles[row].split()[0], words=titles[row])
    n_features = rng.integers(0, 5, n_items)
    n_description = rng.integers(0, 3, n_items)
    feature_pool, description_pool = phrases(int(n_features.sum()), 4, 16), phrases(int(n_description.sum()), 20, 120)

    def split(pool: list[str], counts: np.ndarray) -> list[list[str]]:
        ends = np.cumsum(counts).tolist()
        return [pool[end - count : end] for end, count in zip(ends, counts.tolist(), strict=True)]

    features, descriptions = split(feature_pool, n_features), split(description_pool, n_description)
    empty = rng.random(n_items) < 0.02  # items whose text fields are all empty: categories/brand fallback
    for row in np.flatnonzero(empty).tolist():
        titles[row], features[row], descriptions[row] = "", [], []
    categories = [["Home & Kitchen", vocabulary[40 + i % 200]] for i in range(n_items)]
    return pl.DataFrame(
        {
            "item_id": [f"B{i:09d}" for i in range(n_items)],
            "title": titles,
            "brand": [vocabulary[300 + i % 500] for i in range(n_items)],
            "categories": categories,
            "description": descriptions,
            "features": features,
            "price": rng.uniform(1, 100, n_items).round(2),
            "image_urls": [[] for _ in range(n_items)],
            "source_line": np.arange(1, n_items + 1),
        },
        schema=ITEM_SCHEMA,
    )


def notebook_baseline_clean(frame, stopwords: frozenset[str]):  # type: ignore[no-untyped-def]
    """What a notebook does: a per-item function over rows with DataFrame.apply."""
    from nltk.tokenize import RegexpTokenizer

    tokenizer = RegexpTokenizer(TOKEN_PATTERN)

    def clean(row) -> list[str]:  # type: ignore[no-untyped-def]
        text = " ".join([row["title"] or "", *row["features"], *row["description"]])
        if not text.strip():
            text = " ".join(row["categories"]) or row["brand"] or ""
        text = re.sub(r"(?is)<(script|style).*?</\1>", " ", text)
        text = re.sub(r"<[^>]+>", " ", text)
        text = html.unescape(text)
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
        return [t for t in tokenizer.tokenize(text) if len(t) >= 2 and not t.isdigit() and t not in stopwords]

    return frame.apply(clean, axis=1)


def notebook_baseline_vectors(tokens, wv) -> np.ndarray:  # type: ignore[no-untyped-def]
    def average(item_tokens: list[str]) -> np.ndarray:
        found = [wv[t] for t in item_tokens if t in wv.key_to_index]
        return np.mean(found, axis=0) if found else np.zeros(wv.vector_size, dtype=np.float32)

    return np.vstack(tokens.apply(average).to_list()).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--train-items", type=int, default=20_000, help="Word2Vec is trained once on this many")
    parser.add_argument("--vector-size", type=int, default=100)
    args = parser.parse_args()

    started = time.perf_counter()
    items = synthetic_items(args.items)
    print(f"generated {items.height:,} items in {time.perf_counter() - started:.1f}s", flush=True)
    stopwords = load_stopwords()
    options = TextCleaningOptions()

    sample, _ = clean_item_text(items.head(args.train_items), options, stopwords)
    started = time.perf_counter()
    model = train_word2vec(sample["tokens"], Word2VecOptions(vector_size=args.vector_size, epochs=3, workers=2))
    print(
        f"word2vec: {len(model.wv):,} words, trained on {sample.height:,} items in "
        f"{time.perf_counter() - started:.1f}s",
        flush=True,
    )

    started = time.perf_counter()
    cleaned, report = clean_item_text(items, options, stopwords)
    ours_clean = time.perf_counter() - started
    started = time.perf_counter()
    ours_vectors, ours_mask = item_vectors(cleaned["tokens"], model.wv)
    ours_vec = time.perf_counter() - started
    print(f"rec_pipeline done ({report.n_empty:,} empty items, {report.mean_tokens:.1f} tokens/item)", flush=True)

    frame = items.to_pandas()  # conversion not timed: a notebook would have read the data with pandas
    started = time.perf_counter()
    base_tokens = notebook_baseline_clean(frame, stopwords.words)
    base_clean = time.perf_counter() - started
    started = time.perf_counter()
    base_vectors = notebook_baseline_vectors(base_tokens, model.wv)
    base_vec = time.perf_counter() - started

    n = items.height
    rows = []
    for stage, ours, base in (
        ("clean", ours_clean, base_clean),
        ("vectorize (mean)", ours_vec, base_vec),
        ("clean + vectorize", ours_clean + ours_vec, base_clean + base_vec),
    ):
        rows.append(
            {
                "stage": stage,
                "rec_pipeline_s": f"{ours:.2f}",
                "baseline_s": f"{base:.2f}",
                "rec_pipeline_items_per_s": f"{n / ours:,.0f}",
                "baseline_items_per_s": f"{n / base:,.0f}",
                "speedup": f"{base / ours:.1f}x",
            }
        )
    print()
    print_table(rows)

    same_tokens = float(
        np.mean([a == b for a, b in zip(cleaned["tokens"].to_list(), base_tokens.to_list(), strict=True)])
    )
    both = ours_mask & (np.linalg.norm(base_vectors, axis=1) > 0)
    cos = np.sum(ours_vectors[both] * base_vectors[both], axis=1) / (
        np.linalg.norm(ours_vectors[both], axis=1) * np.linalg.norm(base_vectors[both], axis=1)
    )
    print(
        f"\nitems with identical tokens in both: {same_tokens:.1%}; mean cosine of the two vectors: "
        f"{float(cos.mean()):.4f} over {int(both.sum()):,} items"
    )


if __name__ == "__main__":
    main()
