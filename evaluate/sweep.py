"""Run a sweep: every (defense setting, threat, seed) of a :class:`SweepConfig`, resumably.

The parent process loads the dataset once, reads the store, and skips every
point whose :func:`~slime_def.evaluate.store.record_key` is already there.
The remaining points are grouped by seed and defense name into small chunks
and run by worker processes. Each worker calls
:func:`~slime_def.evaluate.run.prepare` once per seed and reuses the
:class:`~slime_def.evaluate.run.PreparedAttack` for every defense setting and
threat of that seed. Only the parent writes to the store, one record per line
as each chunk returns, so an interrupted sweep loses at most the chunks in flight.

Interrupts: the first SIGINT (Ctrl-C) stops the sweep at once. Queued chunks
are cancelled, worker processes are terminated without finishing their chunk,
and :func:`run_sweep` raises :class:`SweepInterrupted` with the number of
points stored. A second SIGINT terminates the workers and ends the process
with ``os._exit(130)``, which joins no thread or process.

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


class SweepInterrupted(KeyboardInterrupt):
    """A sweep stopped by SIGINT; every record written before it stays in the store.

    Attributes:
      stored: points of the sweep that the store now contains.
      total: points in the sweep.
    """

    def __init__(self, stored: int, total: int):
        super().__init__(f"interrupted: stored {stored} of {total} settings")
        self.stored = stored
        self.total = total


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
        guard = _InterruptGuard(done=plan.done, total=len(plan.points))
        bar = tqdm(total=len(plan.pending), unit="point", desc="sweep", disable=not progress)
        try:
            # closing() shuts the pool down as soon as the loop stops; a traceback
            # would otherwise keep the generator, and so the workers, alive.
            outcomes = _execute(config, dataset, plan.pending, workers, guard)
            with _exit_on_sigterm(), guard.installed(), contextlib.closing(outcomes):
                for point, outcome in outcomes:
                    if isinstance(outcome, str):
                        failed.append((point.spec, point.threat, point.seed, outcome))
                        logger.error("%s, %s, seed %d failed: %s", point.spec, point.threat, point.seed, outcome)
                    else:
                        _check_key(outcome, point)
                        # A SIGINT during the write waits until the record is whole and counted.
                        with guard.deferred():
                            writer.append(outcome)
                            completed += 1
                            guard.stored = plan.done + completed
                    bar.update(1)
        except KeyboardInterrupt:
            raise SweepInterrupted(plan.done + completed, len(plan.points)) from None
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


class _InterruptGuard:
    """SIGINT handler for a running sweep.

    The first SIGINT raises KeyboardInterrupt, unless a record is being written,
    in which case it is raised once the write is done. A second SIGINT
    terminates the worker processes and calls ``os._exit(130)``, because a
    graceful exit could wait on a worker or on the executor's exit hook, which
    joins its management thread. Outside the main thread (where signal handlers
    cannot be set) the guard does nothing and SIGINT keeps its usual handler.
    """

    def __init__(self, done: int, total: int):
        self.stored = done
        self.total = total
        self.processes: list[Any] = []
        self._signals = 0
        self._in_write = False
        self._raise_after_write = False

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def deferred(self):
        self._in_write = True
        try:
            yield
        finally:
            self._in_write = False
        if self._raise_after_write:
            self._raise_after_write = False
            raise KeyboardInterrupt

    def _handle(self, signum, frame):
        self._signals += 1
        if self._signals > 1:
            self.exit_now()
        if self._in_write:
            self._raise_after_write = True
            return
        raise KeyboardInterrupt

    def exit_now(self) -> None:
        """Terminate the workers and end the process with status 130, without cleanup."""
        terminate_processes(self.processes, timeout=0)
        os.write(2, (
            f"\ninterrupted again: exiting at once; stored {self.stored} of {self.total} settings; "
            "rerun the same command to resume\n"
        ).encode())
        os._exit(130)


def terminate_processes(processes: Iterable[Any], timeout: float = 5.0) -> None:
    """Send SIGTERM to each live process, wait up to ``timeout`` seconds, then SIGKILL those left."""
    processes = [process for process in processes if process.is_alive()]
    for process in processes:
        process.terminate()
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            process.kill()


def _check_key(record: dict[str, Any], point: Point) -> None:
    # A mismatch would make the next run redo this point forever, so fail loudly.
    key = record_key(record)
    if key != point.key:
        raise RuntimeError(f"record key {key} differs from the planned key {point.key}")


def _execute(config: SweepConfig, dataset, pending: list[Point], workers: int, guard: _InterruptGuard):
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
    # No ``with`` block: its exit waits for running chunks, which made Ctrl-C slow
    # and let a second Ctrl-C interrupt that wait and leave the process hanging.
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(chunks)), mp_context=context,
        initializer=_init_worker, initargs=(dataset, config.dataset, threads),
    )
    try:
        futures = {
            pool.submit(_run_chunk, config, [(p.spec, p.threat, p.seed) for p in chunk]): chunk
            for chunk in chunks
        }
        # NOTE: ProcessPoolExecutor has no public list of its processes before
        # Python 3.14 (terminate_workers), so the private ``_processes`` is read here.
        guard.processes = list((pool._processes or {}).values())
        for future in concurrent.futures.as_completed(futures):
            yield from zip(futures[future], future.result())
    except BaseException:
        # Stop at once: drop queued chunks and terminate the workers instead of
        # waiting for running chunks, whose results would not be stored anyway.
        processes = list((pool._processes or {}).values()) or guard.processes
        pool.shutdown(wait=False, cancel_futures=True)
        terminate_processes(processes)
        raise
    pool.shutdown(wait=True)


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
