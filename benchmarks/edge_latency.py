"""Per-face latency and file size of exported .tflite models, against a reference model, on this machine.

Usage: python benchmarks/edge_latency.py EXPORT_DIR [--reference M.tflite] [--runs 200] [--threads 1,4]
Uses the interpreter the edge runtime picks (``ai_edge_litert``, else ``tflite_runtime``): run it in a
venv with only tflite-runtime to time the fallback (edge/README.md, "Which runtime").
Times ``invoke()`` of every ``*.tflite`` in EXPORT_DIR (and the reference) on random inputs of
the model's own input shapes and dtypes (a stream model's state too): median over ``--runs``
invokes after ``--warmup``, at each thread count. Prints a table and the ratio student_int8 /
reference; for a run with a Dirichlet student its latency over student_int8 and over
ensemble_int8 / members; with ``--per_frame DIR`` (a per-frame run's export) also
student_stream_int8 (one frame of a stream: backbone, GRU step, heads) / that per-frame
student_int8. The reference a user would
pick today is the ``fer`` package's ``fer/data/emotion_model_quantized.tflite`` (64x64 gray, 7
classes, no uncertainty); pass its path (this project does not depend on ``fer``).
"""

from __future__ import annotations

import argparse
import glob
import importlib.metadata
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from edge.runtime import RUNTIME, RUNTIMES, Interpreter  # noqa: E402  (the edge runtime's choice)


def _random_input(detail: dict, rng: np.random.Generator) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    shape = detail["shape"]
    if dtype == np.float32:
        return rng.random(shape, dtype=np.float32)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def time_model(path: str, threads: int, runs: int, warmup: int, seed: int = 0) -> float:
    """Median seconds of one ``invoke()`` (input already set) after ``warmup`` invokes."""
    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(seed)
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], _random_input(detail, rng))
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def describe(path: str) -> str:
    details = Interpreter(model_path=path).get_input_details()
    image = max(details, key=lambda d: len(d["shape"]))  # the image, not a state vector
    shape = "x".join(str(int(d)) for d in image["shape"][1:])
    return f"{shape} {np.dtype(image['dtype']).name}" + (" +state" if len(details) > 1 else "")


def measure(paths: list[str], threads: list[int], runs: int, warmup: int) -> list[dict]:
    rows = []
    for path in paths:
        row = {
            "model": os.path.basename(path),
            "path": path,
            "bytes": os.path.getsize(path),
            "input": describe(path),
        }
        for n in threads:
            row[f"ms_{n}t"] = 1000.0 * time_model(path, n, runs, warmup)
        rows.append(row)
    return rows


def print_table(rows: list[dict], threads: list[int]) -> None:
    header = f"{'model':32s} {'input':18s} {'size KB':>9s}" + "".join(f" {f'ms {n}t':>9s}" for n in threads)
    print(header)
    print("-" * len(header))
    for row in rows:
        line = f"{row['model']:32s} {row['input']:18s} {row['bytes'] / 1024:9.1f}"
        print(line + "".join(f" {row[f'ms_{n}t']:9.3f}" for n in threads))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export_dir", help="folder of exported .tflite models (e.g. WORKDIR/export)")
    parser.add_argument("--reference", default=None, help="another .tflite to time in the same run")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", default="1,4", help="comma-separated thread counts")
    parser.add_argument("--per_frame", default=None, help="a per-frame run's export folder (stream ratio)")
    args = parser.parse_args(argv)
    threads = [int(t) for t in args.threads.split(",")]
    paths = sorted(glob.glob(os.path.join(args.export_dir, "*.tflite")))
    if not paths:
        parser.error(f"no .tflite files in {args.export_dir}")
    if args.per_frame:
        paths.append(os.path.join(args.per_frame, "student_int8.tflite"))
    if args.reference:
        if not os.path.isfile(args.reference):
            parser.error(f"--reference {args.reference} does not exist")
        paths.append(args.reference)
    rows = measure(paths, threads, args.runs, args.warmup)
    package = dict(RUNTIMES)[RUNTIME]
    print(f"runtime: {package} {importlib.metadata.version(package)}, numpy {np.__version__}")
    print(f"median of {args.runs} invokes after {args.warmup} warm-up, {os.cpu_count()} CPUs visible")
    print_table(rows, threads)
    by_name = {r["model"]: r for r in rows}
    if args.per_frame and "student_stream_int8.tflite" in by_name:
        stream, frame = by_name["student_stream_int8.tflite"], rows[len(paths) - 1 - bool(args.reference)]
        ratios = ", ".join(f"{n} thread(s) {stream[f'ms_{n}t'] / frame[f'ms_{n}t']:.2f}" for n in threads)
        print(f"student_stream_int8 / per-frame student_int8 latency: {ratios}")
    if args.reference and "student_int8.tflite" in by_name:
        student, ref = by_name["student_int8.tflite"], rows[-1]
        ratios = ", ".join(f"{n} thread(s) {student[f'ms_{n}t'] / ref[f'ms_{n}t']:.2f}" for n in threads)
        print(f"student_int8 / reference latency: {ratios}; size {student['bytes'] / ref['bytes']:.2f}")
    print_dirichlet_ratios(by_name, threads, args.export_dir)
    return rows


def print_dirichlet_ratios(by_name: dict, threads: list[int], export_dir: str) -> None:
    """The Dirichlet student's latency against the paper's student and against 1 / N of the
    ensemble (the targets of issue 11: <= 1.2 and <= 1)."""
    names = ("student_dirichlet_int8.tflite", "student_int8.tflite", "ensemble_int8.tflite")
    if not all(n in by_name for n in names):
        return
    dirichlet, student, ensemble = (by_name[n] for n in names)
    with open(os.path.join(export_dir, "ensemble_int8.json")) as f:
        members = json.load(f)["members"]
    for n in threads:
        key = f"ms_{n}t"
        print(
            f"student_dirichlet_int8, {n} thread(s): {dirichlet[key] * 1000:.1f} us = "
            f"{dirichlet[key] / student[key]:.3f} x student_int8, "
            f"{dirichlet[key] / (ensemble[key] / members):.3f} x ensemble_int8 / {members}"
        )


if __name__ == "__main__":
    main()
