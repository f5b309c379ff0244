"""Stage 2 of SLImE: semantic retrieval of tags for aligned vectors.

A retriever is trained by the attacker on its own auxiliary collection, in its
own embedding space: vectors ``aux`` (M, n) with a tag list per item. It then
scores every tag of its vocabulary for aligned victim vectors ``queries`` (Q, n).

Two retrievers, chosen by spec string through :data:`RETRIEVERS`:

* ``knn(neighbours=10)``: the ``neighbours`` nearest auxiliary items by cosine
  (faiss exact inner-product search) vote for their tags, each vote weighted by
  its cosine similarity; scores are divided by the total weight, so a tag held
  by every neighbour scores 1.
* ``mlp(hidden=512, ...)``: a small Flax network from attack-space vectors to
  one logit per tag, trained with sigmoid cross-entropy and Optax AdamW, with
  early stopping on a held-out part of the auxiliary collection
  (see :mod:`slime_def.attack.tag_head`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple, Sequence

import numpy as np
from scipy import sparse

from slime_def.defenses.base import check_range
from slime_def.registry import Registry


@dataclasses.dataclass(frozen=True)
class TagPredictions:
    """Tag scores for Q queries over a vocabulary of V tags.

    Attributes:
      vocabulary: V tag strings, the columns of ``scores``.
      scores: (Q, V) float32, higher means more likely.
    """

    vocabulary: tuple[str, ...]
    scores: np.ndarray

    def top_k(self, k: int) -> list[list[tuple[str, float]]]:
        """Return, per query, the ``k`` best tags with their scores, best first."""
        k = min(k, len(self.vocabulary))
        # A stable sort on the negated scores keeps vocabulary order among ties.
        order = np.argsort(-self.scores, axis=1, kind="stable")[:, :k]
        return [[(self.vocabulary[j], float(row[j])) for j in cols] for row, cols in zip(self.scores, order)]

    def ranked_tags(self, k: int) -> list[list[str]]:
        """Return, per query, the ``k`` best tag names, best first."""
        return [[tag for tag, _ in row] for row in self.top_k(k)]


class Retriever(NamedTuple):
    """A configured retriever.

    ``train(aux (M, n), aux_tags, *, seed) -> predict`` where
    ``predict(queries (Q, n)) -> TagPredictions``.
    """

    spec: str
    train: Callable[..., Callable[[np.ndarray], TagPredictions]]


RETRIEVERS: Registry[Retriever] = Registry("retriever")

# Auxiliary rows normalised and added to the faiss index at once.
ROW_BLOCK = 8192


def build_vocabulary(tags: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """Return the sorted set of tags in a collection."""
    return tuple(sorted({tag for item in tags for tag in item}))


def tag_matrix(tags: Sequence[Sequence[str]], vocabulary: Sequence[str], dtype=np.float32) -> np.ndarray:
    """Return the (M, V) multi-hot matrix of ``tags``; unknown tags are dropped."""
    coo = sparse_tag_matrix(tags, vocabulary).tocoo()
    matrix = np.zeros(coo.shape, dtype=dtype)
    matrix[coo.row, coo.col] = 1
    return matrix


def sparse_tag_matrix(tags: Sequence[Sequence[str]], vocabulary: Sequence[str]) -> sparse.csr_matrix:
    """Return the (M, V) multi-hot matrix of ``tags`` in CSR form; unknown tags are dropped."""
    column = {tag: j for j, tag in enumerate(vocabulary)}
    rows, cols = [], []
    for i, item in enumerate(tags):
        for j in sorted({column[tag] for tag in item if tag in column}):
            rows.append(i)
            cols.append(j)
    values = np.ones(len(rows), dtype=np.float32)
    return sparse.csr_matrix((values, (rows, cols)), shape=(len(tags), len(vocabulary)))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Return ``x`` (N, d) as float32 with rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@RETRIEVERS.register("knn")
def knn(neighbours: int = 10) -> Retriever:
    """Build kNN tag voting over the auxiliary collection, weighted by cosine similarity."""
    check_range("knn neighbours", neighbours, low=1, integer=True)
    neighbours = int(neighbours)

    def train(aux: np.ndarray, aux_tags: Sequence[Sequence[str]], *, seed: int = 0):
        import faiss

        del seed  # exact search has no randomness
        vocabulary = build_vocabulary(aux_tags)
        labels = sparse_tag_matrix(aux_tags, vocabulary)
        index = faiss.IndexFlatIP(aux.shape[1])
        # Normalised block by block, so only faiss's own copy of the collection is whole.
        for start in range(0, len(aux), ROW_BLOCK):
            index.add(normalize_rows(aux[start : start + ROW_BLOCK]))
        count = min(neighbours, index.ntotal)

        def predict(queries: np.ndarray) -> TagPredictions:
            similarity, indices = index.search(normalize_rows(queries), count)
            weights = np.maximum(similarity, 0.0)
            total = np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
            # Sparse (Q, M) neighbour weights times sparse (M, V) labels: memory grows
            # with Q * K, not with Q * K * V as a dense gather would.
            rows = np.repeat(np.arange(len(indices)), indices.shape[1])
            neighbour_weights = sparse.csr_matrix(
                ((weights / total).ravel(), (rows, indices.ravel())), shape=(len(indices), index.ntotal)
            )
            votes = (neighbour_weights @ labels).toarray()
            return TagPredictions(vocabulary, votes.astype(np.float32))

        return predict

    return Retriever(f"knn(neighbours={neighbours})", train)


@RETRIEVERS.register("mlp")
def mlp(
    hidden: int = 512,
    learning_rate: float = 1e-2,
    weight_decay: float = 1e-4,
    max_epochs: int = 200,
    patience: int = 20,
    batch_size: int = 64,
    validation_fraction: float = 0.15,
    dropout: float = 0.1,
) -> Retriever:
    """Build a Flax MLP tag head, trained on the auxiliary collection with early stopping."""
    from slime_def.attack import tag_head

    config = tag_head.HeadConfig(
        hidden=hidden,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        max_epochs=max_epochs,
        patience=patience,
        batch_size=batch_size,
        validation_fraction=validation_fraction,
        dropout=dropout,
    )

    def train(aux: np.ndarray, aux_tags: Sequence[Sequence[str]], *, seed: int = 0):
        vocabulary = build_vocabulary(aux_tags)
        labels = tag_matrix(aux_tags, vocabulary, dtype=np.uint8)
        head = tag_head.train_head(aux, labels, config, seed=seed)  # normalises rows itself

        def predict(queries: np.ndarray) -> TagPredictions:
            return TagPredictions(vocabulary, head.predict(queries))

        return predict

    return Retriever(config.spec(), train)


def make_retriever(spec: str) -> Retriever:
    """Build a retriever from a spec such as ``knn(neighbours=10)`` or ``mlp``."""
    return RETRIEVERS.create(spec)
