"""Time one core step of slime-def, or the bare library call it wraps, in this process.

``benchmarks/run.py`` starts this script once per (step, variant) in a fresh
process, so that the peak resident set size read from ``getrusage`` belongs to
that step alone. The script prints one JSON object on standard output:

* ``warmup_s``: the first call, which includes JIT compilation;
* ``runs_s``: the timed calls after it, in seconds;
* ``rss_after_imports_bytes``, ``rss_with_inputs_bytes``, ``peak_rss_bytes``:
  memory before the inputs exist, after they are built, and the process peak;
* ``peak_rss_repeats_bytes``: the peak of the timed calls alone, after the
  warm-up (``None`` where the kernel refused to reset its peak mark);
* ``input_bytes``: the bytes of the input arrays (tag lists are not counted);
* ``check``: a number that the library and bare variants of a step should
  agree on, so a benchmark cannot time two different computations.

Usage: ``python benchmarks/core_steps.py STEP VARIANT [--items N ...]``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import resource
import sys
import time
from typing import Callable

# Import every heavy module before the first memory reading, so import costs
# land in ``rss_after_imports_bytes`` and not in the step's own figure.
import faiss
import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.linalg

from slime_def.attack.alignment import make_aligner
from slime_def.attack.retrieval import make_retriever
from slime_def.evaluate import neighbourhood

STEPS = ("align-primal", "align-dual", "knn-retriever", "knn-indices", "knn-faiss", "mlp-train")
VARIANTS = ("library", "bare")

RIDGE_L2 = 0.1
NEIGHBOURS = 10
MLP_HIDDEN = 512
MLP_DROPOUT = 0.1
MLP_LEARNING_RATE = 1e-3
MLP_WEIGHT_DECAY = 1e-4


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status; the memory figures need Linux")


def rss_now_bytes() -> int:
    """Return the current resident set size of this process (VmRSS)."""
    return _status_kib("VmRSS:") * 1024


def hiwater_rss_bytes() -> int:
    """Return the kernel's peak-RSS mark of this process (VmHWM), which ``reset_peak_rss`` lowers."""
    return _status_kib("VmHWM:") * 1024


def peak_rss_bytes() -> int:
    """Return the peak resident set size of this process; Linux reports ru_maxrss in KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def unit_rows(rng: np.random.Generator, rows: int, dim: int, chunk: int = 8192) -> np.ndarray:
    """Return (rows, dim) float32 Gaussian vectors with unit L2 norm.

    The rows are drawn and normalised in chunks, so building the matrix needs no
    more memory than the matrix itself plus one chunk.
    """
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, chunk):
        block = out[start : start + chunk]
        rng.standard_normal(block.shape, dtype=np.float32, out=block)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
    return out


def synthetic_tags(rng: np.random.Generator, items: int, vocabulary: int, per_item: int) -> list[list[str]]:
    """Draw ``per_item`` tags per item from a Zipf-like vocabulary; repeats within an item are dropped.

    Tag j has probability proportional to 1 / (j + 1), as in real tag sets where
    a few tags are common and most are rare.
    """
    weights = 1.0 / np.arange(1, vocabulary + 1)
    drawn = rng.choice(vocabulary, size=(items, per_item), p=weights / weights.sum())
    names = [f"tag{j:04d}" for j in range(vocabulary)]
    return [[names[j] for j in dict.fromkeys(row.tolist())] for row in drawn]


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux 4.0+); return False if the kernel rejects it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def time_calls(call: Callable[[], object], repeats: int) -> tuple[dict, object]:
    """Call once as warm-up, then ``repeats`` times; return the timings and the last result.

    The peak RSS is read after the warm-up and the mark is then reset, so the
    peak at the end covers the timed calls alone. Memory the warm-up kept (for
    example compiled code) still counts in it.
    """
    started = time.perf_counter()
    result = call()
    timings = {"warmup_s": time.perf_counter() - started, "runs_s": []}
    timings["peak_rss_through_warmup_bytes"] = peak_rss_bytes()
    timings["peak_reset_after_warmup"] = reset_peak_rss()
    for _ in range(repeats):
        del result
        gc.collect()
        started = time.perf_counter()
        result = call()
        timings["runs_s"].append(time.perf_counter() - started)
    return timings, result


# --- alignment -------------------------------------------------------------------------


def ridge_bare(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
    """Ridge map with NumPy BLAS and SciPy LAPACK, in the primal or dual form as slime-def picks."""
    pairs, dim = x.shape
    if pairs < dim:
        gram = x @ x.T
        gram[np.diag_indices(pairs)] += l2
        return x.T @ scipy.linalg.solve(gram, y, assume_a="pos")
    gram = x.T @ x
    gram[np.diag_indices(dim)] += l2
    return scipy.linalg.solve(gram, x.T @ y, assume_a="pos")


def run_alignment(args, variant: str) -> dict:
    pairs = args.items if args.step == "align-primal" else args.dual_pairs
    rng = np.random.default_rng(args.seed)
    # The closed-form fits cost the same for any values, so independent vectors stand in for pairs.
    x = unit_rows(rng, pairs, args.dim)
    y = unit_rows(rng, pairs, args.dim)
    inputs = {"input_bytes": x.nbytes + y.nbytes, "shape": f"{pairs} pairs, {args.dim}-d -> {args.dim}-d"}
    rss_with_inputs = rss_now_bytes()

    if variant == "library":
        aligner = make_aligner(f"ridge(l2={RIDGE_L2})")
        call = lambda: np.asarray(aligner.fit(x, y))
    else:
        call = lambda: ridge_bare(x, y, RIDGE_L2)
    repeats = args.repeats if args.step == "align-primal" else args.dual_repeats
    timings, w = time_calls(call, repeats)
    return {**inputs, **timings, "rss_with_inputs_bytes": rss_with_inputs,
            "check": float(np.linalg.norm(w.astype(np.float64)))}


# --- kNN -------------------------------------------------------------------------------


def knn_inputs(args) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(args.seed)
    aux = unit_rows(rng, args.items, args.dim)
    queries = unit_rows(rng, args.queries, args.dim)
    return aux, queries


def run_knn_retriever(args, variant: str) -> dict:
    """Time the ``knn`` retriever's predict; training (index and tag matrix) is timed once."""
    aux, queries = knn_inputs(args)
    tags = synthetic_tags(np.random.default_rng([args.seed, 1]), args.items, args.vocabulary, args.tags_per_item)
    rss_with_inputs = rss_now_bytes()

    started = time.perf_counter()
    predict = make_retriever(f"knn(neighbours={NEIGHBOURS})").train(aux, tags)
    train_s = time.perf_counter() - started
    timings, predictions = time_calls(lambda: predict(queries), args.repeats)
    # The retriever returns tag scores, which bare faiss does not compute, so there is nothing to check.
    return {
        "input_bytes": aux.nbytes + queries.nbytes, "rss_with_inputs_bytes": rss_with_inputs,
        "shape": f"{args.queries} queries, {args.items} items, {args.dim}-d, k={NEIGHBOURS}",
        "vocabulary": len(predictions.vocabulary),
        "train_s": train_s, **timings,
        "check": None,
        "mean_tags_voted_per_query": float(predictions.scores.sum(dtype=np.float64) / len(queries)),
    }


def run_knn_indices(args, variant: str) -> dict:
    aux, queries = knn_inputs(args)
    rss_with_inputs = rss_now_bytes()
    timings, found = time_calls(lambda: neighbourhood.knn_indices(aux, NEIGHBOURS, queries=queries), args.repeats)
    return {
        "input_bytes": aux.nbytes + queries.nbytes, "rss_with_inputs_bytes": rss_with_inputs,
        "shape": f"{args.queries} queries, {args.items} items, {args.dim}-d, k={NEIGHBOURS}",
        **timings, "check": float(found[:, 0].astype(np.float64).mean()),
    }


def run_knn_faiss(args, variant: str) -> dict:
    """Bare faiss: build an IndexFlatIP, add the items, search; the two parts are timed apart.

    The search time is the reference for the retriever's predict, and build plus
    search is the reference for ``knn_indices``, which builds its index per call.
    """
    aux, queries = knn_inputs(args)
    rss_with_inputs = rss_now_bytes()

    build_runs_s, search_runs_s = [], []

    def build_and_search() -> np.ndarray:
        started = time.perf_counter()
        index = faiss.IndexFlatIP(aux.shape[1])
        index.add(aux)
        built = time.perf_counter()
        _, found = index.search(queries, NEIGHBOURS)
        build_runs_s.append(built - started)
        search_runs_s.append(time.perf_counter() - built)
        return found

    timings, found = time_calls(build_and_search, args.repeats)
    return {
        "input_bytes": aux.nbytes + queries.nbytes, "rss_with_inputs_bytes": rss_with_inputs,
        "shape": f"{args.queries} queries, {args.items} items, {args.dim}-d, k={NEIGHBOURS}",
        # The first entry of each list is the warm-up.
        **timings, "build_runs_s": build_runs_s[1:], "search_runs_s": search_runs_s[1:],
        "check": float(found[:, 0].astype(np.float64).mean()),
    }


# --- MLP tag head ----------------------------------------------------------------------


class BareTagMLP(linen.Module):
    """The same network as slime-def's tag head: Dense -> GELU -> Dropout -> Dense."""

    hidden: int
    tags: int
    dropout: float

    @linen.compact
    def __call__(self, x, *, train: bool):
        x = jax.nn.gelu(linen.Dense(self.hidden)(x))
        x = linen.Dropout(self.dropout, deterministic=not train)(x)
        return linen.Dense(self.tags)(x)


BARE_OPTIMIZER = optax.adamw(MLP_LEARNING_RATE, weight_decay=MLP_WEIGHT_DECAY)


# The model is static (a hashable Linen dataclass), and x and y are arguments rather than
# closed-over values, so jit compiles once per shape and does not embed the data as constants.
@functools.partial(jax.jit, static_argnames="model")
def bare_train_step(model, params, opt_state, dropout_key, step, x, y, batch_rows):
    def loss_fn(p):
        rngs = {"dropout": jax.random.fold_in(dropout_key, step)}
        logits = model.apply({"params": p}, x[batch_rows], train=True, rngs=rngs)
        return optax.sigmoid_binary_cross_entropy(logits, y[batch_rows]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = BARE_OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def train_bare_head(aux: np.ndarray, tags: list[list[str]], *, epochs: int, batch: int, seed: int) -> tuple:
    """Train the tag head with a hand-written Flax Linen and Optax loop, one jitted call per step.

    It does the same work as the ``mlp`` retriever's training: build the
    vocabulary and multi-hot labels, normalise the rows, and run AdamW steps on
    full batches of a fresh permutation each epoch, dropping the ragged last one.
    """
    vocabulary = sorted({tag for item in tags for tag in item})
    column = {tag: j for j, tag in enumerate(vocabulary)}
    rows = np.repeat(np.arange(len(tags)), [len(item) for item in tags])
    columns = np.fromiter((column[tag] for item in tags for tag in item), dtype=np.int64, count=rows.size)
    labels = np.zeros((len(tags), len(vocabulary)), dtype=np.float32)
    labels[rows, columns] = 1.0
    x = jnp.asarray(aux / np.linalg.norm(aux, axis=1, keepdims=True))
    y = jnp.asarray(labels)
    del labels

    model = BareTagMLP(MLP_HIDDEN, len(vocabulary), MLP_DROPOUT)
    params_key, dropout_key = jax.random.split(jax.random.key(seed))
    params = model.init(params_key, x[:1], train=False)["params"]
    opt_state = BARE_OPTIMIZER.init(params)

    rng = np.random.default_rng(seed)
    steps = 0
    for _ in range(epochs):
        permutation = rng.permutation(len(aux))
        for start in range(0, len(aux) - batch + 1, batch):
            params, opt_state, loss = bare_train_step(
                model, params, opt_state, dropout_key, steps, x, y, permutation[start : start + batch]
            )
            steps += 1
    return jax.block_until_ready(params), steps, float(loss)


def run_mlp_train(args, variant: str) -> dict:
    """Time training of the ``mlp`` tag head for a fixed number of epochs, with no early stopping."""
    rng = np.random.default_rng(args.seed)
    aux = unit_rows(rng, args.items, args.dim)
    tags = synthetic_tags(np.random.default_rng([args.seed, 1]), args.items, args.vocabulary, args.tags_per_item)
    rss_with_inputs = rss_now_bytes()
    steps = args.epochs * (args.items // args.batch)

    if variant == "library":
        # validation_fraction=0 turns off the held-out split, so every item trains
        # and max_epochs fixes the step count, as in the bare loop.
        retriever = make_retriever(
            f"mlp(hidden={MLP_HIDDEN}, max_epochs={args.epochs}, batch_size={args.batch}, validation_fraction=0.0)"
        )
        call = lambda: retriever.train(aux, tags, seed=args.seed)
        timings, predict = time_calls(call, args.repeats)
        check = float(predict(aux[:1000]).scores.mean(dtype=np.float64))
    else:
        call = lambda: train_bare_head(aux, tags, epochs=args.epochs, batch=args.batch, seed=args.seed)
        timings, (_, steps, _) = time_calls(call, args.repeats)
        check = None
    return {
        "input_bytes": aux.nbytes, "rss_with_inputs_bytes": rss_with_inputs,
        "shape": f"{args.items} items, {args.dim}-d, {args.vocabulary} tags, hidden {MLP_HIDDEN}, "
                 f"batch {args.batch}, {args.epochs} epoch(s)",
        "steps": steps, **timings, "check": check,
    }


RUNNERS = {
    "align-primal": run_alignment,
    "align-dual": run_alignment,
    "knn-retriever": run_knn_retriever,
    "knn-indices": run_knn_indices,
    "knn-faiss": run_knn_faiss,
    "mlp-train": run_mlp_train,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=STEPS)
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--items", type=int, default=100_000, help="Rows of the synthetic collection.")
    parser.add_argument("--dim", type=int, default=1280, help="Dimension of every vector.")
    parser.add_argument("--queries", type=int, default=2_000, help="kNN query vectors.")
    parser.add_argument("--dual-pairs", type=int, default=500, help="Alignment pairs for the P < d branch.")
    parser.add_argument("--vocabulary", type=int, default=1_000, help="Distinct tags.")
    parser.add_argument("--tags-per-item", type=int, default=5, help="Tags drawn per item before de-duplication.")
    parser.add_argument("--epochs", type=int, default=1, help="MLP training epochs.")
    parser.add_argument("--batch", type=int, default=64, help="MLP batch size (items).")
    parser.add_argument("--repeats", type=int, default=3, help="Timed calls after the warm-up.")
    parser.add_argument("--dual-repeats", type=int, default=20, help="Timed calls for the P < d branch.")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    jnp.zeros(1).block_until_ready()  # start the XLA backend before the first memory reading
    if args.step == "knn-faiss" and args.variant != "bare":
        raise SystemExit("knn-faiss is the bare faiss reference; run it with the variant 'bare'")
    if args.step in ("knn-retriever", "knn-indices") and args.variant != "library":
        raise SystemExit(f"{args.step} has no bare variant; the bare reference is 'knn-faiss bare'")
    rss_after_imports = rss_now_bytes()
    result = RUNNERS[args.step](args, args.variant)
    # getrusage may keep a maximum from before the reset, so the repeats' peak comes from VmHWM.
    result.update(
        step=args.step, variant=args.variant, rss_after_imports_bytes=rss_after_imports,
        peak_rss_bytes=max(peak_rss_bytes(), result["peak_rss_through_warmup_bytes"]),
        peak_rss_repeats_bytes=hiwater_rss_bytes() if result["peak_reset_after_warmup"] else None,
        threads={"faiss_omp": faiss.omp_get_max_threads()},
    )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
