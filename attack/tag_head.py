"""A small trained tag head: attack-space vector -> one logit per tag.

The network is ``Linear(n, hidden) -> GELU -> Dropout -> Linear(hidden, V)``,
trained with mean sigmoid cross-entropy over the multi-hot tag matrix and
Optax AdamW. A seeded part of the training collection is held out; training
stops when the held-out loss has not improved for ``patience`` epochs, and the
parameters of the best epoch are kept.
"""

from __future__ import annotations

import dataclasses
import logging

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from slime_def.defenses.base import check_range

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Hyperparameters of the tag head; ``spec()`` gives its spec string."""

    hidden: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 200
    patience: int = 10
    batch_size: int = 64
    validation_fraction: float = 0.15
    dropout: float = 0.1

    def __post_init__(self):
        check_range("mlp hidden", self.hidden, low=1, integer=True)
        check_range("mlp learning_rate", self.learning_rate, low=0.0, low_open=True)
        check_range("mlp weight_decay", self.weight_decay, low=0.0)
        check_range("mlp max_epochs", self.max_epochs, low=1, integer=True)
        check_range("mlp patience", self.patience, low=1, integer=True)
        check_range("mlp batch_size", self.batch_size, low=1, integer=True)
        check_range("mlp validation_fraction", self.validation_fraction, low=0.0, high=0.5, high_open=True)

    def spec(self) -> str:
        defaults = HeadConfig.__dataclass_fields__
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name in defaults
            if getattr(self, name) != defaults[name].default
        ]
        return f"mlp({', '.join(changed)})" if changed else "mlp"


class TagMLP(nnx.Module):
    """Two-layer perceptron from (B, n) vectors to (B, V) tag logits."""

    def __init__(self, dim_in: int, hidden: int, n_tags: int, dropout: float, *, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(dim_in, hidden, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(hidden, n_tags, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.dropout(jax.nn.gelu(self.hidden(x))))


@dataclasses.dataclass
class TrainedHead:
    """A trained head; ``predict`` returns (Q, V) float32 tag probabilities."""

    model: TagMLP
    epochs: int
    best_validation_loss: float | None

    def predict(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        logits = _forward(self.model, jnp.asarray(x, jnp.float32))
        return np.asarray(jax.nn.sigmoid(logits), dtype=np.float32)


@nnx.jit
def _forward(model: TagMLP, x: jax.Array) -> jax.Array:
    return model(x)


def _loss(model: TagMLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return optax.sigmoid_binary_cross_entropy(model(x), y).mean()


@nnx.jit
def _train_step(model: TagMLP, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array) -> jax.Array:
    loss, grads = nnx.value_and_grad(_loss)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _eval_loss(model: TagMLP, x: jax.Array, y: jax.Array) -> jax.Array:
    return _loss(model, x, y)


def train_head(x: np.ndarray, labels: np.ndarray, config: HeadConfig, *, seed: int) -> TrainedHead:
    """Train a tag head on ``x`` (M, n) float32 and multi-hot ``labels`` (M, V).

    Raises:
      ValueError: fewer than two training items or no tags.
    """
    m, v = labels.shape
    if m < 2 or v == 0:
        raise ValueError(f"the tag head needs at least 2 items and 1 tag, got {m} items and {v} tags")
    rng = np.random.default_rng(seed)
    order = rng.permutation(m)
    n_val = int(round(config.validation_fraction * m)) if m >= 10 else 0
    val_rows, train_rows = order[:n_val], order[n_val:]
    x_train, y_train = jnp.asarray(x[train_rows]), jnp.asarray(labels[train_rows])
    x_val, y_val = jnp.asarray(x[val_rows]), jnp.asarray(labels[val_rows])

    model = TagMLP(x.shape[1], config.hidden, v, config.dropout, rngs=nnx.Rngs(params=seed, dropout=seed + 1))
    optimizer = nnx.Optimizer(
        model, optax.adamw(config.learning_rate, weight_decay=config.weight_decay), wrt=nnx.Param
    )

    best_state, best_loss, since_best, epoch = nnx.state(model), None, 0, 0
    batch = min(config.batch_size, len(train_rows))
    for epoch in range(1, config.max_epochs + 1):
        model.train()
        permutation = rng.permutation(len(train_rows))
        # Drop the ragged last batch so every step has the same shape and jit compiles once.
        for start in range(0, len(train_rows) - batch + 1, batch):
            rows = permutation[start : start + batch]
            _train_step(model, optimizer, x_train[rows], y_train[rows])
        if n_val == 0:
            continue
        model.eval()
        loss = float(_eval_loss(model, x_val, y_val))
        if best_loss is None or loss < best_loss - 1e-6:
            best_loss, since_best = loss, 0
            best_state = jax.tree.map(jnp.copy, nnx.state(model))
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    if n_val:
        nnx.update(model, best_state)
    logger.info("tag head: %d epochs, best validation loss %s", epoch, best_loss)
    return TrainedHead(model, epoch, best_loss)
