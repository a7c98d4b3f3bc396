"""tf.data pipeline: shapes, dtypes, masks, order, soft labels, augmentation, corrupt JPEGs."""

import os

import numpy as np
import pytest
from PIL import Image

from emenet_tf.data import pipeline
from emenet_tf.data.index import FrameIndex


def _write_frames(root, n, size=40, corrupt=()):
    rng = np.random.default_rng(0)
    paths = []
    os.makedirs(os.path.join(root, "cropped_aligned", "vid"), exist_ok=True)
    for i in range(n):
        rel = f"cropped_aligned/vid/{i + 1:05d}.jpg"
        full = os.path.join(root, rel)
        if i in corrupt:
            with open(full, "wb") as f:
                f.write(b"this is not a jpeg at all")
        else:
            pixels = np.full((size, size, 3), (i * 20) % 256, np.uint8)
            pixels[: size // 2] = rng.integers(0, 256, (size // 2, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(full, quality=95)
        paths.append(rel)
    return np.array(paths)


def _index(root, n, corrupt=()):
    paths = _write_frames(root, n, corrupt=corrupt)
    rng = np.random.default_rng(1)
    au_mask = np.ones((n, 12), np.float32)
    au_mask[::3] = 0
    expr_mask = np.ones(n, np.float32)
    expr_mask[1::4] = 0
    return FrameIndex(
        data_dir=str(root),
        split="train",
        paths=paths,
        video=np.array(["vid"] * n),
        frame=np.arange(1, n + 1, dtype=np.int32),
        au=(rng.random((n, 12)) > 0.5).astype(np.float32) * au_mask,
        au_mask=au_mask,
        expr=rng.integers(0, 7, n).astype(np.int32),
        expr_mask=expr_mask,
        va=rng.uniform(-1, 1, (n, 2)).astype(np.float32),
        va_mask=np.ones((n, 2), np.float32),
    )


def test_eval_batches_keep_order_labels_and_masks(tmp_path):
    index = _index(tmp_path, 10)
    batches = list(pipeline.make_dataset(index, image_size=24, batch_size=4, training=False))
    assert [b["image"].shape[0] for b in batches] == [4, 4, 2]
    first = batches[0]
    assert first["image"].shape == (4, 24, 24, 3) and first["image"].dtype.name == "float32"
    assert first["au"].shape == (4, 12) and first["au_mask"].shape == (4, 12)
    assert first["expr"].dtype.name == "int32" and first["va"].shape == (4, 2)
    frame_id = np.concatenate([b["frame_id"].numpy() for b in batches])
    np.testing.assert_array_equal(frame_id, np.arange(10))
    expr_mask = np.concatenate([b["expr_mask"].numpy() for b in batches])
    np.testing.assert_array_equal(expr_mask, index.expr_mask)
    au_mask = np.concatenate([b["au_mask"].numpy() for b in batches])
    np.testing.assert_array_equal(au_mask, index.au_mask)
    images = np.concatenate([b["image"].numpy() for b in batches])
    assert images.min() >= 0.0 and images.max() <= 1.0
    # The bottom half of frame k was written as the constant (20 k) % 256.
    np.testing.assert_allclose(images[3, 20:, :, :].mean(), 60 / 255, atol=0.02)


def test_soft_labels_follow_their_frame_through_shuffling(tmp_path):
    index = _index(tmp_path, 12)
    soft = {
        "au": np.tile(np.arange(12, dtype=np.float32)[:, None] / 12, (1, 12)),
        "expr": np.eye(7, dtype=np.float32)[np.arange(12) % 7],
        "va": np.full((12, 2, 20), 0.05, np.float32),
    }
    ds = pipeline.make_dataset(index, 16, 4, training=True, soft_labels=soft, seed=3)
    seen = 0
    for batch in ds:
        ids = batch["frame_id"].numpy()
        np.testing.assert_allclose(batch["soft_au"].numpy()[:, 0], ids / 12)
        np.testing.assert_array_equal(batch["soft_expr"].numpy().argmax(1), ids % 7)
        assert batch["soft_va"].shape == (4, 2, 20)
        seen += len(ids)
    assert seen == 12  # drop_remainder keeps 3 full batches of 4


def test_soft_labels_of_wrong_length_are_refused(tmp_path):
    index = _index(tmp_path, 4)
    soft = {"au": np.zeros((3, 12)), "expr": np.zeros((4, 7)), "va": np.zeros((4, 2, 20))}
    with pytest.raises(ValueError, match="3 rows"):
        pipeline.make_dataset(index, 16, 2, training=False, soft_labels=soft)


def test_augmentation_changes_pixels_within_range_and_is_seeded(tmp_path):
    index = _index(tmp_path, 8)
    plain = next(iter(pipeline.make_dataset(index, 16, 8, training=False)))["image"].numpy()

    def augmented(seed):
        ds = pipeline.make_dataset(index, 16, 8, training=False, augment=True, seed=seed)
        return next(iter(ds))["image"].numpy()

    a, b = augmented(5), augmented(5)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - plain).mean() > 0.01
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_corrupt_jpeg_is_skipped_and_reported_by_path(tmp_path):
    index = _index(tmp_path, 6, corrupt=(2,))
    log = pipeline.BadImageLog()
    batches = list(pipeline.make_dataset(index, 16, 4, training=False, bad_images=log))
    ids = np.concatenate([b["frame_id"].numpy() for b in batches])
    np.testing.assert_array_equal(ids, [0, 1, 3, 4, 5])
    assert len(log) == 1 and log.paths[0].endswith("cropped_aligned/vid/00003.jpg")


def test_truncated_jpeg_never_stops_iteration(tmp_path):
    index = _index(tmp_path, 5)
    victim = os.path.join(tmp_path, index.paths[1])
    data = open(victim, "rb").read()
    with open(victim, "wb") as f:
        f.write(data[: len(data) // 3])
    batches = list(pipeline.make_dataset(index, 16, 5, training=False))
    ids = np.concatenate([b["frame_id"].numpy() for b in batches])
    assert set(ids) <= set(range(5)) and len(ids) >= 4


def test_empty_index_is_refused(tmp_path):
    index = _index(tmp_path, 3).subset(np.zeros(3, bool))
    with pytest.raises(ValueError, match="no frames"):
        pipeline.make_dataset(index, 16, 2, training=False)
