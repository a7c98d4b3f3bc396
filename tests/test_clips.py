"""Clips for the temporal model: segments and gaps, windows, the clip dataset, bad images in clips."""

import os

import numpy as np
import pytest
from PIL import Image

from emenet_tf.data import clips
from emenet_tf.data.index import FrameIndex


def _index(root, frames, video="vid", corrupt=(), size=24):
    """A FrameIndex over one video holding ``frames`` (1-based numbers, gaps allowed).

    Frame k's image is the constant grey (10 k) % 256, its EXPR label k % 7, present when k is odd.
    """
    folder = os.path.join(root, "cropped_aligned", video)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for k in frames:
        rel = f"cropped_aligned/{video}/{k:05d}.jpg"
        if k in corrupt:
            with open(os.path.join(root, rel), "wb") as f:
                f.write(b"\xff\xd8 not really a jpeg")
        else:
            Image.fromarray(np.full((size, size, 3), (10 * k) % 256, np.uint8)).save(os.path.join(root, rel))
        paths.append(rel)
    n = len(frames)
    frame = np.asarray(frames, np.int32)
    return FrameIndex(
        data_dir=str(root),
        split="train",
        paths=np.array(paths),
        video=np.full(n, video),
        frame=frame,
        au=np.zeros((n, 12), np.float32),
        au_mask=np.ones((n, 12), np.float32),
        expr=(frame % 7).astype(np.int32),
        expr_mask=(frame % 2).astype(np.float32),
        va=np.stack([frame / 100.0, -frame / 100.0], 1).astype(np.float32),
        va_mask=np.ones((n, 2), np.float32),
    )


def test_segments_bridge_short_gaps_and_cut_long_ones():
    video = np.array(["a"] * 7 + ["b"] * 2)
    frame = np.array([1, 2, 4, 5, 9, 10, 11, 1, 2])
    # 1 missing frame (3) is bridged with max_gap 1; 3 missing (6-8) cut; a new video always cuts.
    assert clips.segment_bounds(video, frame, max_gap=1) == [(0, 4), (4, 7), (7, 9)]
    assert clips.segment_bounds(video, frame, max_gap=3) == [(0, 7), (7, 9)]
    assert clips.segment_bounds(video, frame, max_gap=0) == [(0, 2), (2, 4), (4, 7), (7, 9)]
    assert clips.segment_bounds(video, frame, max_gap=None) == [(i, i + 1) for i in range(9)]
    # The timeline holds a masked step where frame 3 is missing.
    np.testing.assert_array_equal(clips.timeline(frame, 0, 4), [0, 1, -1, 2, 3])


@pytest.mark.parametrize(
    "length, size, stride, starts",
    [(10, 4, 4, [0, 4, 6]), (8, 4, 4, [0, 4]), (10, 4, 2, [0, 2, 4, 6]), (3, 4, 4, [0]), (4, 4, 1, [0])],
)
def test_windows_cover_the_segment_and_end_at_its_end(length, size, stride, starts):
    assert clips.window_starts(length, size, stride) == starts


def test_clip_table_pads_short_segments_and_masks_gaps(tmp_path):
    index = _index(tmp_path, [1, 2, 4, 5, 6, 20, 21])
    table = clips.clip_table(index, size=4, stride=4, max_gap=2)
    # Segment 1: frames 1, 2, (3 missing), 4, 5, 6 -> steps rows [0, 1, -1, 2, 3, 4], windows at 0 and 2.
    # Segment 2: frames 20, 21 -> one window padded with masked steps.
    np.testing.assert_array_equal(table, [[0, 1, -1, 2], [-1, 2, 3, 4], [5, 6, -1, -1]])
    with pytest.raises(ValueError, match="stride"):
        clips.clip_table(index, size=4, stride=0, max_gap=2)


def test_clip_batches_hold_images_labels_and_masks_in_order(tmp_path):
    index = _index(tmp_path, [1, 2, 4, 5, 6, 20, 21])
    table = clips.clip_table(index, size=4, stride=4, max_gap=2)
    batches = list(clips.make_clip_dataset(index, table, 16, clips_per_batch=2, training=False))
    assert [b["image"].shape[0] for b in batches] == [2, 1]
    b = {k: np.concatenate([x[k].numpy() for x in batches]) for k in batches[0]}
    assert (
        b["image"].shape == (3, 4, 16, 16, 3) and b["au"].shape == (3, 4, 12) and b["va"].shape == (3, 4, 2)
    )
    np.testing.assert_array_equal(b["frame_id"], table)
    np.testing.assert_array_equal(b["frame_mask"], (table >= 0).astype(np.float32))
    present = table >= 0
    rows = table[present]
    np.testing.assert_array_equal(b["expr"][present], index.expr[rows])
    np.testing.assert_array_equal(b["expr_mask"][present], index.expr_mask[rows])
    np.testing.assert_allclose(b["va"][present], index.va[rows])
    # Masked steps: no image, every mask 0.
    assert not b["image"][~present].any()
    assert (
        not b["au_mask"][~present].any()
        and not b["va_mask"][~present].any()
        and not b["expr_mask"][~present].any()
    )
    # Each present step holds its own frame's image (grey level 10 k).
    grey = b["image"][present].mean(axis=(1, 2, 3)) * 255
    np.testing.assert_allclose(grey, (10 * index.frame[rows]) % 256, atol=1.5)


def test_training_clips_are_shuffled_and_augmented_alike_within_a_clip(tmp_path):
    index = _index(tmp_path, list(range(1, 33)))
    table = clips.clip_table(index, size=4, stride=4, max_gap=0)
    ds = clips.make_clip_dataset(index, table, 16, clips_per_batch=8, training=True, seed=3, repeat=True)
    first = next(iter(ds))
    ids = first["frame_id"].numpy()
    assert sorted(ids[:, 0].tolist()) == list(range(0, 32, 4)) and ids[:, 0].tolist() != list(range(0, 32, 4))
    # One jitter per clip: the ratio of augmented to plain grey is the clip's brightness factor, the
    # same for its four frames (up to JPEG / rounding), and differs between clips.
    grey = first["image"].numpy().mean(axis=(2, 3, 4)) * 255
    plain = (10 * index.frame[ids]) % 256
    ratio = grey / plain
    assert np.ptp(ratio, axis=1).max() < 0.05, ratio
    assert np.ptp(ratio[:, 0]) > 0.05, ratio


def test_a_bad_image_is_a_masked_step_named_with_its_reason(tmp_path):
    index = _index(tmp_path, list(range(1, 9)), corrupt=(3,))
    table = clips.clip_table(index, size=4, stride=4, max_gap=0)
    ds = clips.make_clip_dataset(index, table, 16, clips_per_batch=2, training=False)
    batch = next(iter(ds))
    np.testing.assert_array_equal(batch["frame_id"].numpy(), [[0, 1, -1, 3], [4, 5, 6, 7]])
    assert batch["frame_mask"].numpy()[0].tolist() == [1, 1, 0, 1]
    assert batch["expr_mask"].numpy()[0, 2] == 0
    path = os.path.join(str(tmp_path), "cropped_aligned/vid/00003.jpg")
    assert list(ds.bad_images.reasons) == [path]
    assert "JPEG" in ds.bad_images.reasons[path]


def test_soft_labels_are_gathered_per_frame_and_zero_on_masked_steps(tmp_path):
    index = _index(tmp_path, [1, 2, 3, 6, 7])
    n = len(index)
    soft = {
        "au": np.tile(np.arange(n, dtype=np.float32)[:, None] / n, (1, 12)),
        "expr": np.eye(7, dtype=np.float32)[np.arange(n) % 7],
        "va": np.full((n, 2, 20), 0.05, np.float32),
    }
    table = clips.clip_table(index, size=4, stride=4, max_gap=2)
    batch = next(iter(clips.make_clip_dataset(index, table, 16, 1, training=False, soft_labels=soft)))
    ids = batch["frame_id"].numpy()[0]
    np.testing.assert_array_equal(ids, [0, 1, 2, -1])  # frames 1, 2, 3, then 4 and 5 missing (bridged)
    np.testing.assert_allclose(batch["soft_au"].numpy()[0, :3, 0], np.arange(3) / n)
    assert not batch["soft_au"].numpy()[0, 3].any() and not batch["soft_va"].numpy()[0, 3].any()
