"""A small trained tag head: attack-space vector -> one logit per tag.

The network is ``Dense(n, hidden) -> GELU -> Dropout -> Dense(hidden, V)``
(Flax Linen), trained with mean sigmoid cross-entropy over the multi-hot tag
matrix and Optax AdamW. A seeded part of the training collection is held out;
training stops when the held-out R-precision (for an item with r true tags,
the share of its r best-scored tags that are true) has not improved for
``patience`` epochs, and the parameters of the best epoch are kept. A ranking
score is the stopping criterion
rather than the held-out loss because, with hundreds of rare tags, the loss is
dominated by true negatives and bottoms out while the ranking still improves.

Each epoch is one jit-compiled ``lax.scan`` over its mini-batches, with the
batch gathers inside the compiled step, and labels are stored as uint8, so a
collection of 100,000 items with 1,000 tags costs about 100 MB of labels.
"""

from __future__ import annotations

import dataclasses
import functools
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from slime_def.defenses.base import check_range, l2_normalize

logger = logging.getLogger(__name__)

# Queries scored at once by TrainedHead.predict, which bounds the logits held in memory.
PREDICT_BLOCK = 8192


@dataclasses.dataclass(frozen=True)
class HeadConfig:
    """Hyperparameters of the tag head; ``spec()`` gives its spec string."""

    hidden: int = 512
    learning_rate: float = 1e-2
    weight_decay: float = 1e-4
    max_epochs: int = 200
    patience: int = 20
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
        check_range("mlp dropout", self.dropout, low=0.0, high=1.0, high_open=True)

    def spec(self) -> str:
        defaults = HeadConfig.__dataclass_fields__
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name in defaults
            if getattr(self, name) != defaults[name].default
        ]
        return f"mlp({', '.join(changed)})" if changed else "mlp"


class TagMLP(nn.Module):
    """Two-layer perceptron from (B, n) vectors to (B, V) tag logits."""

    hidden: int
    n_tags: int
    dropout: float

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        h = nn.gelu(nn.Dense(self.hidden)(x))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.Dense(self.n_tags)(h)


@functools.lru_cache(maxsize=16)
def _optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    # Cached so the jitted epoch, which takes the optimizer as a static argument,
    # compiles once per configuration instead of once per training run.
    return optax.adamw(learning_rate, weight_decay=weight_decay)


def _batch_loss(model: TagMLP, params, x: jax.Array, y: jax.Array, *, train: bool, key=None) -> jax.Array:
    rngs = {"dropout": key} if train else None
    # Rows are normalised per batch, so training never keeps a normalised copy of the collection.
    logits = model.apply({"params": params}, l2_normalize(x), train=train, rngs=rngs)
    return optax.sigmoid_binary_cross_entropy(logits, y.astype(jnp.float32)).mean()


@functools.partial(jax.jit, static_argnames=("model", "optimizer"))
def _train_epoch(model, optimizer, params, opt_state, x, y, batches, key):
    """Run one epoch; ``batches`` is (steps, batch) int32 row indices into ``x`` and ``y``."""

    def step(carry, rows):
        params, opt_state, key = carry
        key, dropout_key = jax.random.split(key)
        loss, grads = jax.value_and_grad(
            lambda p: _batch_loss(model, p, x[rows], y[rows], train=True, key=dropout_key)
        )(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, key), loss

    (params, opt_state, key), losses = jax.lax.scan(step, (params, opt_state, key), batches)
    return params, opt_state, key, losses.mean()


@functools.partial(jax.jit, static_argnames=("model",))
def _held_out_r_precision(model, params, x, y, rows):
    """Return the mean R-precision over held-out items that have at least one tag."""
    logits = model.apply({"params": params}, l2_normalize(x[rows]), train=False)
    truth = y[rows].astype(jnp.float32)
    n_true = truth.sum(axis=1)
    ranks = jnp.argsort(jnp.argsort(-logits, axis=1), axis=1)  # 0 = best-scored tag
    hits = (truth * (ranks < n_true[:, None])).sum(axis=1)
    tagged = n_true > 0
    return jnp.sum(jnp.where(tagged, hits / jnp.maximum(n_true, 1.0), 0.0)) / jnp.maximum(tagged.sum(), 1)


@functools.partial(jax.jit, static_argnames=("model",))
def _probabilities(model, params, x):
    return jax.nn.sigmoid(model.apply({"params": params}, l2_normalize(x), train=False))


@dataclasses.dataclass
class TrainedHead:
    """A trained head; ``predict`` maps (Q, n) vectors, L2-normalised inside, to (Q, V) probabilities."""

    model: TagMLP
    params: dict
    epochs: int
    best_validation_r_precision: float | None

    def predict(self, x: np.ndarray) -> np.ndarray:
        blocks = [
            np.asarray(_probabilities(self.model, self.params, jnp.asarray(x[start : start + PREDICT_BLOCK])))
            for start in range(0, len(x), PREDICT_BLOCK)
        ]
        return np.concatenate(blocks).astype(np.float32, copy=False)


def train_head(x: np.ndarray, labels: np.ndarray, config: HeadConfig, *, seed: int) -> TrainedHead:
    """Train a tag head on ``x`` (M, n) float32 and multi-hot ``labels`` (M, V).

    Rows of ``x`` are L2-normalised inside, batch by batch.

    Args:
      labels: 0/1 values of any numeric dtype; stored as uint8 for training.

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
    x_all = jnp.asarray(x, jnp.float32)
    y_all = jnp.asarray(labels, jnp.uint8)
    val_index = jnp.asarray(val_rows, jnp.int32)

    model = TagMLP(config.hidden, v, config.dropout)
    init_key, key = jax.random.split(jax.random.key(seed))
    params = model.init(init_key, l2_normalize(x_all[:1]), train=False)["params"]
    optimizer = _optimizer(float(config.learning_rate), float(config.weight_decay))
    opt_state = optimizer.init(params)

    batch = min(config.batch_size, len(train_rows))
    steps = len(train_rows) // batch  # the ragged last batch is dropped, so shapes stay fixed
    best_params, best_score, since_best, epoch = params, None, 0, 0
    for epoch in range(1, config.max_epochs + 1):
        batches = rng.permutation(train_rows)[: steps * batch].reshape(steps, batch).astype(np.int32)
        params, opt_state, key, _ = _train_epoch(
            model, optimizer, params, opt_state, x_all, y_all, jnp.asarray(batches), key
        )
        if n_val == 0:
            continue
        score = float(_held_out_r_precision(model, params, x_all, y_all, val_index))
        if best_score is None or score > best_score + 1e-9:
            best_params, best_score, since_best = params, score, 0
        else:
            since_best += 1
            if since_best >= config.patience:
                break
    if n_val == 0:
        best_params = params
    logger.info("tag head: %d epochs, best held-out R-precision %s", epoch, best_score)
    return TrainedHead(model, best_params, epoch, best_score)
