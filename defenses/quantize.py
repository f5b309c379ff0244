"""Quantization defenses: scalar, binary (sign) and product quantization.

Each stores a compact code and hands the attacker the dequantized float32
vectors, which is what a system that decodes its stored codes would expose.
``describe(d)["bytes_per_vector"]`` is the size of the stored code; shared
state (ranges, codebooks) is not counted.
"""

from __future__ import annotations

import math

import faiss
import jax
import jax.numpy as jnp
import numpy as np

from slime_def.defenses.base import EMPTY_STATE, Defense, check_range, register_defense
from slime_def.errors import ParameterError

_RANGES = ("global", "per_dim")


@register_defense(
    "quantize",
    family="quantization",
    summary="Scalar quantization to 2^bits levels between ranges fitted on the data.",
    units={
        "bits": "bits per coordinate, 1 to 8",
        "ranges": "'global' (one range for all coordinates) or 'per_dim' (one per coordinate)",
        "clip_percent": "percent of values clipped at each end when fitting ranges, in [0, 50)",
    },
)
def quantize(bits: int = 8, ranges: str = "global", clip_percent: float = 0.0) -> Defense:
    """Quantize each coordinate uniformly to ``2^bits`` levels and dequantize to bin centres.

    ``fit`` sets the range ``[low, high]`` from the data: the minimum and maximum,
    or the ``clip_percent`` and ``100 - clip_percent`` percentiles, either over all
    coordinates (``ranges="global"``) or per coordinate (``"per_dim"``). The range
    is cut into ``2^bits`` equal bins; values outside it fall into the end bins.
    Outputs are bin centres and are not renormalised.

    Args:
      bits: bits per coordinate, integer in [1, 8].
      ranges: ``"global"`` or ``"per_dim"``.
      clip_percent: percent of values clipped at each end, in [0, 50).

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32; code size ``ceil(d * bits / 8)`` bytes.
    """
    check_range("bits", bits, low=1, high=8, integer=True, hint="; use 8, 4, 2 or 1 bits per coordinate")
    if ranges not in _RANGES:
        raise ParameterError(f"ranges must be one of {', '.join(_RANGES)}, got {ranges!r}")
    check_range("clip_percent", clip_percent, low=0.0, high=50.0, high_open=True,
                hint="; 0 uses the minimum and maximum")
    levels = 2 ** int(bits)
    axis = None if ranges == "global" else 0

    def fit(x, *, key):
        del key
        x = jnp.asarray(x, jnp.float32)
        if clip_percent == 0.0:
            return {"low": jnp.min(x, axis=axis), "high": jnp.max(x, axis=axis)}
        return {
            "low": jnp.percentile(x, clip_percent, axis=axis),
            "high": jnp.percentile(x, 100.0 - clip_percent, axis=axis),
        }

    def apply(state, x, *, key):
        del key
        x = jnp.asarray(x, jnp.float32)
        low, width = state["low"], state["high"] - state["low"]
        # A constant coordinate has zero width: every value maps to ``low``.
        safe_width = jnp.where(width > 0, width, 1.0)
        codes = jnp.clip(jnp.floor((x - low) / safe_width * levels), 0, levels - 1)
        return low + (codes + 0.5) / levels * jnp.where(width > 0, width, 0.0)

    def describe(dim: int) -> dict:
        return {
            "output_dim": int(dim),
            "expected_cosine": None,
            "bytes_per_vector": math.ceil(int(dim) * int(bits) / 8),
            "levels": levels,
        }

    return Defense("quantize", fit, apply, describe)


@register_defense(
    "binary",
    family="quantization",
    summary="Keep only the sign of each coordinate (1 bit), dequantized to +-1/sqrt(d).",
)
def binary() -> Defense:
    """Replace each coordinate by its sign, scaled to ``+-1/sqrt(d)`` so outputs have unit norm.

    Zero counts as positive. The stored code is one bit per coordinate.

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32; code size ``ceil(d / 8)`` bytes.
    """

    def fit(x, *, key):
        del x, key
        return EMPTY_STATE

    def apply(state, x, *, key):
        del state, key
        x = jnp.asarray(x, jnp.float32)
        magnitude = 1.0 / math.sqrt(x.shape[-1])
        return jnp.where(x >= 0, magnitude, -magnitude).astype(jnp.float32)

    def describe(dim: int) -> dict:
        return {"output_dim": int(dim), "expected_cosine": None, "bytes_per_vector": math.ceil(int(dim) / 8)}

    return Defense("binary", fit, apply, describe)


def _product_quantizer(dim: int, m: int, nbits: int) -> faiss.ProductQuantizer:
    if dim % m:
        raise ParameterError(
            f"pq needs m to divide the vector dimension, got m={m} and dimension {dim}; "
            f"choose m among the divisors of {dim}"
        )
    return faiss.ProductQuantizer(dim, m, nbits)


@register_defense(
    "pq",
    family="quantization",
    summary="Product quantization (faiss): m sub-vectors, each coded by one of 2^nbits centroids.",
    units={
        "m": "number of sub-vectors; must divide the dimension",
        "nbits": "bits per sub-vector code, 1 to 16; training needs >= 2^nbits vectors",
    },
    randomness="fit",
)
def pq(m: int = 32, nbits: int = 8) -> Defense:
    """Product-quantize with faiss and decode to the concatenated centroids.

    Jegou, Douze and Schmid, "Product Quantization for Nearest Neighbor Search",
    IEEE TPAMI 2011. ``fit`` trains ``m`` k-means codebooks of ``2^nbits``
    centroids with :class:`faiss.ProductQuantizer`, seeded from the key. ``apply``
    encodes each sub-vector as its nearest centroid and decodes.
    Not jittable, because faiss runs outside JAX.

    Args:
      m: number of sub-vectors, >= 1; must divide the dimension ``d``.
      nbits: bits per code, integer in [1, 16].

    Returns:
      A defense mapping ``(B, d)`` to ``(B, d)`` float32; code size ``ceil(m * nbits / 8)`` bytes.

    Raises:
      ParameterError: at fit time, when ``m`` does not divide ``d`` or there are
        fewer than ``2^nbits`` training vectors.
    """
    check_range("m", m, low=1, integer=True, hint="; m is the number of sub-vectors")
    check_range("nbits", nbits, low=1, high=16, integer=True, hint="; 8 bits is the usual choice")
    m, nbits = int(m), int(nbits)

    def fit(x, *, key):
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        quantizer = _product_quantizer(x.shape[1], m, nbits)
        if x.shape[0] < quantizer.ksub:
            raise ParameterError(
                f"pq(nbits={nbits}) needs at least {quantizer.ksub} training vectors, got {x.shape[0]}; "
                "lower nbits or fit on more vectors"
            )
        quantizer.cp.seed = int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max))
        quantizer.train(x)
        centroids = faiss.vector_to_array(quantizer.centroids)
        return {"centroids": jnp.asarray(centroids.reshape(m, quantizer.ksub, quantizer.dsub))}

    def apply(state, x, *, key):
        del key
        x = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
        centroids = np.asarray(state["centroids"], dtype=np.float32)
        quantizer = _product_quantizer(x.shape[1], m, nbits)
        if centroids.shape != (m, quantizer.ksub, quantizer.dsub):
            raise ParameterError(
                f"pq state was fitted for shape {centroids.shape}, but the input needs "
                f"{(m, quantizer.ksub, quantizer.dsub)}; fit on vectors of dimension {x.shape[1]}"
            )
        faiss.copy_array_to_vector(centroids.ravel(), quantizer.centroids)
        decoded = quantizer.decode(quantizer.compute_codes(x))
        return jnp.asarray(decoded, jnp.float32)

    def describe(dim: int) -> dict:
        return {
            "output_dim": int(dim),
            "expected_cosine": None,
            "bytes_per_vector": math.ceil(m * nbits / 8),
        }

    return Defense("pq", fit, apply, describe, jittable=False)
