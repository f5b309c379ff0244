"""Dimensionality defenses: truncation, PCA, random projections, rotation and shuffling.

Projections that keep pairwise distances also keep neighbourhoods, which the
SLImE attack relies on, so these are expected to keep leakage. The framework
measures that instead of assuming it. Truncation, PCA and random
projection renormalise their outputs to unit length; rotation and shuffling
keep norms exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from slime_def.defenses.base import (
    EMPTY_STATE,
    Defense,
    check_range,
    float_bytes,
    l2_normalize,
    register_defense,
)
from slime_def.errors import ParameterError

_PROJECTION_KINDS = ("gaussian", "sparse")


def check_output_dim(name: str, dim: int, input_dim: int) -> None:
    """Raise :class:`ParameterError` when ``dim`` exceeds the input dimension."""
    if dim > input_dim:
        raise ParameterError(
            f"{name}(dim={dim}) needs input vectors of at least {dim} dimensions, "
            f"got {input_dim}; choose dim <= {input_dim}"
        )


def _check_dim(dim) -> None:
    check_range("dim", dim, low=1, integer=True, hint="; dim is the number of output dimensions")


def _reduced_describe(dim: int):
    def describe(input_dim: int) -> dict:
        return {"output_dim": int(dim), "expected_cosine": None, "bytes_per_vector": float_bytes(dim)}

    return describe


@register_defense(
    "truncate",
    family="dimensionality",
    summary="Keep the first dim coordinates (Matryoshka-style prefix), then renormalise.",
    units={"dim": "number of leading coordinates kept"},
)
def truncate(dim: int = 256) -> Defense:
    """Keep the first ``dim`` coordinates and renormalise.

    Matryoshka representation learning (Kusupati et al., NeurIPS 2022) trains
    encoders whose prefixes are usable embeddings; on other encoders this is a
    plain coordinate cut.

    Args:
      dim: number of leading coordinates kept, 1 <= dim <= d.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, dim)`` float32.
    """
    _check_dim(dim)
    dim = int(dim)

    def fit(x, *, key):
        del key
        check_output_dim("truncate", dim, x.shape[-1])
        return EMPTY_STATE

    def apply(state, x, *, key):
        del state, key
        check_output_dim("truncate", dim, x.shape[-1])
        return l2_normalize(jnp.asarray(x, jnp.float32)[..., :dim])

    return Defense("truncate", fit, apply, _reduced_describe(dim))


@register_defense(
    "pca",
    family="dimensionality",
    summary="Project onto the top dim principal components fitted on the data, then renormalise.",
    units={"dim": "number of principal components kept"},
)
def pca(dim: int = 256) -> Defense:
    """Centre on the fitted mean, project onto the top ``dim`` principal axes and renormalise.

    ``fit`` takes the eigenvectors of the sample covariance with the largest
    eigenvalues, each with its sign fixed so that its largest-magnitude entry is
    positive (eigenvectors are defined only up to sign).

    Args:
      dim: number of components, 1 <= dim <= d and dim < number of fitting vectors.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, dim)`` float32.
    """
    _check_dim(dim)
    dim = int(dim)

    def fit(x, *, key):
        del key
        x = jnp.asarray(x, jnp.float32)
        count, input_dim = x.shape
        check_output_dim("pca", dim, input_dim)
        if dim > count - 1:
            raise ParameterError(
                f"pca(dim={dim}) needs more than {dim} fitting vectors to define {dim} components, "
                f"got {count}; lower dim or fit on more vectors"
            )
        mean = jnp.mean(x, axis=0)
        centred = x - mean
        covariance = centred.T @ centred / (count - 1)
        _, vectors = jnp.linalg.eigh(covariance)  # eigenvalues ascending
        components = vectors[:, ::-1][:, :dim]
        peak = jnp.argmax(jnp.abs(components), axis=0)
        signs = jnp.sign(components[peak, jnp.arange(dim)])
        return {"mean": mean, "components": components * signs}

    def apply(state, x, *, key):
        del key
        centred = jnp.asarray(x, jnp.float32) - state["mean"]
        return l2_normalize(centred @ state["components"])

    return Defense("pca", fit, apply, _reduced_describe(dim))


def _sparse_matrix(key: jax.Array, input_dim: int, dim: int, density: float) -> jax.Array:
    sign_key, keep_key = jax.random.split(key)
    signs = jnp.where(jax.random.bernoulli(sign_key, 0.5, (input_dim, dim)), 1.0, -1.0)
    kept = jax.random.bernoulli(keep_key, density, (input_dim, dim))
    return jnp.where(kept, signs / math.sqrt(density * dim), 0.0).astype(jnp.float32)


@register_defense(
    "random_projection",
    family="dimensionality",
    summary="Multiply by a random d x dim matrix (Gaussian or sparse), then renormalise.",
    units={
        "dim": "output dimension",
        "kind": "'gaussian' (N(0, 1/dim) entries) or 'sparse' (+-1/sqrt(density dim) or 0)",
        "density": "fraction of non-zero entries for kind='sparse', in (0, 1]; default 1/sqrt(d)",
    },
    randomness="fit",
)
def random_projection(dim: int = 256, kind: str = "gaussian", density: float | None = None) -> Defense:
    """Project with a random matrix ``R`` of shape ``(d, dim)`` drawn in ``fit``, then renormalise.

    ``kind="gaussian"``: entries ``N(0, 1/dim)``, so squared norms are kept in
    expectation (Johnson-Lindenstrauss). ``kind="sparse"``: entries are
    ``+-1/sqrt(density * dim)`` with probability ``density / 2`` each and 0
    otherwise, which has the same variance. ``density=1/3`` is the database-friendly
    projection of Achlioptas (JCSS 2003); the default ``1/sqrt(d)`` is the very
    sparse projection of Li, Hastie and Church (KDD 2006).

    Args:
      dim: output dimension, 1 <= dim <= d.
      kind: ``"gaussian"`` or ``"sparse"``.
      density: non-zero fraction in (0, 1] for ``"sparse"``; must be unset for ``"gaussian"``.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, dim)`` float32.
    """
    _check_dim(dim)
    dim = int(dim)
    if kind not in _PROJECTION_KINDS:
        raise ParameterError(f"kind must be one of {', '.join(_PROJECTION_KINDS)}, got {kind!r}")
    if density is not None:
        if kind != "sparse":
            raise ParameterError(f"density applies only to kind='sparse', got kind={kind!r}; remove density")
        check_range("density", density, low=0.0, high=1.0, low_open=True,
                    hint="; 1/3 is Achlioptas' choice")

    def fit(x, *, key):
        input_dim = x.shape[-1]
        check_output_dim("random_projection", dim, input_dim)
        if kind == "gaussian":
            matrix = jax.random.normal(key, (input_dim, dim), jnp.float32) / math.sqrt(dim)
        else:
            chosen = 1.0 / math.sqrt(input_dim) if density is None else float(density)
            matrix = _sparse_matrix(key, input_dim, dim, chosen)
        return {"matrix": matrix}

    def apply(state, x, *, key):
        del key
        return l2_normalize(jnp.asarray(x, jnp.float32) @ state["matrix"])

    return Defense("random_projection", fit, apply, _reduced_describe(dim))


@register_defense(
    "random_rotation",
    family="dimensionality",
    summary="Multiply by a Haar-random orthogonal matrix fitted once (keeps all distances).",
    randomness="fit",
)
def random_rotation() -> Defense:
    """Rotate by a fixed Haar-random orthogonal ``d x d`` matrix drawn in ``fit``.

    The matrix is ``Q diag(sign(diag(R)))`` from the QR decomposition of a
    standard normal matrix. Without the sign fix, QR's sign convention biases
    ``Q``: at d = 4 its top-left entry has mean about -0.4 instead of 0.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32; norms are kept.
    """

    def fit(x, *, key):
        input_dim = x.shape[-1]
        q, r = jnp.linalg.qr(jax.random.normal(key, (input_dim, input_dim), jnp.float32))
        signs = jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0)
        return {"matrix": q * signs}

    def apply(state, x, *, key):
        del key
        return jnp.asarray(x, jnp.float32) @ state["matrix"]

    def describe(dim: int) -> dict:
        return {"output_dim": int(dim), "expected_cosine": None, "bytes_per_vector": float_bytes(dim)}

    return Defense("random_rotation", fit, apply, describe)


@register_defense(
    "shuffle",
    family="dimensionality",
    summary="Permute the coordinates by a random permutation fitted once.",
    randomness="fit",
)
def shuffle() -> Defense:
    """Permute coordinates by a fixed uniformly random permutation drawn in ``fit``.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32; norms are kept.
    """

    def fit(x, *, key):
        return {"permutation": jax.random.permutation(key, x.shape[-1])}

    def apply(state, x, *, key):
        del key
        return jnp.take(jnp.asarray(x, jnp.float32), state["permutation"], axis=-1)

    def describe(dim: int) -> dict:
        return {"output_dim": int(dim), "expected_cosine": None, "bytes_per_vector": float_bytes(dim)}

    return Defense("shuffle", fit, apply, describe)
