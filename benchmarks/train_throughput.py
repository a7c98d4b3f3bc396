"""Training throughput: our JPEG pipeline vs the same train step fed from in-memory tensors.

Both arms run MultitaskTrainer.fit on the same model variant and batch size in one process, so
their ratio says whether the input pipeline (read, decode, resize, augment) is the bottleneck.
Target: ours >= 0.9 x in-memory on this CPU.

  python benchmarks/train_throughput.py [--model small] [--frames 2048] [--batch_size 64] [--folder]

--folder: the frames are read as a user's dataset is (``--data folder:labels.csv``: a flat folder of
112 px face crops, JPEG, and a labels CSV, indexed by ``emenet_tf.data.readers.folder``), the way a
prepared AffectNet-sized dataset feeds training; the files are generated (copies of the synthetic
benchmark's frames under new names), so any --frames works.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from emenet_tf._keras import keras, tf  # noqa: E402
from emenet_tf.data import affwild2, pipeline, synthetic  # noqa: E402
from emenet_tf.losses import class_weights  # noqa: E402
from emenet_tf.models import VARIANTS, build_emenet  # noqa: E402
from emenet_tf.training.objectives import LossSetup  # noqa: E402
from emenet_tf.training.trainers import MultitaskTrainer  # noqa: E402


def timed_fit(net, setup, dataset, steps, epochs):
    trainer = MultitaskTrainer(net, setup)
    trainer.compile(optimizer=keras.optimizers.Adam(1e-3))
    trainer.fit(dataset, epochs=1, steps_per_epoch=2, verbose=0)  # trace and warm up
    start = time.perf_counter()
    trainer.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0)
    return time.perf_counter() - start


def folder_index(source, frames: int, root: str):
    """The train split of a folder dataset of ``frames`` JPEG files (``source``'s frames, copied round
    robin under new names) with EXPR labels, read by the folder reader."""
    from emenet_tf.data.readers import folder

    os.makedirs(os.path.join(root, "faces"), exist_ok=True)
    lines = ["path,expr,split"]
    for i in range(frames):
        row = i % len(source)
        name = f"faces/{i:07d}.jpg"
        shutil.copyfile(os.path.join(source.data_dir, source.paths[row]), os.path.join(root, name))
        lines.append(f"{name},{int(source.expr[row])},{'validation' if i % 10 == 0 else 'train'}")
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    start = time.perf_counter()
    index = folder.read(os.path.join(root, "labels.csv"), os.path.join(root, "work"))["train"]
    print(f"folder reader: indexed {len(index)} files in {time.perf_counter() - start:.2f} s")
    return index


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="small")
    parser.add_argument("--frames", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--data_dir", default=None, help="existing Aff-Wild2 tree (default: generate)")
    parser.add_argument(
        "--folder", action="store_true", help="read the frames as a folder dataset (labels.csv)"
    )
    args = parser.parse_args()
    size = VARIANTS[args.model].image_size
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = os.path.join(tmp, "data")
            videos = max(2, args.frames // 150)
            synthetic.generate(data_dir, seed=0, train_videos=videos, val_videos=1, frames_per_video=150)
        index = affwild2.load_split(data_dir, "train")
        if args.folder:
            index = folder_index(index, args.frames, os.path.join(tmp, "folder"))
        index = index.subset(np.arange(min(len(index), args.frames)))
        steps = len(index) // args.batch_size
        weights = class_weights(index)
        setup = LossSetup(tuple(weights["au_pos_weight"]), tuple(weights["expr_class_weight"]))

        ours = pipeline.make_dataset(index, size, args.batch_size, training=True, repeat=True)
        eval_ds = pipeline.make_dataset(index, size, args.batch_size, training=False, augment=False)
        arrays = {}
        for batch in eval_ds:
            for k, v in batch.items():
                arrays.setdefault(k, []).append(v.numpy())
        arrays = {k: np.concatenate(v) for k, v in arrays.items()}
        in_memory = (
            tf.data.Dataset.from_tensor_slices(arrays)
            .shuffle(len(index))
            .repeat()
            .batch(args.batch_size, drop_remainder=True)
            .prefetch(tf.data.AUTOTUNE)
        )
        results = {}
        for name, ds in (("in_memory", in_memory), ("pipeline", ours)):
            keras.utils.set_random_seed(0)
            net = build_emenet(args.model, seed=0)
            seconds = timed_fit(net, setup, ds, steps, args.epochs)
            results[name] = steps * args.epochs * args.batch_size / seconds
    print(
        f"model={args.model} image_size={size} batch={args.batch_size} frames={len(index)} cores={os.cpu_count()} "
        f"source={'folder' if args.folder else 'affwild2'}"
    )
    for name, ips in results.items():
        print(f"{name:>10}: {ips:8.1f} images/s")
    print(f"ratio pipeline / in_memory: {results['pipeline'] / results['in_memory']:.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
