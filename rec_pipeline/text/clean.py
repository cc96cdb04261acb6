"""One cleaned token list per item, built from the item's title, features, description, categories and brand.

Everything that touches every item is a polars string expression: a per-item Python function is several times slower
on millions of items (see ``bench/text.py``). Python runs only over *unique* tokens (stemming) and for the
content hash, where polars has no stable digest.

Text composition (``compose_item_text``), in this order of preference:

1. title + features + description, whichever of the three have visible text, joined by spaces;
2. if all three are empty: the categories, joined;
3. if those are empty too: the brand;
4. otherwise the text is empty and ``text_source`` is ``"none"``.

A field counts as empty when, after markup removal, it holds no letter or digit (a title that is a whole HTML
document with nothing but tags and CSS is empty).

Cleaning (``clean_item_text``), applied to the composed text:

- markup: ``<script>``/``<style>`` blocks, comments, tags, CSS rule blocks (``sel { prop: value }``) and
  class-like selectors (``.aplus-v2``), URLs and HTML entities are removed (``&lt;``/``&gt;`` are decoded first
  so escaped tags are removed too; accented-letter entities such as ``&eacute;`` keep their base letter);
- non-ASCII: Unicode NFKD, then combining marks are dropped (``café`` -> ``cafe``, full-width letters fold to
  ASCII) and any remaining non-ASCII character (CJK, emoji, curly quotes) becomes a separator;
- tokens: maximal runs of ASCII letters and digits (``TOKEN_PATTERN``, the same tokens as
  ``nltk.tokenize.RegexpTokenizer(TOKEN_PATTERN)``); all punctuation, apostrophes included, separates tokens
  (``don't`` -> ``don``, ``t``; ``3.5mm`` -> ``3``, ``5mm``);
- numbers: with ``drop_numbers`` tokens made only of digits are dropped; mixed tokens such as ``mp3``, ``5mm``
  or ``x100`` are kept, since model names and units carry meaning;
- tokens shorter than ``min_token_length`` and stopwords (compared case-insensitively) are dropped, then the
  optional Porter stemming runs.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import polars as pl
from nltk.stem import PorterStemmer

from rec_pipeline.text.stopwords import Stopwords, load_stopwords

# Bump when the cleaning rules change, so every content hash changes and the lead's incremental
# re-vectorization recomputes all items instead of trusting stale tokens.
CLEANING_VERSION = "1"

TOKEN_PATTERN = r"[A-Za-z0-9]+"

TEXT_FIELDS = ("title", "features", "description")
FALLBACK_FIELDS = ("categories", "brand")
NO_SOURCE = "none"

# Entities for accented Latin letters keep their base letter, as NFKD folding would for the real character.
_ACCENT_ENTITY = r"&([A-Za-z])(?:acute|grave|uml|circ|tilde|cedil|ring|slash);"
_MARKUP_RULES: tuple[tuple[str, str], ...] = (
    (r"(?i)&lt;|&#0*60;|&#x0*3c;", "<"),
    (r"(?i)&gt;|&#0*62;|&#x0*3e;", ">"),
    (r"(?is)<script\b[^>]*>.*?</script\s*>", " "),
    (r"(?is)<style\b[^>]*>.*?</style\s*>", " "),
    (r"(?s)<!--.*?-->", " "),
    (r"</?[A-Za-z!?][^<>]*>", " "),
    # A CSS rule with the selector right before it, then any brace block left over.
    (r"[.#]?[A-Za-z][\w.#:-]*\s*\{[^{}]*\}", " "),
    (r"\{[^{}]*\}", " "),
    # Class or id selectors left from a selector list (".a .b { }"); needs whitespace before, so "U.S.A" stays.
    (r"(?:^|\s)[.#][A-Za-z][\w-]*", " "),
    (r"(?i)\b(?:https?://|www\.)\S+", " "),
    (_ACCENT_ENTITY, "$1"),
    (r"&amp;", "&"),
    (r"&quot;", '"'),
    (r"&#0*39;|&apos;", "'"),
    (r"&#?[A-Za-z0-9]+;", " "),
    # Only whitespace that needs changing: rewriting every single space costs 5x more than all other rules.
    (r"\s{2,}|[^\S ]", " "),
)
_HAS_WORD = r"[\p{L}\p{N}]"


@dataclass(frozen=True)
class TextCleaningOptions:
    """How item text becomes tokens; part of every content hash."""

    lowercase: bool = True
    stem: bool = False
    min_token_length: int = 2
    drop_numbers: bool = True
    remove_stopwords: bool = True

    def __post_init__(self) -> None:
        if self.min_token_length < 1:
            raise ValueError(f"min_token_length must be >= 1, got {self.min_token_length}")


@dataclass(frozen=True)
class CleaningReport:
    """Summary of one cleaning run, shaped for Dagster asset metadata (``as_metadata``)."""

    stopword_source: str
    n_items: int
    n_empty: int
    mean_tokens: float
    median_tokens: float
    max_tokens: int
    vocabulary_size: int
    text_sources: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def empty_fraction(self) -> float:
        return self.n_empty / self.n_items if self.n_items else 0.0

    def as_metadata(self) -> dict[str, Any]:
        return {**asdict(self), "empty_fraction": self.empty_fraction}


def visible_text(expr: pl.Expr) -> pl.Expr:
    """The human-visible text of a string column: markup, CSS, URLs and entities removed, whitespace collapsed."""
    for pattern, replacement in _MARKUP_RULES:
        expr = expr.str.replace_all(pattern, replacement)
    return expr.str.strip_chars()


def _joined(column: str, schema: pl.Schema) -> pl.Expr:
    """A list[str] column joined by spaces (or a str column as is), nulls as empty strings."""
    expr = pl.col(column)
    if isinstance(schema[column], pl.List):
        expr = expr.list.join(" ", ignore_nulls=True)
    return expr.fill_null("")


def compose_item_text(items: pl.DataFrame) -> pl.DataFrame:
    """``item_id``, ``text`` (visible text, original case) and ``text_source`` (e.g. ``"title+description"``).

    See the module docstring for the fallback order. Missing optional columns count as empty, so the function
    also works on a reduced items table.
    """
    fields = TEXT_FIELDS + FALLBACK_FIELDS
    frame = items.select(
        "item_id",
        *(pl.col(name) if name in items.columns else pl.lit(None, pl.String).alias(name) for name in fields),
    )
    schema = frame.schema
    frame = frame.select("item_id", *(visible_text(_joined(name, schema)).alias(name) for name in fields))
    present = {name: pl.col(name).str.contains(_HAS_WORD) for name in fields}

    primary_text = pl.concat_str(
        [pl.when(present[name]).then(pl.col(name)) for name in TEXT_FIELDS], separator=" ", ignore_nulls=True
    )
    primary_source = pl.concat_str(
        [pl.when(present[name]).then(pl.lit(name)) for name in TEXT_FIELDS], separator="+", ignore_nulls=True
    )
    has_primary = pl.any_horizontal(*(present[name] for name in TEXT_FIELDS))
    # a when/then chain grows one branch per fallback field (polars types each link differently)
    text: Any = pl.when(has_primary).then(primary_text)
    source: Any = pl.when(has_primary).then(primary_source)
    for name in FALLBACK_FIELDS:
        text = text.when(present[name]).then(pl.col(name))
        source = source.when(present[name]).then(pl.lit(name))
    return frame.select(
        "item_id",
        text.otherwise(pl.lit("")).alias("text"),
        source.otherwise(pl.lit(NO_SOURCE)).alias("text_source"),
    )


def _ascii_folded(expr: pl.Expr) -> pl.Expr:
    # Combining marks are deleted (they belong to the letter before them); other non-ASCII separates words.
    return expr.str.normalize("NFKD").str.replace_all(r"\p{M}+", "").str.replace_all(r"[^\x00-\x7F]+", " ")


def _token_filter(options: TextCleaningOptions, stopwords: Stopwords) -> pl.Expr:
    token = pl.element()
    keep = token.str.len_chars() >= options.min_token_length
    if options.drop_numbers:
        keep = keep & ~token.str.contains(r"^[0-9]+$")
    if options.remove_stopwords:
        comparable = token if options.lowercase else token.str.to_lowercase()
        keep = keep & ~comparable.is_in(sorted(stopwords.words))
    return token.filter(keep)


def _stemmed(tokens: pl.Series, lowercase: bool) -> pl.Series:
    """Porter-stem each *distinct* token once in Python, then map the whole column with polars."""
    stemmer = PorterStemmer()
    vocabulary = tokens.explode().drop_nulls().unique()
    stems = [stemmer.stem(word, to_lowercase=lowercase) for word in vocabulary.to_list()]
    mapping = pl.Series(stems, dtype=pl.String)
    return tokens.list.eval(pl.element().replace_strict(vocabulary, mapping, default=pl.element()))


def options_fingerprint(options: TextCleaningOptions, stopwords: Stopwords) -> str:
    """Everything besides the tokens that decides what a cleaned item means, for the content hash."""
    parts = [f"v{CLEANING_VERSION}", *(f"{key}={value}" for key, value in sorted(asdict(options).items()))]
    if options.remove_stopwords:
        parts.append(f"stopwords={stopwords.fingerprint}")
    return ";".join(parts)


def content_hashes(tokens: pl.Series, fingerprint: str) -> pl.Series:
    """128-bit BLAKE2b hex digest of each token list, prefixed by the options fingerprint.

    polars' own ``hash`` is not guaranteed stable across polars versions, and these hashes are persisted to
    decide which items to re-vectorize, so this is the one per-item Python loop (about 1 us per item).
    """
    prefix = fingerprint.encode() + b"\x00"
    joined = tokens.list.join(" ").fill_null("")
    digests = [hashlib.blake2b(prefix + text.encode(), digest_size=16).hexdigest() for text in joined.to_list()]
    return pl.Series("content_hash", digests, dtype=pl.String)


def clean_item_text(
    items: pl.DataFrame,
    options: TextCleaningOptions | None = None,
    stopwords: Stopwords | None = None,
    logger: logging.Logger | None = None,
) -> tuple[pl.DataFrame, CleaningReport]:
    """Tokens per item: ``item_id``, ``tokens`` (list[str]), ``n_tokens``, ``is_empty``, ``content_hash``,
    ``text_source``.

    ``stopwords`` defaults to ``load_stopwords()`` (nltk's list if installed, else the bundled one); the report
    says which was used.
    """
    options = options or TextCleaningOptions()
    stopwords = stopwords if stopwords is not None else load_stopwords()
    composed = compose_item_text(items)
    text = _ascii_folded(pl.col("text"))
    if options.lowercase:
        text = text.str.to_lowercase()
    cleaned = composed.select(
        "item_id",
        "text_source",
        text.str.extract_all(TOKEN_PATTERN).list.eval(_token_filter(options, stopwords)).alias("tokens"),
    )
    if options.stem:
        cleaned = cleaned.with_columns(_stemmed(cleaned["tokens"], options.lowercase).alias("tokens"))
    cleaned = cleaned.with_columns(n_tokens=pl.col("tokens").list.len().cast(pl.Int32))
    cleaned = cleaned.with_columns(
        is_empty=pl.col("n_tokens") == 0,
        content_hash=content_hashes(cleaned["tokens"], options_fingerprint(options, stopwords)),
    ).select("item_id", "tokens", "n_tokens", "is_empty", "content_hash", "text_source")

    report = cleaning_report(cleaned, options, stopwords)
    if logger is not None:
        logger.info(
            "cleaned %d items: %d empty, %.1f tokens on average, %d distinct tokens, stopwords from %s",
            report.n_items,
            report.n_empty,
            report.mean_tokens,
            report.vocabulary_size,
            report.stopword_source,
        )
    return cleaned, report


def cleaning_report(cleaned: pl.DataFrame, options: TextCleaningOptions, stopwords: Stopwords) -> CleaningReport:
    """Summary of a cleaned table (also of one assembled from cached and freshly cleaned rows)."""
    counts = cleaned["n_tokens"]
    sources = cleaned["text_source"].value_counts(sort=True)
    return CleaningReport(
        stopword_source=stopwords.source,
        n_items=cleaned.height,
        n_empty=int(cleaned["is_empty"].sum()),
        mean_tokens=float(cast(float, counts.mean()) or 0.0),
        median_tokens=float(cast(float, counts.median()) or 0.0),
        max_tokens=int(cast(int, counts.max()) or 0),
        vocabulary_size=int(cleaned["tokens"].explode().drop_nulls().n_unique()),
        text_sources=dict(zip(sources["text_source"].to_list(), sources["count"].to_list(), strict=True)),
        options=asdict(options),
    )
