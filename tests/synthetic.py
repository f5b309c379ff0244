"""A small synthetic embedding dataset with known structure, for pipeline tests.

Items belong to categories; each category has a latent centre, and each item is
its centre plus noise. The victim and attacker spaces are two different random
linear maps of the same latent vectors, so alignment can succeed, and tags are
the category name plus one of two attribute tags drawn per item.
"""

from __future__ import annotations

import numpy as np

from slime_def.data.dataset import EmbeddingDataset


def synthetic_dataset(
    n_items: int = 400,
    *,
    n_categories: int = 8,
    latent_dim: int = 32,
    victim_dim: int = 96,
    attacker_dim: int = 64,
    noise: float = 0.4,
    seed: int = 0,
) -> EmbeddingDataset:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_categories, latent_dim))
    labels = rng.integers(0, n_categories, size=n_items)
    attributes = rng.integers(0, 2, size=n_items)
    latent = centres[labels] + noise * rng.standard_normal((n_items, latent_dim))
    latent[:, 0] += 1.5 * attributes
    victim = latent @ rng.standard_normal((latent_dim, victim_dim))
    attacker = np.tanh(latent @ rng.standard_normal((latent_dim, attacker_dim)) / np.sqrt(latent_dim))
    victim /= np.linalg.norm(victim, axis=1, keepdims=True)
    attacker /= np.linalg.norm(attacker, axis=1, keepdims=True)
    items = [
        {
            "caption": f"an item of category {c}",
            "tags": [f"cat{c}", "bright" if a else "dark"],
            "category": f"cat{c}",
            "source": f"synthetic/{i}",
        }
        for i, (c, a) in enumerate(zip(labels, attributes))
    ]
    return EmbeddingDataset(
        ids=[f"item{i:04d}" for i in range(n_items)],
        spaces={"victim/synthetic": victim.astype(np.float32), "attacker/synthetic": attacker.astype(np.float32)},
        items=items,
        manifest={"name": "synthetic", "licence": "CC0-1.0"},
    )
