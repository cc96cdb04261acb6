"""Word2Vec training, pretrained initialization, and the saved format."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from gensim.models import KeyedVectors

from rec_pipeline.text.word2vec import (
    Word2VecOptions,
    build_word2vec,
    describe_model,
    load_model,
    save_model,
    train_word2vec,
)

SMALL = {"vector_size": 8, "epochs": 2, "workers": 1, "min_count": 2}


@pytest.fixture(scope="module")
def corpus() -> list[list[str]]:
    """Two topics, so the words have co-occurrence structure; 300 short documents train in well under a second."""
    rng = np.random.default_rng(3)
    kitchen = ["kettle", "teapot", "steel", "boil", "water", "spout", "lid"]
    toys = ["puzzle", "doll", "lego", "kids", "play", "blocks", "game"]
    return [list(map(str, rng.choice(kitchen if i % 2 else toys, 6))) for i in range(300)] + [[]]


def _write_pretrained(path: Path, words: list[str], vectors: np.ndarray, binary: bool = True) -> Path:
    keyed = KeyedVectors(vector_size=vectors.shape[1])
    keyed.add_vectors(words, vectors.astype(np.float32))
    keyed.save_word2vec_format(str(path), binary=binary)
    return path


def test_training_is_deterministic_with_one_worker_and_a_seed(corpus: list[list[str]]) -> None:
    first = train_word2vec(corpus, Word2VecOptions(**SMALL))
    second = train_word2vec(pl.Series(corpus, dtype=pl.List(pl.String)), Word2VecOptions(**SMALL))
    other_seed = train_word2vec(corpus, Word2VecOptions(**SMALL, seed=7))
    assert first.wv.index_to_key == second.wv.index_to_key
    np.testing.assert_array_equal(first.wv.vectors, second.wv.vectors)
    assert not np.allclose(first.wv.vectors, other_seed.wv.vectors)


def test_min_count_filters_the_vocabulary(corpus: list[list[str]]) -> None:
    model = train_word2vec([*corpus, ["hapax"]], Word2VecOptions(**SMALL))
    assert "hapax" not in model.wv.key_to_index
    assert set(model.wv.index_to_key) == {word for doc in corpus for word in doc}


def test_pretrained_vectors_initialize_shared_words_only(corpus: list[list[str]], tmp_path: Path) -> None:
    pretrained = np.arange(3 * 8, dtype=np.float32).reshape(3, 8) / 10
    path = _write_pretrained(tmp_path / "tiny.bin", ["kettle", "doll", "absent"], pretrained)
    options = Word2VecOptions(**SMALL, pretrained_path=str(path))
    untrained, _ = build_word2vec(corpus, options)
    plain, _ = build_word2vec(corpus, Word2VecOptions(**SMALL))
    np.testing.assert_array_equal(untrained.wv["kettle"], pretrained[0])
    np.testing.assert_array_equal(untrained.wv["doll"], pretrained[1])
    assert "absent" not in untrained.wv.key_to_index
    np.testing.assert_array_equal(untrained.wv["lego"], plain.wv["lego"])  # unshared words keep the seeded init
    assert describe_model(untrained)["pretrained_shared_words"] == 2


def test_pretrained_model_is_fine_tuned_from_the_pretrained_start(corpus: list[list[str]], tmp_path: Path) -> None:
    pretrained = np.full((1, 8), 0.5, dtype=np.float32)
    path = _write_pretrained(tmp_path / "tiny.txt", ["kettle"], pretrained, binary=False)
    model = train_word2vec(corpus, Word2VecOptions(**SMALL, pretrained_path=str(path), pretrained_binary=False))
    moved = model.wv["kettle"] - pretrained[0]
    assert 0 < np.abs(moved).max() < 0.5  # trained, yet still near where it started
    assert describe_model(model) == {
        "vocabulary_size": 14,
        "vector_size": 8,
        "documents": 301,
        "epochs": 2,
        "pretrained_shared_words": 1,
    }


def test_pretrained_vector_size_mismatch_is_a_clear_error(corpus: list[list[str]], tmp_path: Path) -> None:
    path = _write_pretrained(tmp_path / "wide.bin", ["kettle"], np.ones((1, 300)))
    with pytest.raises(ValueError, match=r"have 300 dimensions but Word2VecOptions.vector_size is 8"):
        train_word2vec(corpus, Word2VecOptions(**SMALL, pretrained_path=str(path)))


def test_non_word2vec_pretrained_file_is_rejected(corpus: list[list[str]], tmp_path: Path) -> None:
    path = tmp_path / "vectors.npy"
    path.write_bytes(b"\x93NUMPY garbage\n")
    with pytest.raises(ValueError, match="not in word2vec format"):
        train_word2vec(corpus, Word2VecOptions(**SMALL, pretrained_path=str(path)))


def test_corpus_without_frequent_words_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="min_count=2"):
        train_word2vec([["a"], ["b"], []], Word2VecOptions(**SMALL))


def test_options_reject_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="epochs"):
        Word2VecOptions(epochs=0)


def test_save_and_load_round_trip_as_a_single_file(corpus: list[list[str]], tmp_path: Path) -> None:
    model = train_word2vec(corpus, Word2VecOptions(**SMALL))
    target = save_model(model, tmp_path / "models" / "word2vec.model")
    assert sorted(p.name for p in target.parent.iterdir()) == ["word2vec.model"]
    loaded = load_model(target)
    assert loaded.wv.index_to_key == model.wv.index_to_key
    np.testing.assert_array_equal(loaded.wv.vectors, model.wv.vectors)
    assert describe_model(loaded) == describe_model(model)


@pytest.mark.slow
def test_training_is_identical_across_processes_with_different_hash_seeds(tmp_path: Path) -> None:
    """Python salts str hashes per process; gensim must not let that reach the initial vectors."""
    script = (
        "import hashlib, numpy as np\n"
        "from rec_pipeline.text.word2vec import Word2VecOptions, train_word2vec\n"
        "rng = np.random.default_rng(0)\n"
        "corpus = [[f'w{i}' for i in rng.integers(0, 40, 8)] for _ in range(200)]\n"
        "model = train_word2vec(corpus, Word2VecOptions(vector_size=8, epochs=2, workers=1))\n"
        "print(hashlib.sha256(model.wv.vectors.tobytes()).hexdigest())\n"
    )
    repo_root = Path(__file__).resolve().parents[2]
    digests = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            cwd=repo_root,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(repo_root)},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert len(digests) == 1 and len(next(iter(digests))) == 64
