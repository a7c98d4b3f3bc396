"""Speed of the synthetic Aff-Wild2 generator: prints frames/s (wall and per CPU second).

python benchmarks/synthetic_bench.py [--videos 8 --frames 150 --workers 1]
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from emenet_tf.data import synthetic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8, help="training videos (validation: a quarter)")
    parser.add_argument("--frames", type=int, default=150, help="frames per video")
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        wall, cpu = time.perf_counter(), time.process_time()
        summary = synthetic.generate(
            out,
            seed=0,
            train_videos=args.videos,
            val_videos=max(1, args.videos // 4),
            frames_per_video=args.frames,
            image_size=args.image_size,
            ood_images=0,
            workers=args.workers,
        )
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    frames = summary["counts"]["train"]["images"] + summary["counts"]["validation"]["images"]
    print(f"frames written: {frames} at {args.image_size}x{args.image_size}, workers={args.workers}")
    print(f"wall: {frames / wall:.0f} frames/s ({wall:.2f} s)")
    if args.workers <= 1:
        print(f"cpu:  {frames / cpu:.0f} frames per CPU second (wall is lower when the machine is shared)")


if __name__ == "__main__":
    main()
