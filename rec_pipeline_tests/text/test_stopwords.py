"""Which stopword list is used, and that the source is reported."""

from __future__ import annotations

from pathlib import Path

import nltk
import pytest

from rec_pipeline.text.stopwords import Stopwords, bundled_stopwords, load_stopwords, nltk_stopwords


def _write_nltk_stopwords(root: Path, words: list[str]) -> Path:
    """A real nltk data directory, laid out as ``nltk.download("stopwords")`` leaves it."""
    corpus = root / "corpora" / "stopwords"
    corpus.mkdir(parents=True)
    (corpus / "english").write_text("\n".join(words) + "\n")
    return root


def test_bundled_list_holds_nltks_179_english_words() -> None:
    stopwords = bundled_stopwords()
    assert stopwords.source == "bundled"
    assert len(stopwords.words) == 179
    assert {"the", "and", "don", "wouldn't", "ourselves"} <= stopwords.words
    assert not any(word.startswith("#") for word in stopwords.words)


def test_falls_back_to_bundled_list_when_nltk_data_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(LookupError):
        nltk_stopwords()
    stopwords = load_stopwords()
    assert stopwords.source == "bundled"
    assert stopwords.words == bundled_stopwords().words


def test_uses_nltk_corpus_when_its_data_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # nltk.data.path is where nltk itself looks (NLTK_DATA feeds it); nltk refuses to open files outside it.
    monkeypatch.setattr(nltk.data, "path", [str(_write_nltk_stopwords(tmp_path / "nltk_data", ["the", "Foo", "bar"]))])
    stopwords = load_stopwords()
    assert stopwords.source == "nltk"
    assert stopwords.words == frozenset({"the", "foo", "bar"})


def test_prefer_nltk_false_ignores_installed_nltk_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nltk.data, "path", [str(_write_nltk_stopwords(tmp_path / "nltk_data", ["the"]))])
    assert load_stopwords().source == "nltk"
    assert load_stopwords(prefer_nltk=False).source == "bundled"


def test_fingerprint_differs_between_lists_and_is_stable_for_one() -> None:
    assert bundled_stopwords().fingerprint == bundled_stopwords().fingerprint
    assert bundled_stopwords().fingerprint != Stopwords(frozenset({"the"}), "nltk").fingerprint
