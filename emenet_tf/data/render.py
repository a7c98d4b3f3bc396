"""Images of the synthetic benchmark: faces drawn from AU intensities, and out-of-domain pictures.

A face is a set of polygons in face space (x right, y down, unit = head half-width) whose shapes
follow the 12 AU intensities (brows from AU1/2/4, lids from AU6/7, nose from AU10, mouth from
AU12/15/23/24/25/26, the chin from AU26), drawn anti-aliased at twice the size and downsampled.
A video adds a per-video identity and slowly varying pose, light and sensor noise
(``video_frames``), and optionally degraded frames (``degrade``: a hand over part of the face,
motion blur or low light), the moments in-the-wild video loses that a model over time can
bridge. Out-of-domain images (``ood_image``) are noise, textures, shapes, scenes, stripes and
checkers: never a face. Everything here draws from the generator it is given, so the
images are a function of the seed alone; writing them is ``synthetic``'s job.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from emenet_tf.labels import AU_INDEX

SUPERSAMPLE = 2  # render at 2x, downsample with INTER_AREA: anti-aliased
_SHIFT = 4  # cv2 fixed-point sub-pixel bits
_U = np.linspace(-1.0, 1.0, 13)


def identity(rng: np.random.Generator) -> dict:
    """Per-video appearance: shape, colours and proportions (RGB colours in 0..255)."""
    skin = np.array([225, 180, 150]) * rng.uniform(0.45, 1.05) + rng.uniform(-12, 12, 3)
    hair = np.array([60, 40, 25]) * rng.uniform(0.3, 2.6) + rng.uniform(-10, 10, 3)
    bg = rng.uniform(30, 230, (2, 3))
    return {
        "rx": rng.uniform(0.82, 0.95),
        "ry_top": rng.uniform(1.05, 1.2),
        "ry_bot": rng.uniform(1.0, 1.15),
        "skin": _col(np.clip(skin, 40, 250)),
        "lip": _col(np.clip(skin * np.array([0.95, 0.6, 0.6]) + np.array([20, 0, 0]), 20, 250)),
        "hair": _col(np.clip(hair, 10, 200)),
        "iris": _col(rng.uniform(20, 130, 3)),
        "bald": rng.random() < 0.15,
        "eye_x": rng.uniform(0.33, 0.42),
        "eye_w": rng.uniform(0.18, 0.21),
        "brow_t": rng.uniform(0.045, 0.08),
        "brow_y": rng.uniform(-0.36, -0.32),
        "mouth_w": rng.uniform(0.26, 0.32),
        "lip_t": rng.uniform(0.06, 0.09),
        "bg": bg,
        "bg_angle": rng.uniform(0, 2 * np.pi),
        "scale": rng.uniform(33.0, 37.0),
        "pose": rng.uniform(-1, 1, 3) * np.array([4.0, 3.0, 3.0]),  # degrees, dx, dy (pixels)
    }


def _background(ident: dict, size: int) -> np.ndarray:
    """A linear two-colour gradient, (size, size, 3) uint8 RGB at the rendering resolution."""
    size *= SUPERSAMPLE
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1.0) - 0.5
    t = np.clip(0.5 + np.cos(ident["bg_angle"]) * xx + np.sin(ident["bg_angle"]) * yy, 0, 1)[..., None]
    return ((1 - t) * ident["bg"][0] + t * ident["bg"][1]).astype(np.uint8)


def _smooth_jitter(rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
    """(n, dims) slowly varying noise in about [-1, 1]: two sinusoids plus a little white noise."""
    t = np.arange(n)[:, None]
    out = np.zeros((n, dims))
    for _ in range(2):
        out += 0.45 * np.sin(2 * np.pi * t / rng.uniform(30, 120, dims) + rng.uniform(0, 7, dims))
    return out + 0.1 * rng.standard_normal((n, dims))


class _Canvas:
    """Records face-space polygons (x right, y down, unit = head half-width), then draws them all.

    ``flush`` transforms every point with one matrix product (rotation, scale, translation) and
    issues the cv2 calls: per-shape numpy work stays small, which is what makes rendering fast.
    """

    def __init__(self, img: np.ndarray, centre, scale: float, angle_deg: float):
        self.img, self.scale = img, scale
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        self.m = scale * (1 << _SHIFT) * np.array([[c, s], [-s, c]])
        self.t = np.asarray(centre, np.float64) * (1 << _SHIFT)
        self.ops, self.xy = [], []

    def fill(self, xy: np.ndarray, colour) -> None:
        self.ops.append((len(xy), colour, 0))
        self.xy.append(xy)

    def line(self, xy: np.ndarray, colour, width: float) -> None:
        self.ops.append((len(xy), colour, max(1, int(round(width * self.scale)))))
        self.xy.append(xy)

    def flush(self) -> np.ndarray:
        pts = np.rint(np.concatenate(self.xy) @ self.m + self.t).astype(np.int32)
        i = 0
        for n, colour, width in self.ops:
            poly = pts[i : i + n]
            i += n
            if width:
                cv2.polylines(self.img, [poly], False, colour, width, cv2.LINE_AA, _SHIFT)
            else:
                cv2.fillPoly(self.img, [poly], colour, cv2.LINE_AA, _SHIFT)
        return self.img


def _col(colour) -> tuple:
    return tuple(float(v) for v in colour)


_CIRCLES = {
    n: np.stack([np.cos(t), np.sin(t)], 1)
    for n in (10, 12, 16, 18, 24, 28, 32)
    for t in [np.linspace(0, 2 * np.pi, n)]
}
_HALF = {n: np.stack([np.cos(t), np.sin(t)], 1) for n in (20, 24) for t in [np.linspace(0, np.pi, n)]}


def _ellipse(cx, cy, rx, ry, n=28, half: int = 0) -> np.ndarray:
    """Points of an ellipse; half = 1 the lower half (y > cy), -1 the upper half, 0 the whole."""
    unit = _CIRCLES[n] if half == 0 else _HALF[n]
    return unit * np.array([rx, ry * (half or 1)]) + np.array([cx, cy])


def _curve(x: np.ndarray, y) -> np.ndarray:
    out = np.empty((len(x), 2))
    out[:, 0], out[:, 1] = x, y
    return out


def _shade(colour, amount: float) -> tuple:
    f = 1.0 - amount
    return (colour[0] * f, colour[1] * f, colour[2] * f)


def _draw_head(cv: _Canvas, ident: dict, a: np.ndarray) -> None:
    """Hair, neck, ears and the head outline (the chin drops with AU26)."""
    skin, rx = ident["skin"], ident["rx"]
    ry_bot = ident["ry_bot"] + 0.2 * a[AU_INDEX["AU26"]]
    if not ident["bald"]:
        cv.fill(_ellipse(0, -0.2, rx * 1.12, ident["ry_top"] * 1.05 + 0.1, 32), ident["hair"])
    cv.fill(np.array([[-0.42, 0.6], [0.42, 0.6], [0.5, 2.0], [-0.5, 2.0]]), _shade(skin, 0.15))
    for side in (-1, 1):
        cv.fill(_ellipse(side * rx, 0.02, 0.13, 0.22, 16), _shade(skin, 0.08))
    top = _ellipse(0, 0, rx, ident["ry_top"], 20, -1)
    bottom = _ellipse(0, 0, rx, ry_bot, 20, 1)
    cv.fill(np.concatenate([top, bottom[::-1]]), skin)
    if not ident["bald"]:
        cv.fill(_ellipse(0, -0.98, rx * 0.95, 0.22, 24, -1), ident["hair"])


def _draw_eye(cv: _Canvas, ident: dict, a: np.ndarray, side: int) -> None:
    """Sclera, iris, lids; AU6 / AU7 raise the lower lid, AU7 also lowers the upper lid."""
    skin, ex, ey, ew = ident["skin"], side * ident["eye_x"], -0.12, ident["eye_w"]
    au1, au2, au6, au7 = (a[AU_INDEX[n]] for n in ("AU1", "AU2", "AU6", "AU7"))
    h_up = 0.12 * (1 - 0.45 * au7 - 0.15 * au6) * (1 + 0.35 * max(au1, au2))
    h_lo = max(0.012, 0.075 * (1 - 0.55 * au6 - 0.7 * au7))
    x = ex + side * ew * _U  # inner corner first
    env = 1 - _U**2
    upper, lower = _curve(x, ey - h_up * env), _curve(x, ey + h_lo * env)
    cv.fill(np.concatenate([upper, lower[::-1]]), (245, 245, 240))
    cv.fill(_ellipse(ex, ey, 0.075, 0.075, 18), ident["iris"])
    cv.fill(_ellipse(ex, ey, 0.035, 0.035, 12), (15, 10, 10))
    band_up = np.concatenate([upper, _curve(x[::-1], ey - 0.22)])
    band_lo = np.concatenate([lower, _curve(x[::-1], ey + 0.2)])
    cv.fill(band_up, skin)
    cv.fill(band_lo, skin)
    cv.line(upper, _shade(skin, 0.7), 0.035)
    cv.line(lower, _shade(skin, 0.35), 0.02)
    if au6 > 0.05:  # crow's feet and the raised cheek fold under the eye
        ox = ex + side * (ew + 0.03)
        for dy in (-0.05, 0.0, 0.05):
            seg = np.array([[ox, ey + dy * 0.6], [ox + side * 0.1, ey + dy * 1.6]])
            cv.line(seg, _shade(skin, 0.4 * au6), 0.02)
        fold = _curve(ex + side * ew * 0.9 * _U, ey + h_lo + 0.06 + 0.03 * (1 - _U**2))
        cv.line(fold, _shade(skin, 0.35 * au6), 0.022)


_BROW_U = np.linspace(0, 1, 9)


def _draw_brows(cv: _Canvas, ident: dict, a: np.ndarray) -> None:
    """Brows: AU1 raises the inner end, AU2 the outer end, AU4 lowers and knits them."""
    au1, au2, au4 = (a[AU_INDEX[n]] for n in ("AU1", "AU2", "AU4"))
    by, t = ident["brow_y"], ident["brow_t"]
    inner_dy, outer_dy = -0.22 * au1 + 0.13 * au4, -0.2 * au2 + 0.05 * au4
    knit = 0.07 * au4
    colour = _shade(ident["hair"], 0.2)
    u = _BROW_U
    for side in (-1, 1):
        x = side * (0.1 - knit + (ident["eye_x"] + 0.22 - 0.1 + knit) * u)
        arch = -0.07 * np.sin(np.pi * u) * (1 + 0.8 * au2 - 0.5 * au4)
        y = by + inner_dy * (1 - u) ** 1.5 + outer_dy * u**1.5 + arch
        thick = t * (1.15 - 0.6 * u)
        cv.fill(np.concatenate([_curve(x, y - thick / 2), _curve(x[::-1], (y + thick / 2)[::-1])]), colour)
    skin = ident["skin"]
    lift = max(au1, au2)
    if lift > 0.05:  # horizontal forehead lines
        for k, fy in enumerate((-0.62, -0.73, -0.84)):
            xs = np.linspace(-0.38 + 0.06 * k, 0.38 - 0.06 * k, 9)
            cv.line(_curve(xs, fy + 0.035 * np.cos(np.pi * xs / 0.8)), _shade(skin, 0.35 * lift), 0.022)
    if au4 > 0.05:  # vertical glabella furrows
        for side in (-1, 1):
            seg = np.array([[side * 0.05, by - 0.02], [side * 0.035, by + 0.14]])
            cv.line(seg, _shade(skin, 0.45 * au4), 0.025)


def _draw_nose(cv: _Canvas, ident: dict, a: np.ndarray) -> None:
    """Nose bridge and base; AU10 lifts the nostrils and wrinkles the bridge."""
    skin, au10 = ident["skin"], a[AU_INDEX["AU10"]]
    ny = 0.3 - 0.04 * au10
    cv.line(np.array([[0.05, -0.05], [0.08, ny - 0.08]]), _shade(skin, 0.18), 0.025)
    base = _curve(0.15 * _U, ny + 0.03 * (1 - _U**2))
    cv.line(base, _shade(skin, 0.3), 0.03)
    for side in (-1, 1):
        cv.fill(_ellipse(side * 0.06, ny + 0.01, 0.035, 0.018, 10), _shade(skin, 0.6))
    if au10 > 0.05:
        for k in range(2):
            cv.line(
                np.array([[-0.07, 0.02 + 0.06 * k], [0.07, 0.02 + 0.06 * k]]), _shade(skin, 0.4 * au10), 0.02
            )


def _draw_mouth(cv: _Canvas, ident: dict, a: np.ndarray) -> None:
    """Lips, teeth and folds from AU10, AU12, AU15, AU23, AU24, AU25, AU26."""
    skin = ident["skin"]
    au6, au10, au12, au15, au23, au24, au25, au26 = (
        a[AU_INDEX[n]] for n in ("AU6", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
    )
    mw = ident["mouth_w"] * (1 - 0.3 * au23 - 0.1 * au24 + 0.18 * au12 - 0.03 * au15)
    my = 0.58 + 0.05 * au26
    corner = -0.16 * au12 + 0.15 * au15
    gap = 0.1 * au25 + 0.18 * au26
    thin = max(0.15, 1 - 0.5 * au23 - 0.75 * au24)
    u, env = _U, np.sqrt(np.maximum(1 - _U**2, 0))
    x = mw * u
    mid = my + corner * u**2
    ui = mid - 0.25 * gap * env - 0.06 * au10 * env
    li = mid + 0.75 * gap * env
    uo = ui - ident["lip_t"] * thin * env**0.7 * (1 - 0.25 * np.exp(-((u / 0.25) ** 2))) - 0.03 * au10 * env
    lo = li + ident["lip_t"] * 1.25 * thin * env**0.7
    if gap + 0.06 * au10 > 0.01:
        cv.fill(np.concatenate([_curve(x, ui), _curve(x[::-1], li[::-1])]), (70, 20, 25))
        teeth = np.minimum(ui + 0.045, li)
        cv.fill(np.concatenate([_curve(x * 0.85, ui), _curve(x[::-1] * 0.85, teeth[::-1])]), (240, 238, 225))
    cv.fill(np.concatenate([_curve(x, uo), _curve(x[::-1], ui[::-1])]), ident["lip"])
    cv.fill(np.concatenate([_curve(x, li), _curve(x[::-1], lo[::-1])]), _shade(ident["lip"], -0.05))
    cv.line(_curve(x, mid if gap < 0.01 else ui), _shade(ident["lip"], 0.55), 0.02)
    fold_dark = 0.12 + 0.35 * max(au12, au10, 0.6 * au6)
    for side in (-1, 1):  # nasolabial folds follow the mouth corners
        cx, cy = side * (mw + 0.05), my + corner + 0.04
        fold = np.array(
            [[side * 0.17, 0.3], [side * (0.5 * (0.17 + abs(cx)) + 0.05), 0.5 * (0.3 + cy)], [cx, cy]]
        )
        cv.line(fold, _shade(skin, fold_dark), 0.022)
        if au15 > 0.05:  # marionette lines from depressed corners
            cv.line(
                np.array([[side * mw, my + corner], [side * (mw + 0.02), my + corner + 0.16]]),
                _shade(skin, 0.35 * au15),
                0.022,
            )
    if au24 > 0.05 or au23 > 0.05:  # chin bulge under pressed / tightened lips
        chin = _curve(0.18 * u, lo.max() + 0.1 + 0.02 * env)
        cv.line(chin, _shade(skin, 0.3 * max(au24, au23)), 0.02)


def render_face(
    a: np.ndarray, ident: dict, background: np.ndarray, pose: np.ndarray, size: int
) -> np.ndarray:
    """One face (size, size, 3) uint8 RGB from AU intensities ``a`` (12,), before light and noise.

    ``background`` comes from ``_background``; ``pose`` = (angle in degrees, dx, dy in output
    pixels, relative scale).
    """
    k = SUPERSAMPLE
    img = background.copy()
    centre = (np.array([size / 2 + pose[1], size / 2 + pose[2] + 0.03 * size])) * k
    scale = ident["scale"] * size / 112.0 * pose[3] * k
    cv = _Canvas(img, centre, scale, pose[0])
    _draw_head(cv, ident, a)
    for side in (-1, 1):
        _draw_eye(cv, ident, a, side)
    _draw_brows(cv, ident, a)
    _draw_nose(cv, ident, a)
    _draw_mouth(cv, ident, a)
    return cv2.resize(cv.flush(), (size, size), interpolation=cv2.INTER_AREA)


def _finish(face: np.ndarray, light: np.ndarray, ramp: tuple, noise: np.ndarray) -> np.ndarray:
    """Lighting (gain + side ramp), sensor noise, rounding and saturation to uint8 (cv2: fast)."""
    shade = cv2.addWeighted(ramp[0], float(light[1]), ramp[1], float(light[2]), float(light[0]))
    out = cv2.add(cv2.multiply(face, cv2.merge([shade, shade, shade]), dtype=cv2.CV_32F), noise)
    return cv2.convertScaleAbs(cv2.max(out, 0.0))


def _frame_conditions(rng: np.random.Generator, ident: dict, n: int, size: int) -> tuple:
    """Per-frame pose (n, 4), light (n, 3), the lighting ramps and a bank of noise images + picks."""
    jit = _smooth_jitter(rng, n, 7)
    pose = np.stack(
        [
            ident["pose"][0] + 5.0 * jit[:, 0],
            (ident["pose"][1] + 2.5 * jit[:, 1]) * size / 112,
            (ident["pose"][2] + 2.5 * jit[:, 2]) * size / 112,
            1.0 + 0.04 * jit[:, 3],
        ],
        axis=1,
    )
    light = np.stack([rng.uniform(0.8, 1.1) + 0.08 * jit[:, 4], 0.15 * jit[:, 5], 0.1 * jit[:, 6]], axis=1)
    ramp = tuple(
        np.ascontiguousarray(r)
        for r in np.mgrid[0:size, 0:size][::-1].astype(np.float32) / (size - 1) * 2 - 1
    )
    bank = (rng.standard_normal((4, size, size, 3)) * rng.uniform(2.0, 7.0)).astype(np.float32)
    picks = rng.integers(0, len(bank), n)
    return pose, light, ramp, bank, picks


def video_frames(
    a: np.ndarray,
    ident: dict,
    rng: np.random.Generator,
    skip: np.ndarray,
    size: int,
    degraded: np.ndarray | None = None,
):
    """Yield (i, image) for each frame i of the AU track ``a`` (n, 12) where ``skip[i]`` is False.

    image: (size, size, 3) uint8 RGB, ``render_face`` of ``ident`` under the pose, light and
    sensor noise drawn from ``rng`` (all drawn before the first frame, whatever ``skip`` holds).
    degraded: (n,) codes of ``degradation_plan`` (-1: a clean frame); their parameters are drawn
    from ``rng`` after everything else, so the clean frames are the same with or without them.
    """
    background = _background(ident, size)
    pose, light, ramp, bank, picks = _frame_conditions(rng, ident, len(a), size)
    seeds = rng.integers(0, 2**31, len(a)) if degraded is not None else None
    for i in range(len(a)):
        if not skip[i]:
            face = render_face(a[i], ident, background, pose[i], size)
            image = _finish(face, light[i], ramp, bank[picks[i]])
            if degraded is not None and degraded[i] >= 0:
                image = degrade(image, DEGRADATIONS[degraded[i]], np.random.default_rng(seeds[i]), ident)
            yield i, image


# ---------------------------------------------------------------- degraded frames

DEGRADATIONS = ("hand", "blur", "dark")
DEGRADED_RUN = 2.0  # mean length of a run of degraded frames (a hand passing, a head turn)


def frame_runs(rng: np.random.Generator, n: int, rate: float, mean_len: float) -> list[slice]:
    """Runs of frames among n, in order: each starts with p = rate / mean_len and lasts 1 to
    2 mean_len - 1 frames (overlapping runs merge), so they cover about ``rate`` of the frames."""
    starts = rng.random(n) < rate / mean_len
    lengths = rng.integers(1, int(2 * mean_len), n)
    return [slice(i, i + lengths[i]) for i in np.flatnonzero(starts)]


def degradation_plan(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    """(n,) int8: the ``DEGRADATIONS`` index of each frame, -1 for a clean one.

    About ``rate`` of the frames, in runs of about ``DEGRADED_RUN`` frames with one kind each.
    """
    runs = frame_runs(rng, n, rate, DEGRADED_RUN)
    kinds = rng.integers(0, len(DEGRADATIONS), n)
    plan = np.full(n, -1, np.int8)
    for run in runs:
        plan[run] = kinds[run.start]
    return plan


def degrade(image: np.ndarray, kind: str, rng: np.random.Generator, ident: dict) -> np.ndarray:
    """``image`` (S, S, 3) uint8 RGB under one degradation of ``DEGRADATIONS``, drawn from ``rng``.

    hand: a skin-coloured ellipse over the upper (brows, eyes) or lower face (nose, mouth), most
      of the face wide and a third to a half of its height; blur: linear motion blur of 10-20% of the side at any
      angle; dark: the light at 20-35% with sensor noise of sd 10-18 grey levels.
    """
    size = image.shape[0]
    u = rng.random(5)
    if kind == "hand":
        out = image.copy()
        centre = (int(size * (0.35 + 0.3 * u[0])), int(size * (0.42 if u[1] < 0.5 else 0.7)))
        axes = (int(size * (0.2 + 0.08 * u[2])), int(size * (0.11 + 0.05 * u[3])))
        skin = np.asarray(ident["skin"]) * (0.75 + 0.25 * u[4])
        cv2.ellipse(out, centre, axes, 30 * u[3] - 15, 0, 360, _col(skin), -1)
        return out
    if kind == "blur":
        length = max(3, int(round(size * (0.1 + 0.1 * u[0]))))
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        turn = cv2.getRotationMatrix2D(((length - 1) / 2, (length - 1) / 2), 180 * u[1], 1.0)
        kernel = cv2.warpAffine(kernel, turn, (length, length))
        return cv2.filter2D(image, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)
    if kind == "dark":
        noise = rng.standard_normal(image.shape) * (10 + 8 * u[1])
        return np.clip(image * (0.2 + 0.15 * u[0]) + noise, 0, 255).astype(np.uint8)
    raise ValueError(f"unknown degradation {kind!r}; expected one of {DEGRADATIONS}")


# ---------------------------------------------------------------- out-of-domain images

OOD_KINDS = ("noise", "texture", "shapes", "scene", "stripes", "checker")


def ood_image(rng: np.random.Generator, kind: str, size: int) -> np.ndarray:
    """One (size, size, 3) uint8 RGB image of ``kind`` (one of OOD_KINDS): never a face."""
    if kind == "noise":
        return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    if kind == "texture":
        small = rng.uniform(0, 255, (int(rng.integers(4, 16)),) * 2 + (3,)).astype(np.float32)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(0, 256, 3)
    yy, xx = np.mgrid[0:size, 0:size]
    if kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 24)
        on = np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period) > 0
        img[on] = rng.integers(0, 256, 3)
    elif kind == "checker":
        cell = int(rng.integers(6, 24))
        img[((xx // cell) + (yy // cell)) % 2 == 1] = rng.integers(0, 256, 3)
    elif kind == "scene":
        horizon = int(rng.integers(size // 3, 2 * size // 3))
        t = (yy[:horizon] / max(horizon, 1))[..., None]
        img[:horizon] = ((1 - t) * rng.uniform(80, 255, 3) + t * rng.uniform(80, 255, 3)).astype(np.uint8)
        img[horizon:] = rng.integers(0, 160, 3)
        for _ in range(int(rng.integers(1, 5))):
            x0, w, h = int(rng.integers(0, size)), int(rng.integers(5, 30)), int(rng.integers(5, 50))
            cv2.rectangle(img, (x0, horizon - h), (x0 + w, horizon), _col(rng.integers(0, 200, 3)), -1)
    else:  # shapes
        for _ in range(int(rng.integers(3, 9))):
            colour, c = _col(rng.integers(0, 256, 3)), tuple(int(v) for v in rng.integers(0, size, 2))
            if rng.random() < 0.5:
                cv2.circle(img, c, int(rng.integers(4, size // 3)), colour, -1, cv2.LINE_AA)
            else:
                pts = rng.integers(0, size, (int(rng.integers(3, 6)), 2)).astype(np.int32)
                cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    return img
