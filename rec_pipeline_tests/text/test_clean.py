"""Item text composition and cleaning."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from nltk.tokenize import RegexpTokenizer

from rec_pipeline.schema import ITEM_SCHEMA
from rec_pipeline.text.clean import (
    TOKEN_PATTERN,
    TextCleaningOptions,
    clean_item_text,
    compose_item_text,
)
from rec_pipeline.text.stopwords import Stopwords, bundled_stopwords, load_stopwords

# Shaped like the 2018 metadata's worst titles: a whole page, with CSS, script, comments and entities.
HTML_DOCUMENT_TITLE = """<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN">
<html xmlns="http://www.w3.org/1999/xhtml"><head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8" />
<title>Kettle</title>
<style type="text/css">
.aplus-v2 .aplus-3p-fixed-width { width: 970px; }
body { font-family: Arial, sans-serif; color: #333333; }
</style>
<script type="text/javascript">var ue_t0 = ue_t0 || +new Date(); document.write("<b>tracking</b>");</script>
</head>
<body><!-- begin product --><div id="product" class="aplus-v2">
<h1>Stainless&nbsp;Steel Electric Kettle &amp; Teapot</h1>
<p style="margin:0">Cordless&#8482; kettle &ndash; 1.7 litre, see https://www.example.com/kettle?ref=x</p>
</div></body></html>"""

BUNDLED = bundled_stopwords()


def _items(*rows: dict[str, Any]) -> pl.DataFrame:
    defaults: dict[str, Any] = {
        "title": "",
        "brand": "",
        "categories": [],
        "description": [],
        "features": [],
        "price": None,
        "image_urls": [],
        "source_line": 1,
    }
    return pl.DataFrame([{**defaults, **row} for row in rows], schema=ITEM_SCHEMA)


def _tokens(items: pl.DataFrame, options: TextCleaningOptions | None = None) -> list[list[str]]:
    cleaned, _ = clean_item_text(items, options, BUNDLED)
    return cleaned["tokens"].to_list()


def test_html_document_title_keeps_only_visible_words() -> None:
    tokens = _tokens(_items({"item_id": "a", "title": HTML_DOCUMENT_TITLE}))[0]
    assert tokens == [
        "kettle",
        "stainless",
        "steel",
        "electric",
        "kettle",
        "teapot",
        "cordless",
        "kettle",
        "litre",
        "see",
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tom &amp; Jerry&#39;s &quot;Best&quot; Cart&nbsp;Toy", ["tom", "jerry", "best", "cart", "toy"]),
        ("Caf&eacute; cr&egrave;me", ["cafe", "creme"]),
        ("&lt;br&gt;Escaped&lt;b&gt;tags&lt;/b&gt;", ["escaped", "tags"]),
        ("<p>Line<br/>break</p>", ["line", "break"]),
    ],
)
def test_entities_are_decoded_or_removed(raw: str, expected: list[str]) -> None:
    assert _tokens(_items({"item_id": "a", "title": raw}))[0] == expected


def test_css_rules_in_descriptions_are_removed() -> None:
    description = [
        ".aplus-v2 .aplus-standard .aplus-module { margin: 0 auto; } Soft cotton shirt",
        "div.a-box{display:block} Machine washable",
    ]
    assert _tokens(_items({"item_id": "a", "description": description}))[0] == [
        "soft",
        "cotton",
        "shirt",
        "machine",
        "washable",
    ]


def test_non_ascii_letters_fold_and_other_characters_separate() -> None:
    tokens = _tokens(_items({"item_id": "a", "title": "Naïve Café ＵＳＢ cable\u2019s “quoted” 日本語 Über"}))[0]
    assert tokens == ["naive", "cafe", "usb", "cable", "quoted", "uber"]


def test_numbers_only_tokens_are_dropped_but_alphanumerics_kept() -> None:
    items = _items({"item_id": "a", "title": "Pack of 12 AA batteries 1.5V mp3 3.5mm 2019"})
    assert _tokens(items)[0] == ["pack", "aa", "batteries", "5v", "mp3", "5mm"]
    kept = _tokens(items, TextCleaningOptions(drop_numbers=False))[0]
    assert kept == ["pack", "12", "aa", "batteries", "5v", "mp3", "5mm", "2019"]


def test_tokens_match_nltk_regexp_tokenizer_with_the_same_pattern() -> None:
    text = "Hello, world! It's a 3-pack: USB-C cables (2m) -- v2.0; e-mail me@x.org"
    options = TextCleaningOptions(min_token_length=1, drop_numbers=False, remove_stopwords=False)
    expected = RegexpTokenizer(TOKEN_PATTERN).tokenize(text.lower())
    assert _tokens(_items({"item_id": "a", "title": text}), options)[0] == expected


def test_stopwords_and_short_tokens_are_removed() -> None:
    tokens = _tokens(_items({"item_id": "a", "title": "This is a Set of The Best x Knives for you"}))[0]
    assert tokens == ["set", "best", "knives"]


def test_lowercase_off_keeps_case_but_still_removes_stopwords() -> None:
    options = TextCleaningOptions(lowercase=False)
    assert _tokens(_items({"item_id": "a", "title": "The Best USB Cable"}), options)[0] == ["Best", "USB", "Cable"]


def test_stemming_applies_porter_stemmer_to_every_token() -> None:
    items = _items({"item_id": "a", "title": "running runner runs"}, {"item_id": "b", "title": "connected connections"})
    assert _tokens(items, TextCleaningOptions(stem=True)) == [["run", "runner", "run"], ["connect", "connect"]]


def test_fallback_order_is_text_fields_then_categories_then_brand() -> None:
    items = _items(
        {
            "item_id": "all",
            "title": "Title",
            "features": ["Feature"],
            "description": ["Description"],
            "categories": ["Cat"],
            "brand": "Brand",
        },
        {"item_id": "desc", "description": ["", "Only description"], "categories": ["Cat"], "brand": "Brand"},
        {"item_id": "cats", "title": "  ", "categories": ["Home &amp; Kitchen", "Kettles"], "brand": "Brand"},
        {"item_id": "brand", "title": "<div><br/></div>", "brand": "Acme"},
        {"item_id": "none", "title": None, "brand": None},
    )
    composed = compose_item_text(items)
    assert composed["text"].to_list() == [
        "Title Feature Description",
        "Only description",
        "Home & Kitchen Kettles",
        "Acme",
        "",
    ]
    assert composed["text_source"].to_list() == [
        "title+features+description",
        "description",
        "categories",
        "brand",
        "none",
    ]


def test_compose_tolerates_missing_optional_columns() -> None:
    composed = compose_item_text(pl.DataFrame({"item_id": ["a"], "title": ["Red Kettle"]}))
    assert composed.row(0) == ("a", "Red Kettle", "title")


def test_empty_texts_are_flagged_and_counted() -> None:
    items = _items(
        {"item_id": "words", "title": "Red kettle"},
        {"item_id": "stopwords_only", "title": "the and of 123"},
        {"item_id": "nothing"},
    )
    cleaned, report = clean_item_text(items, TextCleaningOptions(), BUNDLED)
    assert cleaned["is_empty"].to_list() == [False, True, True]
    assert cleaned["n_tokens"].to_list() == [2, 0, 0]
    assert (report.n_items, report.n_empty, report.vocabulary_size) == (3, 2, 2)
    assert report.empty_fraction == pytest.approx(2 / 3)
    assert report.text_sources == {"title": 2, "none": 1}
    assert report.as_metadata()["mean_tokens"] == pytest.approx(2 / 3)


def test_report_names_the_stopword_list_used() -> None:
    items = _items({"item_id": "a", "title": "the kettle"})
    _, default_report = clean_item_text(items)
    assert default_report.stopword_source == load_stopwords().source
    _, nltk_report = clean_item_text(items, stopwords=Stopwords(frozenset({"kettle"}), "nltk"))
    assert nltk_report.stopword_source == "nltk"


def test_content_hash_is_a_pinned_function_of_tokens_and_options() -> None:
    items = _items(
        {"item_id": "a", "title": "Red kettle"},
        {"item_id": "b", "title": "<b>RED</b> Kettle!"},
        {"item_id": "c", "title": "Blue kettle"},
    )
    cleaned, _ = clean_item_text(items, TextCleaningOptions(), BUNDLED)
    hashes = cleaned["content_hash"].to_list()
    assert hashes[0] == hashes[1] != hashes[2]
    # Persisted hashes must survive library upgrades and new processes: pin the value itself.
    assert hashes[0] == "5eb5ed409123133c70d2e7ae699692be"
    stricter, _ = clean_item_text(items, TextCleaningOptions(min_token_length=3), BUNDLED)
    assert stricter["tokens"].to_list()[0] == cleaned["tokens"].to_list()[0]
    assert stricter["content_hash"][0] != hashes[0]


def test_content_hash_changes_with_the_stopword_list() -> None:
    items = _items({"item_id": "a", "title": "red kettle"})
    first, _ = clean_item_text(items, stopwords=Stopwords(frozenset({"the"}), "nltk"))
    second, _ = clean_item_text(items, stopwords=Stopwords(frozenset({"the", "a"}), "nltk"))
    assert first["tokens"].to_list() == second["tokens"].to_list()
    assert first["content_hash"][0] != second["content_hash"][0]


def test_output_columns_and_types() -> None:
    cleaned, _ = clean_item_text(_items({"item_id": "a", "title": "Red kettle"}), stopwords=BUNDLED)
    assert cleaned.schema == pl.Schema(
        {
            "item_id": pl.String,
            "tokens": pl.List(pl.String),
            "n_tokens": pl.Int32,
            "is_empty": pl.Boolean,
            "content_hash": pl.String,
            "text_source": pl.String,
        }
    )


def test_min_token_length_must_be_positive() -> None:
    with pytest.raises(ValueError, match="min_token_length"):
        TextCleaningOptions(min_token_length=0)
