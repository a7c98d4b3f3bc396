"""Times the label parsing of the folder CSV reader and of the AffectNet CSV reader at 500,000 rows.

  python benchmarks/index_bench_real.py [--rows 500000] [--files 20000] [--out DIR]

Writing 500k image files would take longer than what it measures, so each reader is timed in two parts:
  1. parsing alone, at --rows rows: ``folder.parse_csv`` and ``affectnet.parse_csv`` (every check a
     row gets, no image touched);
  2. the whole ``folder.read`` at --files rows with an empty image file per row (the parse plus the
     folder listings, the existence checks and the index), extrapolated linearly to --rows.
AffectNet's read also crops every image once (the first run only), which is image decoding, not
indexing: it is not timed here. Prints rows/s and seconds; never asserts.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emenet_tf.data.readers import affectnet, folder  # noqa: E402

EXPRS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "3", "")


def folder_csv(path: str, rows: int, seed: int = 0) -> None:
    """A labels CSV of ``rows`` rows over 1,000 sub-folders: expr, two AUs, valence, arousal, split."""
    rng = np.random.default_rng(seed)
    expr = rng.integers(0, len(EXPRS), rows)
    au = rng.integers(-1, 2, (rows, 2))
    va = np.round(rng.uniform(-1, 1, (rows, 2)), 3)
    with open(path, "w") as f:
        f.write("path,expr,AU1,AU12,valence,arousal,split\n")
        for i in range(rows):
            cells = ["" if a < 0 else str(a) for a in au[i]]
            split = "validation" if i % 10 == 0 else "train"
            labels = f"{EXPRS[expr[i]]},{cells[0]},{cells[1]},{va[i, 0]},{va[i, 1]},{split}"
            f.write(f"d{i % 1000:03d}/img{i:07d}.jpg,{labels}\n")


def affectnet_csv(path: str, rows: int, seed: int = 0) -> None:
    """An AffectNet-layout CSV of ``rows`` rows, 136 landmark numbers each (~1 KB a row, as the real one)."""
    rng = np.random.default_rng(seed)
    marks = ";".join(f"{v:.2f}" for v in rng.uniform(50, 400, 136))
    expr = rng.integers(0, 11, rows)
    va = np.round(rng.uniform(-1, 1, (rows, 2)), 6)
    with open(path, "w") as f:
        f.write(",".join(affectnet.COLUMNS) + "\n")
        for i in range(rows):
            name = f"{i % 1000}/{i:040x}.jpg"
            box = f"{i % 97},{i % 89},{200 + i % 50},{200 + i % 50}"
            f.write(f"{name},{box},{marks},{expr[i]},{va[i, 0]},{va[i, 1]}\n")


def timed(fn, *args):
    """(fn's result, (wall seconds, CPU seconds of this process)): on a shared machine the CPU time is
    the steadier figure."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, (time.perf_counter() - start, time.process_time() - cpu)


def report(label: str, rows: int, seconds: tuple, note: str = "") -> None:
    wall, cpu = seconds
    rate = f"{rows / cpu:>9,.0f} rows/CPU-s"
    print(f"{label:<50} {rows:>9,} rows  wall {wall:6.2f} s  CPU {cpu:6.2f} s  {rate}  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--files", type=int, default=20_000)
    parser.add_argument("--out", default=None, help="scratch folder (default: a temporary one, removed)")
    args = parser.parse_args()
    root = args.out or tempfile.mkdtemp(prefix="index_bench_real-")
    os.makedirs(root, exist_ok=True)
    try:
        big = os.path.join(root, "folder_big.csv")
        folder_csv(big, args.rows)
        table, seconds = timed(folder.parse_csv, big)
        report(
            "folder.parse_csv (parse + checks, no image)",
            len(table.paths),
            seconds,
            f"{os.path.getsize(big) / 1e6:.0f} MB",
        )
        aff = os.path.join(root, "training.csv")
        affectnet_csv(aff, args.rows)
        parsed, seconds = timed(affectnet.parse_csv, aff)
        report(
            "affectnet.parse_csv (parse + checks, no image)",
            len(parsed["path"]),
            seconds,
            f"{os.path.getsize(aff) / 1e6:.0f} MB",
        )
        small_root = os.path.join(root, "files")
        os.makedirs(small_root)
        small = os.path.join(small_root, "labels.csv")
        folder_csv(small, args.files, seed=1)
        for d in range(min(args.files, 1000)):
            os.makedirs(os.path.join(small_root, f"d{d:03d}"), exist_ok=True)
        for i in range(args.files):
            open(os.path.join(small_root, f"d{i % 1000:03d}", f"img{i:07d}.jpg"), "wb").close()
        splits, seconds = timed(folder.read, small, os.path.join(root, "work"))
        kept = sum(len(s) for s in splits.values())
        report(
            "folder.read (parse, listings, index) on real files", args.files, seconds, f"{kept:,} rows kept"
        )
        scale = args.rows / args.files
        wall, cpu = seconds[0] * scale, seconds[1] * scale
        print(f"  extrapolated to {args.rows:,} rows (linear): wall {wall:.1f} s, CPU {cpu:.1f} s")
    finally:
        if args.out is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
