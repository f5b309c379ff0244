"""Run a sweep: every (defense setting, threat, seed) of a :class:`SweepConfig`, resumably.

The parent process loads the dataset once, reads the store, and skips every
point whose :func:`~slime_def.evaluate.store.record_key` is already there.
The remaining points are grouped by seed and defense name into small chunks
and run by worker processes. Each worker calls
:func:`~slime_def.evaluate.run.prepare` once per seed and reuses the
:class:`~slime_def.evaluate.run.PreparedAttack` for every defense setting and
threat of that seed. Only the parent writes to the store, one record per line
as each chunk returns, so an interrupted sweep loses at most the chunks in flight.

Workers are started with the ``spawn`` method because JAX is not fork-safe.
This module imports neither JAX nor faiss at import time, so a spawned
worker loads them only when it starts work.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from typing import Any, Iterable

from slime_def.evaluate.grid import SweepConfig
from slime_def.evaluate.store import RecordKey, ResultStore, make_key, record_key

logger = logging.getLogger(__name__)

# Chunks per worker that the pending points are cut into: more chunks balance
# the load better, fewer send fewer messages between processes.
CHUNKS_PER_WORKER = 4
# Seconds between a worker's checks that its parent process is still alive.
PARENT_CHECK_INTERVAL = 1.0


@dataclasses.dataclass(frozen=True)
class Point:
    """One run setting of a sweep, with its store key."""

    spec: str
    threat: str
    seed: int
    key: RecordKey


@dataclasses.dataclass
class SweepPlan:
    """Every point of a sweep, split into those already stored and those to run."""

    points: list[Point]
    pending: list[Point]
    fingerprint: str

    @property
    def done(self) -> int:
        return len(self.points) - len(self.pending)


@dataclasses.dataclass
class SweepResult:
    """Outcome of a sweep.

    Attributes:
      total: points in the sweep.
      skipped: points already in the store before the sweep.
      completed: points run and written now.
      failed: (spec, threat, seed, error message) of points that raised; they are
        not stored, so the next run retries them.
      seconds: wall-clock time of the sweep.
    """

    total: int
    skipped: int
    completed: int
    failed: list[tuple[str, str, int, str]]
    seconds: float


def default_workers() -> int:
    """Return min(2, CPU count): two processes already keep a small machine busy."""
    return max(1, min(2, os.cpu_count() or 1))


def plan_sweep(config: SweepConfig, dataset, store: ResultStore) -> SweepPlan:
    """List the sweep's points and mark those whose records the store already contains.

    Args:
      config: the sweep.
      dataset: the loaded :class:`~slime_def.data.dataset.EmbeddingDataset`.
      store: the results store; a missing file counts as empty.
    """
    from slime_def.attack.alignment import make_aligner
    from slime_def.attack.retrieval import make_retriever
    from slime_def.evaluate.run import _pick_space

    # The record stores the canonical retriever, aligner and space names, so the
    # key of a pending point must use the same resolved values.
    retriever = make_retriever(config.retriever).spec
    aligner = make_aligner(config.aligner).spec
    victim_space = _pick_space(dataset, config.victim_space, "victim", "--victim-space")
    attacker_space = _pick_space(dataset, config.attacker_space, "attacker", "--attacker-space")
    fingerprint = dataset.fingerprint

    points = []
    for spec, threat, seed in config.points():
        key = make_key(
            defense=spec, threat=threat, seed=seed, fingerprint=fingerprint, victim_space=victim_space,
            attacker_space=attacker_space, retriever=retriever, aligner=aligner,
            align_pairs=config.align_pairs, k=config.k, auxiliary_fraction=config.auxiliary_fraction,
        )
        points.append(Point(spec, threat, seed, key))

    stored = store.read().keys()
    pending = [point for point in points if point.key not in stored]
    return SweepPlan(points, pending, fingerprint)


def chunk_points(pending: list[Point], workers: int) -> list[list[Point]]:
    """Cut pending points into chunks of one seed and one defense name.

    A chunk shares one prepared attack and the defense's compiled functions in
    its worker. Chunks hold at most ``ceil(pending / (workers * CHUNKS_PER_WORKER))``
    points, so every worker gets several and the load stays even.
    """
    if not pending:
        return []
    limit = max(1, math.ceil(len(pending) / (max(1, workers) * CHUNKS_PER_WORKER)))
    groups: dict[tuple[int, str], list[Point]] = {}
    for point in pending:
        family = point.spec.split("(", 1)[0]
        groups.setdefault((point.seed, family), []).append(point)
    chunks = []
    for group in groups.values():
        for start in range(0, len(group), limit):
            chunks.append(group[start : start + limit])
    return chunks


def run_sweep(
    config: SweepConfig,
    store_path: str | os.PathLike,
    *,
    dataset=None,
    workers: int | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run every point of ``config`` that ``store_path`` does not hold yet.

    Args:
      config: the sweep.
      store_path: the JSONL store; created if missing, appended to otherwise.
      dataset: an already loaded dataset; default: load ``config.dataset``.
      workers: worker processes; 1 runs in this process. Default:
        ``config.workers``, else :func:`default_workers`.
      progress: show a tqdm progress bar (points done, time left) on stderr.

    Raises:
      StoreError: the store is corrupt or used by another sweep.
      SlimeDefError: the dataset or a run option is invalid.
    """
    from tqdm.auto import tqdm

    from slime_def.data.readers import load_dataset

    started = time.perf_counter()
    if dataset is None:
        dataset = load_dataset(config.dataset, metadata=config.metadata)
    store = ResultStore(store_path)
    workers = workers or config.workers or default_workers()

    with store.open_for_append() as writer:
        plan = plan_sweep(config, dataset, store)
        logger.info(
            "sweep of %d points: %d already in %s, %d to run on %d worker(s)",
            len(plan.points), plan.done, store.path, len(plan.pending), workers,
        )
        failed: list[tuple[str, str, int, str]] = []
        completed = 0
        bar = tqdm(total=len(plan.pending), unit="point", desc="sweep", disable=not progress)
        try:
            with _exit_on_sigterm():
                for point, outcome in _execute(config, dataset, plan.pending, workers):
                    if isinstance(outcome, str):
                        failed.append((point.spec, point.threat, point.seed, outcome))
                        logger.error("%s, %s, seed %d failed: %s", point.spec, point.threat, point.seed, outcome)
                    else:
                        _check_key(outcome, point)
                        writer.append(outcome)
                        completed += 1
                    bar.update(1)
        finally:
            bar.close()

    return SweepResult(len(plan.points), plan.done, completed, failed, time.perf_counter() - started)


@contextlib.contextmanager
def _exit_on_sigterm():
    """Turn SIGTERM into SystemExit while the sweep runs, so the worker pool shuts down.

    Without this, a terminated parent leaves its spawned workers waiting for work.
    Stored records are unaffected either way. Outside the main thread (where
    signal handlers cannot be set) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_key(record: dict[str, Any], point: Point) -> None:
    # A mismatch would make the next run redo this point forever, so fail loudly.
    key = record_key(record)
    if key != point.key:
        raise RuntimeError(f"record key {key} differs from the planned key {point.key}")


def _execute(config: SweepConfig, dataset, pending: list[Point], workers: int):
    """Yield (point, record or error message) as points finish."""
    chunks = chunk_points(pending, workers)
    if not chunks:
        return
    if workers == 1:
        worker = _Worker(dataset, config.dataset)
        for chunk in chunks:
            yield from zip(chunk, worker.run(config, [(p.spec, p.threat, p.seed) for p in chunk]))
        return

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)), mp_context=context,
        initializer=_init_worker, initargs=(dataset, config.dataset, threads),
    ) as pool:
        futures = {
            pool.submit(_run_chunk, config, [(p.spec, p.threat, p.seed) for p in chunk]): chunk
            for chunk in chunks
        }
        try:
            for future in concurrent.futures.as_completed(futures):
                yield from zip(futures[future], future.result())
        except BaseException:
            # Drop the queued chunks. Running ones finish (a few seconds) and are
            # discarded, because only completed chunks reach the store.
            pool.shutdown(wait=False, cancel_futures=True)
            raise


class _Worker:
    """Runs points against one dataset, preparing each seed's attack once."""

    def __init__(self, dataset, source: str):
        self.dataset = dataset
        self.source = source
        self.prepared: dict[Any, Any] = {}

    def run(self, config: SweepConfig, points: Iterable[tuple[str, str, int]]) -> list[dict | str]:
        """Return one record, or an error message, per point."""
        from slime_def.evaluate.run import attack_defense, prepare

        outcomes: list[dict | str] = []
        for spec, threat, seed in points:
            base = config.eval_config(seed)
            try:
                if base not in self.prepared:
                    self.prepared[base] = prepare(base, self.dataset)
                record = attack_defense(self.prepared[base], spec, threat)
            except Exception as exc:  # reported per point; the sweep goes on with the rest
                logger.debug("point %s, %s, seed %d failed", spec, threat, seed, exc_info=True)
                outcomes.append(f"{type(exc).__name__}: {exc}")
                continue
            record["dataset"]["source"] = self.source
            outcomes.append(record)
        return outcomes


_WORKER: _Worker | None = None


def _init_worker(dataset, source: str, threads: int) -> None:
    """Set up a worker: faiss threads, the dataset, signal handling and a parent watchdog."""
    global _WORKER

    # Several workers with a full-size OpenMP pool each would oversubscribe the
    # cores, and the searches here are small (one row per target item).
    # NOTE: XLA's own thread pool is left alone: turning off its multi-threaded
    # Eigen (XLA_FLAGS=--xla_cpu_multi_thread_eigen=false) made a 96-point sweep on
    # the 400-item synthetic set slower, 44 s against 24 s with 2 workers on 2 cores.
    import faiss

    faiss.omp_set_num_threads(threads)
    _WORKER = _Worker(dataset, source)

    # Ctrl-C reaches the whole process group. The parent handles it and shuts the
    # pool down, so workers ignore it instead of each printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """End this worker once its parent is gone (killed with SIGKILL, say), instead of waiting forever."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_INTERVAL)
    os._exit(1)


def _run_chunk(config: SweepConfig, points: list[tuple[str, str, int]]) -> list[dict | str]:
    assert _WORKER is not None, "worker used before _init_worker"
    return _WORKER.run(config, points)
