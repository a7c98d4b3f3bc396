"""edge.align: the crop frame from keypoints or a box, iBUG-68 keypoints, and the aligned crop's pixels.

Pixel positions in crops are checked by drawing coloured dots in a source image and locating their
intensity centroids in the crop. Bilinear warping and INTER_AREA shrinking both keep a smooth dot's
centroid to within a few hundredths of a pixel; OpenCV's warpAffine works in fixed point (1/32 px)
on every CPU, hence the 0.15 px tolerance.
"""

import math

import numpy as np
import pytest

from edge.align import (
    CROP_SCALE,
    MAX_WARP_SIDE,
    FaceFrame,
    aligned_crop,
    box_frame,
    face_frame,
    keypoints_from_landmarks68,
)
from edge.errors import EdgeError

CENTROID_TOL = 0.15
COLOURS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))  # right eye red, left eye green, mouth blue


def _turn(points, angle, origin):
    """Points turned by ``angle`` radians about ``origin`` (y down: positive is clockwise on screen)."""
    c, s = math.cos(angle), math.sin(angle)
    rel = np.asarray(points, np.float64) - origin
    return rel @ np.array([[c, -s], [s, c]]).T + origin


def _dots(shape, points, radius):
    """Black uint8 image with anti-aliased discs of COLOURS at ``points`` (pixel j spans [j, j + 1))."""
    height, width = shape
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    image = np.zeros((height, width, 3), np.float64)
    for (px, py), colour in zip(points, COLOURS, strict=True):
        cover = np.clip(radius + 0.5 - np.hypot(xs - px, ys - py), 0.0, 1.0)
        image += cover[..., None] * np.asarray(colour, np.float64)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _centroids(image):
    """(3, 2) intensity centroids of the red, green and blue channels (pixel centres at j + 0.5)."""
    ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]] + 0.5
    out = []
    for channel in range(3):
        w = image[..., channel].astype(np.float64)
        out.append([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
    return np.array(out)


# ---------------------------------------------------------------- the frame


def test_face_frame_closed_form_upright_and_turned():
    frame = face_frame((100.0, 200.0), (160.0, 200.0), (130.0, 250.0))
    # eye distance 60 > mouth distance 50: side 2 * 60; centre midway between (130, 200) and (130, 250).
    assert frame.angle == 0.0 and frame.side == pytest.approx(CROP_SCALE * 60)
    assert frame.centre == pytest.approx((130.0, 225.0))
    turned = face_frame(*_turn([(100, 200), (160, 200), (130, 250)], 0.4, np.array([50.0, 70.0])))
    assert turned.angle == pytest.approx(0.4) and turned.side == pytest.approx(120.0)
    np.testing.assert_allclose(turned.centre, _turn([(130, 225)], 0.4, np.array([50.0, 70.0]))[0])
    # The mouth distance counts along the face's vertical axis only; here it is the larger one.
    tall = face_frame((0.0, 0.0), (40.0, 0.0), (35.0, 70.0))
    assert tall.side == pytest.approx(140.0) and tall.centre == pytest.approx((27.5, 35.0))
    # The subject's right eye on the image's right: the face is upside down, the angle 180 degrees.
    assert abs(face_frame((160, 200), (100, 200), (130, 150)).angle) == pytest.approx(math.pi)


def test_corners_and_to_crop_agree():
    frame = FaceFrame((50.0, 40.0), 0.0, 20.0)
    np.testing.assert_allclose(frame.corners(), [(40, 30), (60, 30), (60, 50), (40, 50)])
    turned = FaceFrame((50.0, 40.0), math.radians(30), 20.0)
    corners = turned.corners()
    np.testing.assert_allclose(corners[1] - corners[0], [20 * math.cos(math.radians(30)), 10.0], atol=1e-9)
    np.testing.assert_allclose(turned.to_crop(corners, 64), [(0, 0), (64, 0), (64, 64), (0, 64)], atol=1e-9)


def test_box_frame():
    frame = box_frame((10, 20, 40, 60), margin=0.25)
    assert frame == FaceFrame((30.0, 50.0), 0.0, 90.0)
    assert box_frame((0, 0, 8, 4)).side == 8.0
    for bad in [(0, 0, 0, 10), (0, 0, 10, -1), (0, 0, float("nan"), 10), (1, 2, 3)]:
        with pytest.raises(EdgeError, match="face box"):
            box_frame(bad)


def test_keypoints_from_landmarks68():
    landmarks = np.zeros((68, 2))
    hexagon = np.array([(-6, 0), (-3, -2), (3, -2), (6, 0), (3, 2), (-3, 2)], np.float64)
    landmarks[36:42] = hexagon + (100, 50)  # image-left eye: the subject's right eye
    landmarks[42:48] = hexagon * 1.1 + (160, 52)
    landmarks[30] = (130, 80)
    landmarks[48:60] = np.concatenate([hexagon * 3, hexagon * 2]) + (131, 110)
    landmarks[60:68] = (500, 500)  # inner lip: not used
    landmarks[:17] = (-100, -100)  # jaw: not used
    np.testing.assert_allclose(
        keypoints_from_landmarks68(landmarks), [(100, 50), (160, 52), (130, 80), (131, 110)], atol=1e-12
    )
    with pytest.raises(EdgeError, match="68, 2"):
        keypoints_from_landmarks68(landmarks[:67])


@pytest.mark.parametrize(
    "points",
    [
        [(10, 10), (10, 10), (10, 30)],  # eyes at the same point
        [(10, float("nan")), (20, 10), (15, 30)],
        [(10, 10), (20, 10), (15, float("inf"))],
        [(10, 10, 1), (20, 10), (15, 30)],
    ],
)
def test_degenerate_keypoints_are_refused(points):
    with pytest.raises(EdgeError, match="face alignment"):
        face_frame(*points)


# ---------------------------------------------------------------- the crop


@pytest.mark.parametrize("angle_deg, magnify", [(25.0, 1.0), (-40.0, 0.6), (10.0, 15.0)])
def test_crop_levels_the_eyes_at_the_closed_form_positions(angle_deg, magnify):
    """Eye distance 60, mouth 50 below: side 120; a 96 px crop is 0.8 crop px per source px, so the eyes
    land at (48 -+ 24, 48 - 20) and the mouth at (48, 48 + 20). magnify 15: a 1800 px face, above
    MAX_WARP_SIDE, goes through the area-shrunk path."""
    room = min(magnify, 4.0)  # the 15x face's crop square overhangs its image (black there)
    origin = np.array([180.0, 150.0]) * room
    upright = origin + np.array([(-30.0, -25.0), (30.0, -25.0), (0.0, 25.0)]) * magnify
    points = _turn(upright, math.radians(angle_deg), origin)
    shape = (int(300 * room), int(360 * room))
    image = _dots(shape, points, radius=5.0 * magnify)
    frame = face_frame(*points)
    assert frame.side == pytest.approx(120.0 * magnify) and (frame.side > MAX_WARP_SIDE) == (magnify > 10)
    crop = aligned_crop(image, frame, 96)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    expected = np.array([(24.0, 28.0), (72.0, 28.0), (48.0, 68.0)])
    np.testing.assert_allclose(_centroids(crop), expected, atol=CENTROID_TOL)
    np.testing.assert_allclose(frame.to_crop(points, 96), expected, atol=1e-9)
    if magnify > 10:  # a 600 px crop of it: 1/3 crop px per source px shows a source-pixel offset
        np.testing.assert_allclose(
            _centroids(aligned_crop(image, frame, 600)), expected * 600 / 96, atol=CENTROID_TOL
        )


@pytest.mark.parametrize("angle_deg", [0.0, 30.0])
def test_large_face_is_area_averaged_not_aliased(angle_deg):
    """1 px black / white stripes shrunk 8x: the mean grey everywhere. Sampling the source every 8 px
    (a bilinear warp straight to 50 px) would give all black or all white."""
    image = np.zeros((600, 600, 3), np.uint8)
    image[:, ::2] = 255
    crop = aligned_crop(image, FaceFrame((300.0, 300.0), math.radians(angle_deg), 400.0), 50)
    # Each output pixel averages 64 source pixels (32 white): 127.5; rotated sampling blurs a stripe
    # pair into mid grey first. The spread left is the rounding to uint8 and the bilinear kernel's edge.
    assert abs(crop.mean() - 127.5) < 2.0 and crop.std() < 3.0


def test_huge_face_is_block_averaged_before_the_warp(monkeypatch):
    """A 2000 px square (k = 2 block means, then a 1000 px warp) of 1 px stripes: exactly mid grey.
    Area-shrinking by the non-integer 1024 / 2000 instead leaves beat patterns (std ~2.5)."""
    import cv2

    sizes = []
    warp = cv2.warpAffine
    monkeypatch.setattr(cv2, "warpAffine", lambda *a, **k: sizes.append(a[2]) or warp(*a, **k))
    image = np.zeros((2400, 2400, 3), np.uint8)
    image[:, ::2] = 255
    crop = aligned_crop(image, FaceFrame((1200.3, 1200.7), 0.0, 2000.0), 64)
    assert sizes == [(1000, 1000)] and crop.std() < 0.5 and abs(crop.mean() - 127.5) <= 0.5
    # A 5000 px square around a 600 px white image (k = 5): the image lands at crop pixels 28.2..35.8.
    sizes.clear()
    crop = aligned_crop(np.full((600, 600, 3), 255, np.uint8), FaceFrame((300.0, 300.0), 0.0, 5000.0), 64)
    assert sizes == [(1000, 1000)] and max(sizes[0]) <= MAX_WARP_SIDE
    assert (crop[29:35, 29:35] == 255).all() and (crop[:28] == 0).all() and (crop[:, 37:] == 0).all()


def test_crop_partly_outside_the_image_is_black_there():
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = aligned_crop(image, FaceFrame((10.0, 20.0), 0.0, 60.0), 60)
    # Crop pixel (x, y) shows source (x - 20, y - 10): source x < 0 for crop x < 20, y < 0 for crop y < 10.
    assert (crop[:, :19] == 0).all() and (crop[:9] == 0).all()
    assert (crop[11:, 21:] == 200).all()
    turned = aligned_crop(image, FaceFrame((0.0, 0.0), math.radians(45), 200.0), 20)
    assert turned[0, 0].max() == 0 and turned[-1, -1].max() == 0 and turned[10, 15].min() == 200 // 1


def test_crop_entirely_off_the_image_and_bad_arguments():
    image = np.full((50, 50, 3), 255, np.uint8)
    assert aligned_crop(image, FaceFrame((-5000.0, 0.0), 0.0, 3000.0), 16).max() == 0  # area-shrunk path
    assert aligned_crop(image, FaceFrame((-500.0, 0.0), 0.0, 30.0), 16).max() == 0
    frame = FaceFrame((25.0, 25.0), 0.0, 20.0)
    for bad_image in (np.zeros((50, 50), np.uint8), np.zeros((50, 50, 3), np.float32), None):
        with pytest.raises(EdgeError, match=r"uint8 \(H, W, 3\)"):
            aligned_crop(bad_image, frame, 16)
    for size in (0, 2.5, True):
        with pytest.raises(EdgeError, match="crop size"):
            aligned_crop(image, frame, size)
    with pytest.raises(EdgeError, match="side > 0"):
        aligned_crop(image, FaceFrame((25.0, 25.0), 0.0, 0.0), 16)


def test_blazeface_keypoints_give_a_level_crop():
    """End to end on a photo: the eyes BlazeFace finds on the turned astronaut end up level in the crop."""
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    from edge.blazeface import BlazeFace

    image = skimage_data.astronaut()
    matrix = cv2.getRotationMatrix2D((222.0, 126.0), -25.0, 1.0)  # 25 degrees clockwise about the face
    turned = cv2.warpAffine(image, matrix, (512, 512))
    (face,) = BlazeFace("full").detect(turned)
    frame = face_frame(face.keypoint("right_eye"), face.keypoint("left_eye"), face.keypoint("mouth_centre"))
    assert math.degrees(frame.angle) == pytest.approx(25.0 + 4.2, abs=4.0)  # 4.2: her head's own tilt
    eyes = frame.to_crop(face.keypoints[:2], 112)
    assert eyes[0, 1] == pytest.approx(eyes[1, 1], abs=1e-6) and eyes[0, 0] < eyes[1, 0]
    assert aligned_crop(turned, frame, 112).shape == (112, 112, 3)
