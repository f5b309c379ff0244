"""Benchmark slime-def: `eval` wall time and the core steps against the bare library calls they wrap.

Two groups of measurements, each reported as the median, min and max of the
timed repeats that follow one untimed warm-up:

* ``eval``: ``slime-def eval`` on a dataset (the shipped default unless
  ``--dataset`` names another), timed from process start to exit, so the
  Python, JAX and faiss import costs count.
* ``core``: alignment, kNN retrieval and tag-head training on synthetic
  L2-normalised float32 vectors, each run by ``core_steps.py`` in a fresh
  process, next to the bare NumPy/SciPy, faiss or Flax/Optax code doing the same
  work. Peak memory comes from ``getrusage`` in that process.

Targets are compared and the outcome is recorded as a measured fact; nothing
here fails when a target is missed.

Usage: ``python benchmarks/run.py --out benchmarks/results.json [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy

from slime_def.records import package_versions, to_json, utc_now, write_atomic

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent

EVAL_TARGET_S = 15.0
RATIO_TARGET = 1.5
MEMORY_TARGET = 3.0

# Sizes and repeat counts. The full run took about 9 minutes on the 2-core machine
# described in benchmarks/README.md, and --quick about 2.5 minutes.
FULL = {"items": 100_000, "queries": 2_000, "eval_repeats": 5, "repeats": 3, "dual_repeats": 20}
QUICK = {"items": 10_000, "queries": 500, "eval_repeats": 2, "repeats": 2, "dual_repeats": 5}

EVAL_CASES = (
    ("eval gaussian", ["--defense", "gaussian"], EVAL_TARGET_S),
    ("eval gaussian, mlp retriever", ["--defense", "gaussian", "--retriever", "mlp"], None),
    ("eval gaussian, defended-pairs", ["--defense", "gaussian", "--threat", "defended-pairs"], None),
)

# (name, library worker, bare worker, field of the bare worker to compare with, what is compared)
COMPARISONS = (
    ("alignment ridge, P >= d (primal)", ("align-primal", "library"), ("align-primal", "bare"), "runs_s",
     "fit_ridge through make_aligner('ridge(l2=0.1)').fit, result copied to NumPy, versus "
     "scipy.linalg.solve(x.T @ x + l2 I, x.T @ y, assume_a='pos')"),
    ("alignment ridge, P < d (dual)", ("align-dual", "library"), ("align-dual", "bare"), "runs_s",
     "the same fit on few pairs, versus x.T @ scipy.linalg.solve(x @ x.T + l2 I, y, assume_a='pos')"),
    ("knn retriever predict", ("knn-retriever", "library"), ("knn-faiss", "bare"), "search_runs_s",
     "predict() of the trained knn(neighbours=10) retriever (search plus sparse tag votes) versus "
     "IndexFlatIP.search with k=10 on a built index"),
    ("neighbourhood.knn_indices", ("knn-indices", "library"), ("knn-faiss", "bare"), "runs_s",
     "knn_indices(x, 10, queries=q), which checks, normalises, builds and searches, versus "
     "building an IndexFlatIP, adding x and searching"),
    ("mlp retriever training", ("mlp-train", "library"), ("mlp-train", "bare"), "runs_s",
     "train() of mlp(max_epochs=1, validation_fraction=0.0) versus a hand-written Flax Linen + Optax "
     "AdamW loop of the same network with one jitted call per step; both include building the labels"),
)


# --- machine facts -----------------------------------------------------------------------


def _read_field(path: str, prefix: str) -> str | None:
    try:
        with open(path) as lines:
            for line in lines:
                if line.startswith(prefix):
                    return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1].strip()
    except OSError:
        return None
    return None


def machine_facts() -> dict:
    """Return the CPU model, core counts, memory, OS, BLAS and thread settings of this machine."""
    memory_kib = _read_field("/proc/meminfo", "MemTotal")
    os_name = _read_field("/etc/os-release", "PRETTY_NAME=")
    blas = {}
    try:
        config = np.show_config(mode="dicts")
        blas = {key: config["Build Dependencies"][key].get("name") for key in ("blas", "lapack")}
    except (TypeError, KeyError):
        pass
    return {
        "cpu_model": _read_field("/proc/cpuinfo", "model name"),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(int(memory_kib.split()[0]) / 2**20, 1) if memory_kib else None,
        "os": os_name.strip('"') if os_name else None,
        "kernel": platform.release(),
        "numpy_blas": blas,
        "scipy_version": scipy.__version__,
        "thread_settings": {
            name: os.environ.get(name)
            for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")
        },
    }


def summarise(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


# --- eval --------------------------------------------------------------------------------


def slime_def_command() -> str:
    """Return the slime-def entry point installed next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "slime-def"
    if beside.exists():
        return str(beside)
    found = shutil.which("slime-def")
    if found is None:
        raise SystemExit("slime-def is not installed; run `pip install -e .` in the repository first")
    return found


def time_command(command: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, cwd=REPOSITORY)
    return time.perf_counter() - started, finished


def describe_eval_output(stdout: str) -> dict:
    """Pick the dataset and split lines from the table that `eval` prints."""
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1].strip()
             for line in stdout.splitlines() if line.strip() and line.split(None, 1)[0] in ("dataset", "split")}
    return lines


def bench_eval(entry: str, dataset: str, repeats: int) -> list[dict]:
    results = []
    for name, options, target in EVAL_CASES:
        command = [entry, "eval", *options]
        if dataset != "default":
            command += ["--dataset", dataset]
        display_command = shlex.join(["slime-def", *command[1:]])
        print(f"[eval] {display_command}: warm-up and {repeats} timed runs", flush=True)
        load_before = os.getloadavg()
        warmup_s, finished = time_command(command)
        if finished.returncode != 0:
            results.append({"name": name, "command": display_command, "error": finished.stderr[-2000:]})
            print(f"[eval] failed with exit status {finished.returncode}: {finished.stderr[-500:]}", flush=True)
            continue
        runs = []
        for _ in range(repeats):
            elapsed, finished = time_command(command)
            if finished.returncode != 0:
                raise SystemExit(f"{display_command} failed on a repeat after passing its warm-up:\n{finished.stderr}")
            runs.append(elapsed)
        wall = summarise(runs)
        results.append({
            "name": name, "command": display_command, "unit": "s", "warmup_s": warmup_s, "wall_s": wall,
            "target_s": target, "meets_target": None if target is None else wall["median"] < target,
            "output": describe_eval_output(finished.stdout), "load_average_before": load_before,
        })
        print(f"[eval]   median {wall['median']:.2f} s (min {wall['min']:.2f}, max {wall['max']:.2f})", flush=True)
    return results


# --- core steps --------------------------------------------------------------------------


def run_worker(step: str, variant: str, sizes: dict) -> dict:
    """Run one core step in a fresh process and return its JSON result, or an error record."""
    command = [
        sys.executable, str(HERE / "core_steps.py"), step, variant,
        "--items", str(sizes["items"]), "--queries", str(sizes["queries"]),
        "--repeats", str(sizes["repeats"]), "--dual-repeats", str(sizes["dual_repeats"]),
    ]
    print(f"[core] {step} {variant}", flush=True)
    load_before = os.getloadavg()
    elapsed, finished = time_command(command)
    if finished.returncode != 0:
        print(f"[core]   failed with exit status {finished.returncode}: {finished.stderr[-500:]}", flush=True)
        return {"step": step, "variant": variant, "error": finished.stderr[-2000:]}
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = elapsed
    result["load_average_before"] = load_before
    result["command"] = shlex.join(["python", "benchmarks/core_steps.py", *command[3:]])
    print(f"[core]   median {statistics.median(result['runs_s']):.3f} s, "
          f"peak RSS {result['peak_rss_bytes'] / 2**20:.0f} MiB", flush=True)
    return result


def memory_summary(result: dict) -> dict:
    """Express a worker's peak RSS in multiples of its input bytes.

    ``peak_over_input`` counts everything the process held above its RSS after
    imports, inputs included, so an in-place step scores about 1.0.
    """
    above_imports = result["peak_rss_bytes"] - result["rss_after_imports_bytes"]
    above_inputs = result["peak_rss_bytes"] - result["rss_with_inputs_bytes"]
    ratio = above_imports / result["input_bytes"]
    repeats_peak = result.get("peak_rss_repeats_bytes")
    return {
        "input_mib": result["input_bytes"] / 2**20,
        "rss_after_imports_mib": result["rss_after_imports_bytes"] / 2**20,
        "peak_rss_mib": result["peak_rss_bytes"] / 2**20,
        "peak_above_imports_mib": above_imports / 2**20,
        "peak_above_inputs_mib": above_inputs / 2**20,
        "peak_over_input": ratio,
        # The same ratio for the timed calls alone, without the warm-up's JIT compilation.
        "repeats_peak_over_input": None if repeats_peak is None
        else (repeats_peak - result["rss_after_imports_bytes"]) / result["input_bytes"],
        "target": MEMORY_TARGET,
        "meets_target": ratio < MEMORY_TARGET,
    }


def bench_core(sizes: dict) -> dict:
    workers = {}
    for _, library, bare, _, _ in COMPARISONS:
        for key in (library, bare):
            if key not in workers:
                workers[key] = run_worker(*key, sizes)

    comparisons = []
    for name, library_key, bare_key, bare_field, description in COMPARISONS:
        library, bare = workers[library_key], workers[bare_key]
        entry = {"name": name, "compares": description, "unit": "s"}
        if "error" in library or "error" in bare:
            entry["error"] = library.get("error") or bare.get("error")
            comparisons.append(entry)
            continue
        library_time = summarise(library["runs_s"])
        bare_time = summarise(bare[bare_field])
        ratio = library_time["median"] / bare_time["median"]
        entry.update({
            "shape": library["shape"],
            "library_s": library_time,
            "bare_s": bare_time,
            "ratio": ratio,
            "target_ratio": RATIO_TARGET,
            "meets_target": ratio < RATIO_TARGET,
            "library_memory": memory_summary(library),
            "bare_memory": memory_summary(bare),
            "check": {"library": library.get("check"), "bare": bare.get("check")},
        })
        if "steps" in library:
            entry["steps"] = library["steps"]
            entry["library_steps_per_s"] = library["steps"] / library_time["median"]
            entry["bare_steps_per_s"] = bare["steps"] / bare_time["median"]
        if "train_s" in library:
            entry["library_train_s"] = library["train_s"]
        comparisons.append(entry)
    return {"comparisons": comparisons, "workers": list(workers.values())}


# --- report ------------------------------------------------------------------------------


def verdict(meets: bool | None) -> str:
    if meets is None:
        return "-"
    return "met" if meets else "missed"


def markdown_table(results: dict) -> str:
    """Render the headline figures as the Markdown tables used in benchmarks/README.md."""
    lines = [
        "| `eval` command | median s | min s | max s | target | result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for entry in results["eval"]:
        if "error" in entry:
            lines.append(f"| `{entry['command']}` | failed | | | | |")
            continue
        wall = entry["wall_s"]
        target = "-" if entry["target_s"] is None else f"< {entry['target_s']:g} s"
        lines.append(
            f"| `{entry['command']}` | {wall['median']:.2f} | {wall['min']:.2f} | {wall['max']:.2f} "
            f"| {target} | {verdict(entry['meets_target'])} |"
        )
    lines += [
        "",
        f"| step | library median s (min-max) | bare median s (min-max) | library / bare (target < {RATIO_TARGET:g}) "
        f"| peak / input, library (target < {MEMORY_TARGET:g}) | peak / input, bare |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for entry in results["core"]["comparisons"]:
        if "error" in entry:
            lines.append(f"| {entry['name']} | failed | | | | |")
            continue
        library, bare, memory = entry["library_s"], entry["bare_s"], entry["library_memory"]
        lines.append(
            f"| {entry['name']} | {library['median']:.3f} ({library['min']:.3f}-{library['max']:.3f}) "
            f"| {bare['median']:.3f} ({bare['min']:.3f}-{bare['max']:.3f}) "
            f"| {entry['ratio']:.2f} {verdict(entry['meets_target'])} "
            f"| {memory['peak_over_input']:.2f} {verdict(memory['meets_target'])} "
            f"| {entry['bare_memory']['peak_over_input']:.2f} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "results.json"), metavar="FILE.json",
                        help="Where to write the results (replaced if it exists).")
    parser.add_argument("--quick", action="store_true",
                        help=f"Small sizes ({QUICK['items']:,} items, {QUICK['queries']} queries) and fewer "
                        "repeats, to check the harness.")
    parser.add_argument("--dataset", default="default", metavar="default|PATH",
                        help="Dataset for the `eval` timings, passed to `slime-def eval --dataset`.")
    parser.add_argument("--skip-eval", action="store_true", help="Time only the core steps.")
    parser.add_argument("--skip-core", action="store_true", help="Time only `slime-def eval`.")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    started = time.perf_counter()
    results = {
        "schema": "slime-def/benchmark-results",
        "schema_version": 1,
        "created": utc_now(),
        "command": shlex.join(["python", "benchmarks/run.py", *argv]),
        "mode": "quick" if args.quick else "full",
        "sizes": {**sizes, "dim": 1280, "dual_pairs": 500, "vocabulary": 1000, "tags_per_item": 5,
                  "neighbours": 10, "mlp_batch": 64, "mlp_epochs": 1},
        "machine": machine_facts(),
        "versions": package_versions(),
        "load_average_at_start": os.getloadavg(),
        "eval": [],
        "core": {"comparisons": [], "workers": []},
    }
    if not args.skip_eval:
        results["eval"] = bench_eval(slime_def_command(), args.dataset, sizes["eval_repeats"])
    if not args.skip_core:
        results["core"] = bench_core(sizes)
    results["load_average_at_end"] = os.getloadavg()
    results["total_wall_s"] = time.perf_counter() - started

    write_atomic(args.out, to_json(results) + "\n", force=True)
    print()
    print(markdown_table(results))
    print(f"\nresults written to {args.out} after {results['total_wall_s']:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
