"""Word2Vec over item token lists, optionally started from pretrained vectors (e.g. GoogleNews 300-d).

Reproducibility: with ``workers=1`` and a fixed ``seed`` training is bit-for-bit deterministic (gensim seeds
its initial vectors and sampling from ``seed``; the corpus order is kept). With ``workers > 1`` the threads
update shared weights in an order the OS scheduler decides, so results differ slightly from run to run: that
trades exact reproducibility for speed, and is the right choice for large corpora but not for tests.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from gensim.models import KeyedVectors, Word2Vec

from rec_pipeline.atomic import atomic_path


@dataclass(frozen=True)
class Word2VecOptions:
    """Training settings. ``pretrained_path``: a word2vec-format file (binary unless ``pretrained_binary`` is
    False) whose vectors initialize the words it shares with the corpus; ``pretrained_limit`` reads only its
    first N words (GoogleNews is sorted by frequency and takes ~3.6 GB of RAM in full)."""

    vector_size: int = 100
    window: int = 5
    min_count: int = 2
    epochs: int = 10
    workers: int = 2
    seed: int = 42
    sg: int = 0
    pretrained_path: str | None = None
    pretrained_binary: bool = True
    pretrained_limit: int | None = 500_000  # the most frequent words: GoogleNews in full is 3M x 300 floats (3.6 GB)

    def __post_init__(self) -> None:
        for name in ("vector_size", "window", "min_count", "epochs", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"Word2VecOptions.{name} must be >= 1, got {getattr(self, name)}")


def _as_corpus(token_lists: pl.Series | Iterable[Sequence[str]]) -> list[list[str]]:
    # gensim iterates the corpus once for the vocabulary and once per epoch, so it must be re-iterable.
    if isinstance(token_lists, pl.Series):
        return [tokens or [] for tokens in token_lists.to_list()]
    return [list(tokens) for tokens in token_lists]


def pretrained_vector_size(path: str | Path) -> int:
    """The dimension from a word2vec-format header (``"<count> <dim>"``, text in both formats)."""
    with open(path, "rb") as handle:
        header = handle.readline().decode("utf-8", errors="replace").split()
    if len(header) != 2 or not all(part.isdigit() for part in header):
        raise ValueError(f"{path} is not in word2vec format: header {' '.join(header)[:80]!r}")
    return int(header[1])


def _intersect_pretrained(model: Word2Vec, options: Word2VecOptions, logger: logging.Logger | None) -> int:
    """Copy pretrained vectors into the model for the words both share; returns how many were shared.

    gensim's ``intersect_word2vec_format`` is not used: it reads binary files with ``np.fromstring``, which
    NumPy 2 removed, and writes per-word lock factors into a one-element array.
    """
    assert options.pretrained_path is not None
    pretrained = KeyedVectors.load_word2vec_format(
        options.pretrained_path, binary=options.pretrained_binary, limit=options.pretrained_limit
    )
    ours = [index for index, word in enumerate(model.wv.index_to_key) if word in pretrained.key_to_index]
    theirs = [pretrained.key_to_index[model.wv.index_to_key[index]] for index in ours]
    if ours:
        model.wv.vectors[np.asarray(ours)] = pretrained.vectors[np.asarray(theirs)]
    model.add_lifecycle_event(
        "intersect_pretrained",
        path=str(options.pretrained_path),
        shared_words=len(ours),
        vocabulary_size=len(model.wv),
        pretrained_words=len(pretrained),
    )
    if logger is not None:
        logger.info(
            "initialized %d of %d words from %s (%d pretrained words read)",
            len(ours),
            len(model.wv),
            options.pretrained_path,
            len(pretrained),
        )
    return len(ours)


def build_word2vec(
    token_lists: pl.Series | Iterable[Sequence[str]],
    options: Word2VecOptions | None = None,
    logger: logging.Logger | None = None,
) -> tuple[Word2Vec, list[list[str]]]:
    """An untrained model: vocabulary built from the corpus, shared words initialized from the pretrained file.

    Returns the model and the materialized corpus that ``train_word2vec`` goes on to train on.
    """
    options = options or Word2VecOptions()
    if options.pretrained_path is not None:
        # Fail before the vocabulary pass, which takes minutes on a large corpus.
        found = pretrained_vector_size(options.pretrained_path)
        if found != options.vector_size:
            raise ValueError(
                f"pretrained vectors in {options.pretrained_path} have {found} dimensions but "
                f"Word2VecOptions.vector_size is {options.vector_size}; set vector_size={found}"
            )
    corpus = _as_corpus(token_lists)
    model = Word2Vec(
        vector_size=options.vector_size,
        window=options.window,
        min_count=options.min_count,
        workers=options.workers,
        seed=options.seed,
        sg=options.sg,
        epochs=options.epochs,
    )
    model.build_vocab(corpus)
    if len(model.wv) == 0:
        raise ValueError(f"no word occurs at least min_count={options.min_count} times in {len(corpus)} token lists")
    if options.pretrained_path is not None:
        _intersect_pretrained(model, options, logger)
    return model, corpus


def train_word2vec(
    token_lists: pl.Series | Iterable[Sequence[str]],
    options: Word2VecOptions | None = None,
    logger: logging.Logger | None = None,
) -> Word2Vec:
    """Train Word2Vec on the token lists (empty lists are fine); see the module docstring on determinism."""
    options = options or Word2VecOptions()
    model, corpus = build_word2vec(token_lists, options, logger)
    if logger is not None:
        logger.info(
            "training word2vec: %d documents, %d words in vocabulary, %d epochs",
            model.corpus_count,
            len(model.wv),
            options.epochs,
        )
    model.train(corpus, total_examples=model.corpus_count, epochs=options.epochs)
    model.add_lifecycle_event("rec_pipeline_options", **asdict(options))
    return model


def describe_model(model: Word2Vec) -> dict[str, Any]:
    """Plain-typed facts about a trained model, for asset metadata."""
    shared = [
        event["shared_words"]
        for event in getattr(model, "lifecycle_events", [])
        if event.get("event") == "intersect_pretrained"
    ]
    return {
        "vocabulary_size": len(model.wv),
        "vector_size": int(model.vector_size),
        "documents": int(model.corpus_count),
        "epochs": int(model.epochs),
        "pretrained_shared_words": shared[-1] if shared else None,
    }


def save_model(model: Word2Vec, path: str | Path) -> Path:
    """Save in gensim's format as one file, atomically.

    ``separately=[]`` keeps the arrays inside the pickle: by default gensim writes large arrays to sibling
    ``.npy`` files named after the *temporary* path, which the rename would orphan.
    """
    with atomic_path(path) as tmp:
        model.save(str(tmp), separately=[])
    return Path(path)


def load_model(path: str | Path) -> Word2Vec:
    return Word2Vec.load(str(path))
