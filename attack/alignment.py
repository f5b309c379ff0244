"""Stage 1 of SLImE: a linear map from the victim's space into the attacker's.

The attacker has P alignment pairs: victim vectors ``x`` (P, m) and its own
encoder's vectors ``y`` (P, n) of the same images. It fits ``W`` (m, n) in closed
form and reads any victim vector ``v`` as ``v @ W`` in its own space. Inputs are
L2-normalised rows.

Three fits, chosen by spec string through :data:`ALIGNERS`:

* ``lstsq``: minimum-norm least squares ``W = pinv(x) y``;
* ``ridge(l2=...)``: ``W = (x^T x + l2 I)^-1 x^T y``, solved in the dual form
  ``x^T (x x^T + l2 I)^-1 y`` when P < m, which gives the same ``W`` at lower cost;
* ``procrustes``: the orthogonal map (semi-orthogonal when m != n) closest to
  ``x^T y``, ``W = U V^T`` from the SVD ``x^T y = U S V^T`` (Schoenemann, 1966).

Reference: Chen, Xu, Elliott, Li, Bjerva, "Semantic Leakage from Image
Embeddings", arXiv 2601.22929 (2026).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from slime_def.defenses.base import check_range
from slime_def.registry import Registry


class Aligner(NamedTuple):
    """A configured alignment fit: ``fit(x (P, m), y (P, n)) -> W (m, n)``."""

    spec: str
    fit: Callable[[jax.Array, jax.Array], jax.Array]


ALIGNERS: Registry[Aligner] = Registry("aligner")


@jax.jit
def fit_lstsq(x: jax.Array, y: jax.Array) -> jax.Array:
    """Return the minimum-norm least-squares map ``pinv(x) @ y`` of shape (m, n)."""
    return jnp.linalg.pinv(x) @ y


@jax.jit
def fit_ridge(x: jax.Array, y: jax.Array, l2: float) -> jax.Array:
    """Return the ridge map ``(x^T x + l2 I)^-1 x^T y`` of shape (m, n).

    With fewer pairs than dimensions (P < m) the identity
    ``(x^T x + l2 I)^-1 x^T = x^T (x x^T + l2 I)^-1`` turns an (m, m) solve
    into a (P, P) one.
    """
    pairs, dim = x.shape
    if pairs < dim:
        gram = x @ x.T + l2 * jnp.eye(pairs, dtype=x.dtype)
        return x.T @ jnp.linalg.solve(gram, y)
    gram = x.T @ x + l2 * jnp.eye(dim, dtype=x.dtype)
    return jnp.linalg.solve(gram, x.T @ y)


@jax.jit
def fit_procrustes(x: jax.Array, y: jax.Array) -> jax.Array:
    """Return the (semi-)orthogonal ``W`` maximising ``trace(W^T x^T y)``."""
    u, _, vt = jnp.linalg.svd(x.T @ y, full_matrices=False)
    return u @ vt


@ALIGNERS.register("lstsq")
def lstsq() -> Aligner:
    """Minimum-norm least squares."""
    return Aligner("lstsq", lambda x, y: fit_lstsq(jnp.asarray(x), jnp.asarray(y)))


@ALIGNERS.register("ridge")
def ridge(l2: float = 0.1) -> Aligner:
    """Ridge regression with penalty ``l2`` (>= 0) on the squared Frobenius norm of W."""
    check_range("ridge l2", l2, low=0.0)
    return Aligner(
        f"ridge(l2={float(l2)!r})",
        lambda x, y: fit_ridge(jnp.asarray(x), jnp.asarray(y), jnp.float32(l2)),
    )


@ALIGNERS.register("procrustes")
def procrustes() -> Aligner:
    """Orthogonal Procrustes."""
    return Aligner("procrustes", lambda x, y: fit_procrustes(jnp.asarray(x), jnp.asarray(y)))


def make_aligner(spec: str) -> Aligner:
    """Build an aligner from a spec such as ``ridge(l2=0.1)``."""
    return ALIGNERS.create(spec)


@jax.jit
def align(w: jax.Array, x: jax.Array) -> jax.Array:
    """Map victim vectors ``x`` (N, m) into attack space: ``x @ w`` (N, n)."""
    return x @ w
