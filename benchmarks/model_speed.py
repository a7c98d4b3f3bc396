"""Training and inference throughput of the EMENet variants on random tensors (CPU figures).

Usage (from the repository root): PYTHONPATH=. python benchmarks/model_speed.py [--variants small,full] [--frames 3520] [--batch 64]
Prints images/s of ``model.fit`` (one epoch after a short warm-up) and of ``model.predict``, by wall
clock and per 2 CPU-seconds of this process (the figure a quiet 2-core machine would give; on a
machine shared with other jobs the wall-clock figure understates it).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from emenet_tf._keras import keras, tf
from emenet_tf.models import VARIANTS, build_emenet


def _fake_data(n: int, size: int, rng: np.random.Generator):
    x = rng.random((n, size, size, 3), dtype=np.float32)
    y = {
        "au": rng.integers(0, 2, (n, 12)).astype(np.float32),
        "expr": rng.integers(0, 7, (n,)).astype(np.int32),
        "va": rng.integers(0, 20, (n, 2)).astype(np.int32),
    }
    return x, y


def measure(variant: str, frames: int, batch: int) -> dict:
    """Images/s of one fit epoch and of predict for ``variant`` at its default size."""
    size = VARIANTS[variant].image_size
    model = build_emenet(variant, seed=0)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={
            "au": keras.losses.BinaryCrossentropy(from_logits=True),
            "expr": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "va": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        },
    )
    x, y = _fake_data(frames, size, np.random.default_rng(0))
    model.fit(x[: batch * 4], {k: v[: batch * 4] for k, v in y.items()}, batch_size=batch, verbose=0)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    fit_s, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    model.predict(x[: batch * 4], batch_size=batch, verbose=0)
    start = time.perf_counter()
    model.predict(x, batch_size=batch, verbose=0)
    pred_s = time.perf_counter() - start
    return {
        "variant": variant,
        "size": size,
        "params": model.count_params(),
        "fit_images_per_s": frames / fit_s,
        "fit_epoch_s": fit_s,
        "fit_images_per_2cpu_s": 2.0 * frames / fit_cpu,
        "predict_images_per_s": frames / pred_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="small,full")
    parser.add_argument("--frames", type=int, default=3520, help="frames per measured epoch")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    print(
        f"tensorflow {tf.__version__}, intra-op threads {tf.config.threading.get_intra_op_parallelism_threads()}"
    )
    for variant in args.variants.split(","):
        r = measure(variant, args.frames, args.batch)
        print(
            f"{r['variant']:6s} {r['size']}x{r['size']} params {r['params']:,}: fit {r['fit_images_per_s']:.0f} img/s "
            f"({r['fit_epoch_s']:.1f} s / {args.frames} frames; {r['fit_images_per_2cpu_s']:.0f} img/s per 2 CPU-s), "
            f"predict {r['predict_images_per_s']:.0f} img/s"
        )


if __name__ == "__main__":
    main()
