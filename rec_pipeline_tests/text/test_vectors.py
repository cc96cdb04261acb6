"""Item vectors from word vectors: averaging, TF-IDF, masks, the frame and neighbours."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from gensim.models import KeyedVectors

from rec_pipeline.text.vectors import document_frequencies, item_vectors, nearest_neighbours, vectors_frame
from rec_pipeline.text.word2vec import Word2VecOptions, train_word2vec


@pytest.fixture
def keyed() -> KeyedVectors:
    vectors = KeyedVectors(vector_size=2)
    vectors.add_vectors(["red", "blue", "kettle"], np.array([[1, 0], [0, 1], [2, 2]], dtype=np.float32))
    return vectors


def test_mean_weighting_equals_hand_computed_average(keyed: KeyedVectors) -> None:
    tokens = [["red", "kettle"], ["red", "red", "blue"], ["kettle", "unknown"]]
    vectors, mask = item_vectors(tokens, keyed)
    expected = np.array([[1.5, 1.0], [2 / 3, 1 / 3], [2.0, 2.0]], dtype=np.float32)
    np.testing.assert_allclose(vectors, expected, rtol=1e-6)
    assert vectors.dtype == np.float32
    assert mask.tolist() == [True, True, True]


def test_items_without_known_tokens_get_zero_vector_and_false_mask(keyed: KeyedVectors) -> None:
    tokens = pl.Series([["unknown"], [], None, ["blue"]], dtype=pl.List(pl.String))
    vectors, mask = item_vectors(tokens, keyed)
    assert mask.tolist() == [False, False, False, True]
    np.testing.assert_array_equal(vectors[:3], np.zeros((3, 2), dtype=np.float32))
    np.testing.assert_array_equal(vectors[3], [0, 1])


def test_no_known_token_anywhere_gives_all_zero(keyed: KeyedVectors) -> None:
    vectors, mask = item_vectors([["x"], ["y"]], keyed, weighting="tfidf")
    assert vectors.shape == (2, 2) and not mask.any() and not vectors.any()


def test_document_frequencies_give_smoothed_idf() -> None:
    idf = document_frequencies([["red", "red", "kettle"], ["red"], ["blue"]])
    assert idf["red"] == pytest.approx(math.log(4 / 3) + 1)  # in 2 of 3 items; repeats inside one item count once
    assert idf["kettle"] == pytest.approx(math.log(4 / 2) + 1)
    assert idf["blue"] == idf["kettle"]


def test_tfidf_weighting_equals_hand_computation(keyed: KeyedVectors) -> None:
    tokens = [["red", "red", "kettle"], ["red"], ["blue"]]
    vectors, mask = item_vectors(tokens, keyed, weighting="tfidf")
    w_red, w_kettle = math.log(4 / 3) + 1, math.log(4 / 2) + 1
    expected_first = (2 * w_red * np.array([1, 0]) + w_kettle * np.array([2, 2])) / (2 * w_red + w_kettle)
    np.testing.assert_allclose(vectors[0], expected_first, rtol=1e-6)
    np.testing.assert_allclose(vectors[1:], [[1, 0], [0, 1]])
    assert mask.all()


def test_tfidf_with_given_idf_weighs_missing_tokens_as_the_rarest(keyed: KeyedVectors) -> None:
    vectors, _ = item_vectors([["red", "blue"]], keyed, weighting="tfidf", idf={"red": 1.0, "kettle": 3.0})
    np.testing.assert_allclose(vectors[0], [1 / 4, 3 / 4])


def test_unknown_weighting_is_rejected(keyed: KeyedVectors) -> None:
    with pytest.raises(ValueError, match="weighting"):
        item_vectors([["red"]], keyed, weighting="max")  # type: ignore[arg-type]


def test_accepts_a_trained_word2vec_model() -> None:
    corpus = [["red", "kettle"], ["blue", "kettle"]] * 20
    model = train_word2vec(corpus, Word2VecOptions(vector_size=4, epochs=1, workers=1))
    vectors, mask = item_vectors(corpus[:2], model)
    np.testing.assert_allclose(vectors[0], (model.wv["red"] + model.wv["kettle"]) / 2, rtol=1e-6)
    assert mask.all()


def test_vectors_frame_has_fixed_size_float32_arrays() -> None:
    vectors = np.array([[1, 2, 3], [0, 0, 0]], dtype=np.float64)
    frame = vectors_frame(["a", "b"], vectors, np.array([True, False]))
    assert frame.schema == pl.Schema(
        {"item_id": pl.String, "vector": pl.Array(pl.Float32, 3), "has_vector": pl.Boolean}
    )
    np.testing.assert_array_equal(frame["vector"].to_numpy(), vectors.astype(np.float32))
    assert frame["has_vector"].to_list() == [True, False]


def test_vectors_frame_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="do not match"):
        vectors_frame(["a"], np.zeros((2, 3)), np.array([True, True]))


def test_nearest_neighbours_rank_by_cosine_and_skip_self_and_vectorless_items() -> None:
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [1, 0], [0.5, 0.5]], dtype=np.float32)
    mask = np.array([True, True, True, False, True])
    ids = ["a", "b", "c", "no_vector", "e"]
    result = nearest_neighbours(vectors, mask, ids, ["a", "no_vector"], k=3, center=False)
    assert [item for item, _ in result["a"]] == ["b", "e", "c"]
    assert result["a"][0][1] == pytest.approx(0.9 / math.hypot(0.9, 0.1))
    assert result["no_vector"] == []
    assert len(nearest_neighbours(vectors, mask, ids, ["a"], k=10)["a"]) == 3


def test_nearest_neighbours_centre_away_the_direction_every_text_shares() -> None:
    # Averaged word vectors are mostly one common direction: raw cosines of unrelated items are all ~1.00.
    common = np.array([10.0, 10.0, 10.0])
    own = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)
    vectors = (common + own).astype(np.float32)
    ids = ["a", "a_like", "b", "c", "not_b"]
    mask = np.ones(5, dtype=bool)
    raw = nearest_neighbours(vectors, mask, ids, ["a"], k=4, center=False)["a"]
    assert min(score for _, score in raw) > 0.98
    centred = dict(nearest_neighbours(vectors, mask, ids, ["a"], k=4)["a"])
    assert max(centred, key=centred.__getitem__) == "a_like" and centred["a_like"] > 0.9
    assert max(centred[item] for item in ("b", "c", "not_b")) < 0.5


def test_nearest_neighbours_skip_the_query_and_copies_of_its_text() -> None:
    vectors = np.array([[1, 0], [1, 0], [1, 0], [0.8, 0.6], [0, 1]], dtype=np.float32)
    ids = ["query", "variant", "relisted", "similar", "other"]
    hashes = ["h1", "h1", "h1", "h2", "h3"]
    neighbours = nearest_neighbours(
        vectors, np.ones(5, dtype=bool), ids, ["query"], k=3, center=False, text_hashes=hashes
    )["query"]
    assert [item for item, _ in neighbours] == ["similar", "other"]
    assert neighbours[0][1] == pytest.approx(0.8)


def test_nearest_neighbours_unknown_query_raises() -> None:
    with pytest.raises(KeyError, match="missing"):
        nearest_neighbours(np.eye(2, dtype=np.float32), np.array([True, True]), ["a", "b"], ["missing"])
