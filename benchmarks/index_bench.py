"""Times the Aff-Wild2 reader on a label-only tree of ~3M annotation lines and reports its memory.

  python benchmarks/index_bench.py [--lines 3000000] [--videos 550] [--images] [--out DIR]

--lines counts annotation lines over all files of the three task sets (every video is in all
three), so the index has about lines / 3 frames. By default no images are written and the reader
runs with check_images=False; --images writes an empty <00001>.jpg per frame and times the
reader with check_images=True (the folder listing and file-name checks; use fewer --lines).
Prints lines/s, CPU time, peak RSS (ru_maxrss) and the RSS growth kept by the index, beside the
index's own byte count and what fixed-width unicode paths would have cost instead.
"""

import argparse
import gc
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emenet_tf.data import affwild2  # noqa: E402
from emenet_tf.labels import AU_HEADER, EXPR_HEADER, VA_HEADER  # noqa: E402


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far in MB (ru_maxrss is in KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def line_pools(rng: np.random.Generator) -> dict:
    """Distinct label lines per task (with missing markers) to draw file bodies from quickly."""
    au = rng.integers(0, 2, (256, 12))
    au[:16] = -1
    va = np.round(rng.uniform(-1, 1, (4096, 2)), 4)
    va[:64, 1] = -5
    return {
        "au": [",".join(map(str, row)) for row in au.tolist()],
        "expr": [str(k) for k in range(-1, 7)],
        "va": [f"{v:g},{a:g}" for v, a in va.tolist()],
    }


def build_tree(out: str, lines: int, videos: int, images: bool, seed: int = 0) -> int:
    """Write annotations for ``videos`` videos in all three sets, ``lines`` lines in total."""
    rng = np.random.default_rng(seed)
    pools = line_pools(rng)
    headers = {"au": AU_HEADER, "expr": EXPR_HEADER, "va": VA_HEADER}
    dirs = {"au": "AU_Set", "expr": "EXPR_Set", "va": "VA_Set"}
    os.makedirs(os.path.join(out, "cropped_aligned"), exist_ok=True)
    frames = rng.multinomial(lines // 3 - videos, np.full(videos, 1.0 / videos)) + 1
    extra = lines - 3 * (lines // 3)  # 0..2 lines left over: one more frame in video 0 of some sets
    written = 0
    for t, (task, pool) in enumerate(pools.items()):
        folder = os.path.join(out, "annotations", dirs[task], "Train_Set")
        os.makedirs(folder, exist_ok=True)
        for v, n in enumerate(frames.tolist()):
            n += int(v == 0 and t < extra)
            pick = rng.integers(0, len(pool), n)
            body = "\n".join([headers[task]] + [pool[i] for i in pick.tolist()]) + "\n"
            name = f"{v:03d}-30-1280x720" + ("_left" if v % 7 == 0 else "")
            with open(os.path.join(folder, name + ".txt"), "w") as f:
                f.write(body)
            written += n
            if images and t == 0:
                write_images(os.path.join(out, "cropped_aligned", name), n)
    return written


def write_images(folder: str, frames: int) -> None:
    """Empty <00001>.jpg files for frames 1..frames: the reader lists names, it never opens them."""
    os.makedirs(folder, exist_ok=True)
    for k in range(1, frames + 1):
        open(os.path.join(folder, f"{k:05d}.jpg"), "wb").close()


def index_bytes(index) -> dict:
    """Bytes held by the index: numpy buffers, the path strs, and a fixed-width unicode alternative."""
    arrays = sum(getattr(index, k).nbytes for k in ("au", "au_mask", "expr", "expr_mask", "va", "va_mask"))
    arrays += index.frame.nbytes
    path_strs = sum(sys.getsizeof(p) for p in index.paths)
    video_strs = sum(sys.getsizeof(v) for v in set(index.video.tolist()))
    width = max(len(p) for p in index.paths)
    return {
        "labels": arrays,
        "paths_object": index.paths.nbytes + path_strs,
        "paths_unicode": 4 * width * len(index),
        "video_object": index.video.nbytes + video_strs,
        "video_unicode": 4 * max(len(v) for v in index.video[:1000]) * len(index),
    }


def run(lines: int, videos: int, images: bool, out: str) -> None:
    """Build the tree, time one load_split, print the figures."""
    t0 = time.perf_counter()
    written = build_tree(out, lines, videos, images)
    print(f"tree: {written} annotation lines, {videos} videos x 3 sets, {time.perf_counter() - t0:.1f} s")
    gc.collect()
    base, base_peak = rss_mb(), peak_rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    index = affwild2.load_split(out, "train", check_images=images)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    gc.collect()
    kept = rss_mb() - base
    rate = written / seconds
    print(f"load_split (check_images={images}): {seconds:.2f} s, {rate:,.0f} lines/s, {len(index)} frames")
    print(f"  CPU time {cpu:.2f} s (wall time on a shared machine includes waiting for a core)")
    print(f"skipped: {index.skipped}")
    print(f"RSS before {base:.0f} MB; peak (ru_maxrss) {peak_rss_mb():.0f} MB (before {base_peak:.0f} MB)")
    print(f"RSS kept by the index: {kept:.0f} MB ({kept * 1e6 / len(index):.0f} bytes/frame)")
    sizes = index_bytes(index)
    for name, size in sizes.items():
        print(f"  {name:14s} {size / 1e6:8.1f} MB  {size / len(index):6.1f} bytes/frame")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=3_000_000, help="annotation lines over all files")
    parser.add_argument("--videos", type=int, default=550)
    parser.add_argument("--images", action="store_true", help="write empty images; check_images=True")
    parser.add_argument("--out", default=None, help="tree folder (default: a temp folder, removed after)")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="affwild2_bench_")
    try:
        run(args.lines, args.videos, args.images, out)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
