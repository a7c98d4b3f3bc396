"""tf.data pipeline: shapes, dtypes, masks, order, soft labels, augmentation, corrupt JPEGs."""

import json
import logging
import os

import numpy as np
import pytest
from PIL import Image

from emenet_tf.data import affwild2, pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.labels import EXPR_HEADER


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
    assert set(first) == {"image", "au", "au_mask", "expr", "expr_mask", "va", "va_mask", "frame_id"}
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


def spoil(root, index, row, how):
    """Damage the image of ``row`` in place: truncate it, garble its header, pad it or delete it."""
    path = os.path.join(root, index.paths[row])
    data = open(path, "rb").read()
    if how == "missing":
        os.remove(path)
        return path
    spoiled = {
        "truncated": data[: len(data) // 3],
        "no_end_marker": data[:-2],  # all pixels present, only FF D9 missing: TF still refuses it
        "bad_header": data[:20] + b"\x13" * 40 + data[60:],  # start and end markers intact
        "padded": data + b"\x00" * 100,  # trailing bytes after FF D9: a valid image
    }[how]
    with open(path, "wb") as f:
        f.write(spoiled)
    return path


def frame_ids(ds):
    return np.concatenate([b["frame_id"].numpy() for b in ds])


@pytest.mark.parametrize(
    "how,words",
    [
        ("truncated", "truncated JPEG (no FF D9 end marker"),
        ("no_end_marker", "truncated JPEG (no FF D9 end marker"),
        ("bad_header", "corrupt JPEG (decoder: "),
        ("missing", "cannot read it: No such file"),
    ],
)
def test_every_dropped_frame_is_named_with_its_reason(tmp_path, caplog, how, words):
    index = _index(tmp_path, 6)
    path = spoil(tmp_path, index, 2, how)
    with caplog.at_level(logging.WARNING):
        ds = pipeline.make_dataset(index, 16, 4, training=False)
        np.testing.assert_array_equal(frame_ids(ds), [0, 1, 3, 4, 5])
    assert ds.bad_images.paths == [path]
    assert ds.bad_images.reasons[path].startswith(words), ds.bad_images.reasons
    assert "\n" not in ds.bad_images.reasons[path] and "{{" not in ds.bad_images.reasons[path]
    assert f"{path}: {words}" in caplog.text, caplog.text


def test_padding_after_the_end_marker_is_a_valid_image(tmp_path):
    index = _index(tmp_path, 4)
    spoil(tmp_path, index, 1, "padded")
    ds = pipeline.make_dataset(index, 16, 4, training=False)
    np.testing.assert_array_equal(frame_ids(ds), [0, 1, 2, 3])
    assert len(ds.bad_images) == 0


def test_drops_at_the_start_and_end_of_a_finite_stream_are_named(tmp_path):
    index = _index(tmp_path, 7)
    bad = [spoil(tmp_path, index, row, "truncated") for row in (0, 5, 6)]
    log = pipeline.BadImageLog()
    ds = pipeline.make_dataset(index, 16, 3, training=False, bad_images=log)
    np.testing.assert_array_equal(frame_ids(ds), [1, 2, 3, 4])
    assert ds.bad_images is log and sorted(log.paths) == sorted(bad) and log.unnamed == 0
    frame_ids(ds)  # a second pass (epoch) drops them again: each is counted once
    assert len(log) == 3


@pytest.mark.parametrize("repeat", [False, True])
def test_training_and_soft_label_streams_name_their_drops(tmp_path, repeat):
    index = _index(tmp_path, 12)
    bad = {spoil(tmp_path, index, row, how) for row, how in ((3, "truncated"), (8, "bad_header"))}
    soft = {"au": np.zeros((12, 12)), "expr": np.zeros((12, 7)), "va": np.zeros((12, 2, 20))}
    ds = pipeline.make_dataset(index, 16, 5, training=True, soft_labels=soft, seed=1, repeat=repeat)
    ids = np.concatenate([b["frame_id"].numpy() for b in ds.take(4)])
    assert len(ids) == 20 if repeat else 10  # drop_remainder: 10 good frames make 2 batches of 5
    assert ds.element_spec["image"].shape[0] == 5 and ds.element_spec["soft_va"].shape[0] == 5
    assert not {3, 8} & set(ids.tolist())
    assert set(ds.bad_images.paths) == bad


def test_a_run_longer_than_a_block_is_counted_even_where_unnamed(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "_BLOCK", 4)  # blocks [0-3] [4-7] [8-11]; frames 1..9 bad
    index = _index(tmp_path, 12)
    for row in range(1, 10):
        spoil(tmp_path, index, row, "truncated")
    ds = pipeline.make_dataset(index, 16, 4, training=False)
    np.testing.assert_array_equal(frame_ids(ds), [0, 10, 11])
    log = ds.bad_images
    named = sorted(int(p[-9:-4]) - 1 for p in log.paths)
    assert named == [1, 2, 3, 8, 9] and log.unnamed == 4 and len(log) == 9  # block [4-7] is lost whole
    summary = json.loads(json.dumps(log.summary(examples=2)))
    assert summary["bad_images"] == 9 and summary["unnamed"] == 4 and len(summary["examples"]) == 2
    assert "truncated JPEG" in summary["examples"][0]


def test_reader_and_pipeline_use_every_frame_of_a_tree_with_short_names(tmp_path):
    """The probe: frames named 1.jpg.. used to be indexed as 00001.jpg and dropped without a word."""
    folder = tmp_path / "cropped_aligned" / "v"
    folder.mkdir(parents=True)
    for k in range(1, 9):
        Image.fromarray(np.full((24, 24, 3), 10 * k, np.uint8)).save(folder / f"{k}.jpg")
    labels = tmp_path / "annotations" / "EXPR_Set" / "Train_Set"
    labels.mkdir(parents=True)
    (labels / "v.txt").write_text("\n".join([EXPR_HEADER] + ["1"] * 8) + "\n")
    index = affwild2.load_split(str(tmp_path), "train")
    ds = pipeline.make_dataset(index, 16, 8, training=True, seed=0)
    assert sorted(frame_ids(ds).tolist()) == list(range(8)) and len(ds.bad_images) == 0


def test_empty_index_is_refused(tmp_path):
    index = _index(tmp_path, 3).subset(np.zeros(3, bool))
    with pytest.raises(ValueError, match="no frames"):
        pipeline.make_dataset(index, 16, 2, training=False)
