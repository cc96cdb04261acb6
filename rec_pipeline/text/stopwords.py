"""English stopwords: nltk's corpus when its data is installed, else the list shipped in this package.

nltk's stopword list lives in a separately downloaded data package; a worker without it (air-gapped, a slim
container) must still clean text, and the asset must say which list it used so that runs on different machines
can be told apart. The bundled file holds the same 179 words as nltk's english list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Literal

import nltk

StopwordSource = Literal["nltk", "bundled"]

BUNDLED_FILE = "stopwords_en.txt"


@dataclass(frozen=True)
class Stopwords:
    """A stopword set and where it came from (``"nltk"`` or ``"bundled"``), for run metadata."""

    words: frozenset[str]
    source: StopwordSource

    @property
    def fingerprint(self) -> str:
        """Short digest of the words: two machines with different nltk data produce different token hashes."""
        return hashlib.blake2b("\n".join(sorted(self.words)).encode(), digest_size=8).hexdigest()


def _parse_word_list(text: str) -> frozenset[str]:
    return frozenset(
        line.strip().lower() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )


def bundled_stopwords() -> Stopwords:
    """The list shipped as package data (``rec_pipeline/text/stopwords_en.txt``)."""
    text = resources.files("rec_pipeline.text").joinpath(BUNDLED_FILE).read_text(encoding="utf-8")
    return Stopwords(_parse_word_list(text), "bundled")


def nltk_stopwords(language: str = "english") -> Stopwords:
    """nltk's stopword list, searched along ``nltk.data.path`` (``NLTK_DATA``); ``LookupError`` when absent.

    Reads the corpus file through ``nltk.data.find`` rather than ``nltk.corpus.stopwords``: the lazy corpus
    loader turns itself into a process-wide reader on first success and would keep serving a list found under
    a search path that has since changed.
    """
    pointer = nltk.data.find(f"corpora/stopwords/{language}")
    with pointer.open() as handle:
        raw = handle.read()
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    return Stopwords(_parse_word_list(text), "nltk")


def load_stopwords(prefer_nltk: bool = True) -> Stopwords:
    """nltk's english stopwords when available (and preferred), otherwise the bundled list."""
    if prefer_nltk:
        try:
            return nltk_stopwords("english")
        except LookupError:
            pass
    return bundled_stopwords()
