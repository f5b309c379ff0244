import numpy as np
import pytest

from slime_def.attack.retrieval import TagPredictions, build_vocabulary, make_retriever, tag_matrix
from slime_def.errors import ParameterError


def _clustered(n=300, dim=32, clusters=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    labels = rng.integers(0, clusters, size=n)
    x = (centres[labels] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)
    tags = [[f"c{label}", "even" if label % 2 == 0 else "odd"] for label in labels]
    return x, tags, labels


def _brute_force_votes(aux, aux_tags, queries, neighbours):
    vocabulary = build_vocabulary(aux_tags)
    a = aux / np.linalg.norm(aux, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    similarity = q.astype(np.float64) @ a.T.astype(np.float64)
    scores = np.zeros((len(queries), len(vocabulary)))
    for i, row in enumerate(similarity):
        nearest = np.argsort(-row)[:neighbours]
        total = 0.0
        for j in nearest:
            weight = max(row[j], 0.0)
            total += weight
            for tag in aux_tags[j]:
                scores[i, vocabulary.index(tag)] += weight
        scores[i] /= max(total, 1e-12)
    return vocabulary, scores


def test_knn_votes_match_brute_force():
    x, tags, _ = _clustered()
    predict = make_retriever("knn(neighbours=7)").train(x[:200], tags[:200])
    predictions = predict(x[200:])
    vocabulary, reference = _brute_force_votes(x[:200], tags[:200], x[200:], 7)
    assert predictions.vocabulary == tuple(vocabulary)
    np.testing.assert_allclose(predictions.scores, reference, atol=1e-5)


def test_knn_recovers_cluster_tags():
    x, tags, labels = _clustered(seed=1)
    predict = make_retriever("knn").train(x[:200], tags[:200])
    top = predict(x[200:]).ranked_tags(2)
    accuracy = np.mean([f"c{label}" in row for row, label in zip(top, labels[200:])])
    assert accuracy > 0.95


def test_mlp_head_learns_cluster_tags():
    x, tags, labels = _clustered(seed=2)
    predict = make_retriever("mlp(hidden=64, max_epochs=60)").train(x[:200], tags[:200], seed=0)
    top = predict(x[200:]).ranked_tags(2)
    accuracy = np.mean([f"c{label}" in row for row, label in zip(top, labels[200:])])
    assert accuracy > 0.9


def test_mlp_head_is_deterministic_per_seed():
    x, tags, _ = _clustered(n=120, seed=3)
    retriever = make_retriever("mlp(hidden=32, max_epochs=5)")
    first = retriever.train(x[:100], tags[:100], seed=4)(x[100:]).scores
    second = retriever.train(x[:100], tags[:100], seed=4)(x[100:]).scores
    np.testing.assert_array_equal(first, second)


def test_top_k_ties_keep_vocabulary_order():
    predictions = TagPredictions(("a", "b", "c"), np.array([[0.2, 0.9, 0.2]], np.float32))
    assert predictions.ranked_tags(3) == [["b", "a", "c"]]


def test_tag_matrix_drops_unknown_tags():
    matrix = tag_matrix([["a", "zzz"], ["b"]], ("a", "b"))
    np.testing.assert_array_equal(matrix, [[1, 0], [0, 1]])


@pytest.mark.parametrize("spec", ["knn(neighbours=0)", "mlp(hidden=0)", "mlp(validation_fraction=0.9)"])
def test_invalid_retriever_parameters_raise(spec):
    with pytest.raises(ParameterError):
        make_retriever(spec)
