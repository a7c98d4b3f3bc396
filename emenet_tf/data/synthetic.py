"""The synthetic Aff-Wild2 benchmark: rendered faces whose labels are samples from a known truth.

It writes exactly the Aff-Wild2 layout (``cropped_aligned/<video>/00001.jpg`` and
``annotations/{AU,EXPR,VA}_Set/{Train,Validation}_Set/<video>.txt``), so the same reader serves
both, plus what real data never has: the TRUE label distribution of every frame
(``synthetic_truth/{train,validation}.npz``), an out-of-domain folder (``ood/*.jpg``) and
``synthetic_meta.json`` (seed, sizes, counts, Bayes limits).

The generative story, per video:
  1. an identity (face shape, skin, eye spacing, brows, lips, hair, background);
  2. a sequence of segments (expression, intensity) with smooth transitions: a 12-d AU intensity
     track a(t) in [0, 1]^12 (frames in a transition blend two expressions);
  3. each frame is rendered from a(t) plus nuisance jitter (pose, scale, light, noise);
  4. the TRUE distribution is a deterministic function of a(t) alone (see ``true_distribution``),
     hence of what is rendered: the label noise is aleatoric and a perfect model could learn it;
  5. the WRITTEN label is one sample of it, as if one annotator labelled the frame.

Ambiguity model (EXPR): with prototypes P_e (12-d, e = 1..6) and the fitted intensity
s_e = max(0, a.P_e / |P_e|^2), the annotator's logits are z_0 = -GAMMA_N |a|^2 (Neutral) and
z_e = BETA (min(s_e, 1.2) - C) - GAMMA |a - min(s_e, 1) P_e|^2; p = (1 - EPS) softmax(z) + EPS / 7.
Weak expressions sit near the Neutral boundary, blends sit between two prototypes: both are
genuinely ambiguous. AU: q_k = EPS_AU / 2 + (1 - EPS_AU) sigmoid((a_k - AU_THRESHOLD) / AU_NOISE).
VA: mean = sum_e p_e min(s_e, 1) VA_e; std = VA_STD_MIN + VA_STD_SPAN H(p) / log 7.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import time

import cv2
import numpy as np

from emenet_tf.errors import DataError
from emenet_tf.labels import (
    AU_HEADER,
    AU_NAMES,
    EXPR_HEADER,
    NUM_AU,
    NUM_EXPR,
    SPLITS,
    TASK_DIRS,
    VA_HEADER,
    va_bin_edges,
)

# ---------------------------------------------------------------- the label model (the truth)

_AU = {name: k for k, name in enumerate(AU_NAMES)}


def _prototypes() -> np.ndarray:
    """(7, 12) AU intensity of each expression at full intensity (Neutral = 0)."""
    table = {
        1: {"AU4": 1.0, "AU7": 0.8, "AU23": 0.8, "AU24": 0.6},  # Anger
        2: {"AU4": 0.5, "AU10": 1.0, "AU15": 0.6},  # Disgust
        3: {"AU1": 1.0, "AU2": 0.7, "AU4": 0.7, "AU7": 0.6, "AU25": 1.0},  # Fear
        4: {"AU6": 0.8, "AU12": 1.0, "AU25": 0.5},  # Happiness
        5: {"AU1": 0.9, "AU4": 0.7, "AU15": 1.0},  # Sadness
        6: {"AU1": 1.0, "AU2": 1.0, "AU25": 0.8, "AU26": 1.0},  # Surprise
    }
    protos = np.zeros((NUM_EXPR, NUM_AU))
    for e, aus in table.items():
        for name, value in aus.items():
            protos[e, _AU[name]] = value
    return protos


PROTOTYPES = _prototypes()
# AUs a segment may leave out (each kept with probability OPTIONAL_KEEP): "anger AU23/24" etc.
OPTIONAL_AUS = {1: ("AU23", "AU24"), 2: ("AU4", "AU15"), 4: ("AU25",), 6: ("AU25",)}
OPTIONAL_KEEP = 0.6
# (valence, arousal) of each expression at full intensity.
VA_PROTOTYPES = np.array(
    [[0.0, 0.0], [-0.65, 0.65], [-0.6, 0.35], [-0.55, 0.7], [0.7, 0.4], [-0.6, -0.45], [0.15, 0.7]]
)
# Share of segments per expression, skewed like Aff-Wild2 (low-intensity segments add Neutral).
# Rare classes are also forced once in every 12th video (FORCED), so that even a split of six
# videos holds each of them: effective shares of segment frames ~ .33 .06 .05 .04 .28 .13 .11.
SEGMENT_FREQS = np.array([0.33, 0.03, 0.015, 0.005, 0.30, 0.17, 0.15])
FORCED = {0: 3, 2: 2, 4: 1}  # video index % 12 -> expression of one of its first two segments

BETA, C, GAMMA, GAMMA_N, EPS = 8.0, 0.45, 8.0, 4.0, 0.1
AU_THRESHOLD, AU_NOISE, EPS_AU = 0.3, 0.07, 0.02
VA_STD_MIN, VA_STD_SPAN = 0.07, 0.18


def true_distribution(au_intensity: np.ndarray) -> dict:
    """The TRUE label distribution of frames rendered with AU intensities ``au_intensity`` (N, 12).

    Returns float32 arrays: expr_probs (N, 7), au_probs (N, 12), va_mean (N, 2), va_std (N, 2).
    The formulas are in the module docstring.
    """
    a = np.asarray(au_intensity, np.float64)
    protos = PROTOTYPES[1:]
    fit = np.maximum(a @ protos.T / (protos**2).sum(axis=1), 0.0)  # (N, 6)
    resid = ((a[:, None, :] - np.minimum(fit, 1.0)[:, :, None] * protos[None]) ** 2).sum(axis=2)
    neutral = -GAMMA_N * (a**2).sum(axis=1, keepdims=True)
    logits = np.concatenate([neutral, BETA * (np.minimum(fit, 1.2) - C) - GAMMA * resid], 1)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p = (1.0 - EPS) * p / p.sum(axis=1, keepdims=True) + EPS / NUM_EXPR
    q = EPS_AU / 2 + (1.0 - EPS_AU) / (1.0 + np.exp(-(a - AU_THRESHOLD) / AU_NOISE))
    va_mean = (p[:, 1:, None] * np.minimum(fit, 1.0)[:, :, None] * VA_PROTOTYPES[None, 1:]).sum(axis=1)
    entropy = -(p * np.log(p)).sum(axis=1) / math.log(NUM_EXPR)
    va_std = np.repeat((VA_STD_MIN + VA_STD_SPAN * entropy)[:, None], 2, axis=1)
    return {
        "expr_probs": p.astype(np.float32),
        "au_probs": q.astype(np.float32),
        "va_mean": va_mean.astype(np.float32),
        "va_std": va_std.astype(np.float32),
    }


def sample_labels(rng: np.random.Generator, truth: dict) -> dict:
    """One annotator's labels drawn from ``truth``: expr (N,) int, au (N, 12) int, va (N, 2) float.

    EXPR ~ Categorical(expr_probs); AU_k ~ Bernoulli(au_probs_k); VA ~ clip(N(mean, std), -1, 1),
    rounded to 3 decimals.
    """
    p = truth["expr_probs"].astype(np.float64)
    cdf = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    expr = np.minimum((rng.random((len(p), 1)) > cdf).sum(axis=1), NUM_EXPR - 1)
    au = (rng.random(truth["au_probs"].shape) < truth["au_probs"]).astype(np.int64)
    va = truth["va_mean"] + truth["va_std"] * rng.standard_normal(truth["va_mean"].shape)
    return {"expr": expr, "au": au, "va": np.round(np.clip(va, -1.0, 1.0), 3)}


def _smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def _segment_target(rng: np.random.Generator, expr: int | None = None) -> tuple[int, np.ndarray]:
    """One segment: its expression and its 12-d AU target (prototype x intensity + stray AUs)."""
    drawn = int(rng.choice(NUM_EXPR, p=SEGMENT_FREQS))
    expr = drawn if expr is None else expr
    intensity = 0.25 + 0.75 * rng.beta(2.0, 1.5)
    target = intensity * PROTOTYPES[expr] * rng.uniform(0.8, 1.1, NUM_AU)
    for name in OPTIONAL_AUS.get(expr, ()):
        if rng.random() > OPTIONAL_KEEP:
            target[_AU[name]] = 0.0
    stray = rng.random(NUM_AU) < 0.08
    target = np.where(stray, np.maximum(target, rng.uniform(0.1, 0.45, NUM_AU)), target)
    return expr, np.clip(target, 0.0, 1.0)


def au_track(
    rng: np.random.Generator, n_frames: int, force: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth AU intensity track (n_frames, 12) and the segment expression of each frame.

    Segments hold 15-50 frames (intensity breathing +-10 %), transitions take 6-16 frames and
    blend the two targets with a smoothstep. ``force``: the expression of segment 0 or 1.
    """
    rows, exprs, prev = [], [], None
    forced_at = int(rng.integers(0, 2))
    total, k = 0, 0
    while total < n_frames:
        expr, target = _segment_target(rng, force if k == forced_at else None)
        k += 1
        if prev is not None:
            n_tr = int(rng.integers(6, 17))
            w = _smoothstep((np.arange(n_tr) + 0.5) / n_tr)[:, None]
            rows.append((1.0 - w) * prev + w * target)
            exprs.append(np.full(n_tr, expr))
            total += n_tr
        n_hold = int(rng.integers(15, 51))
        breathe = 1.0 + 0.1 * np.sin(2 * np.pi * np.arange(n_hold) / rng.uniform(20, 50) + rng.uniform(0, 7))
        rows.append(np.clip(target[None] * breathe[:, None], 0.0, 1.0))
        exprs.append(np.full(n_hold, expr))
        total += n_hold
        prev = target
    return np.concatenate(rows)[:n_frames], np.concatenate(exprs)[:n_frames]


# ---------------------------------------------------------------- rendering

SUPERSAMPLE = 2  # render at 2x, downsample with INTER_AREA: anti-aliased
_SHIFT = 4  # cv2 fixed-point sub-pixel bits
_U = np.linspace(-1.0, 1.0, 13)


def _identity(rng: np.random.Generator) -> dict:
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
    ry_bot = ident["ry_bot"] + 0.2 * a[_AU["AU26"]]
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
    au1, au2, au6, au7 = (a[_AU[n]] for n in ("AU1", "AU2", "AU6", "AU7"))
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
    au1, au2, au4 = (a[_AU[n]] for n in ("AU1", "AU2", "AU4"))
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
    skin, au10 = ident["skin"], a[_AU["AU10"]]
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
        a[_AU[n]] for n in ("AU6", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
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


# ---------------------------------------------------------------- one video

TASKS = ("au", "expr", "va")


def _video_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one video: derived from the base seed, split and index only."""
    split_id = 0 if split == "train" else 1
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(split_id, index)))


def _missing_runs(rng: np.random.Generator, n: int, rate: float, mean_len: float) -> np.ndarray:
    """(n,) bool: runs of missing frames / lines, on average ``rate`` of n, runs of ~mean_len."""
    starts = rng.random(n) < rate / mean_len
    lengths = rng.integers(1, int(2 * mean_len), n)
    missing = np.zeros(n, bool)
    for i in np.flatnonzero(starts):
        missing[i : i + lengths[i]] = True
    return missing


def _task_sets(rng: np.random.Generator, index: int) -> tuple[str, ...]:
    """The task sets a video appears in: always one (round robin), each other with p = 0.7."""
    own = TASKS[index % 3]
    return tuple(t for t in TASKS if t == own or rng.random() < 0.7)


def _format_lines(task: str, labels: dict, missing: np.ndarray) -> list[str]:
    if task == "au":
        return [
            "-1," * (NUM_AU - 1) + "-1" if m else ",".join(map(str, r))
            for r, m in zip(labels["au"], missing, strict=True)
        ]
    if task == "expr":
        return ["-1" if m else str(int(e)) for e, m in zip(labels["expr"], missing, strict=True)]
    return ["-5,-5" if m else f"{v:.3f},{ar:.3f}" for (v, ar), m in zip(labels["va"], missing, strict=True)]


HEADERS = {"au": AU_HEADER, "expr": EXPR_HEADER, "va": VA_HEADER}


def make_video(
    out_dir: str,
    split: str,
    name: str,
    rng: np.random.Generator,
    n_frames: int,
    tasks,
    size: int,
    force: int | None = None,
) -> dict:
    """Render and write one video (frames + its annotation files); return its truth and labels."""
    r_track, r_id, r_pose, r_labels, r_miss = rng.spawn(5)
    a, _ = au_track(r_track, n_frames, force)
    ident = _identity(r_id)
    truth = true_distribution(a)
    labels = sample_labels(r_labels, truth)
    no_image = _missing_runs(r_miss, n_frames, 0.02, 3.0)
    _write_annotations(out_dir, split, name, tasks, labels, r_miss, n_frames)
    _write_frames(out_dir, name, a, ident, r_pose, no_image, size)
    keep = ~no_image
    out = {key: value[keep] for key, value in truth.items()}
    out["frame"] = (np.flatnonzero(keep) + 1).astype(np.int32)
    out["video"] = np.full(int(keep.sum()), name)
    out["expr_label"] = labels["expr"][keep]
    return out


def _write_annotations(out_dir, split, name, tasks, labels, rng, n_frames) -> None:
    for task in TASKS:  # draw for every task, so the task sets do not shift other draws
        missing = _missing_runs(rng, n_frames, 0.05, 4.0)
        if task not in tasks:
            continue
        folder = os.path.join(out_dir, "annotations", TASK_DIRS[task], SPLITS[split])
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{name}.txt"), "w", encoding="ascii", newline="\n") as f:
            f.write("\n".join([HEADERS[task], *_format_lines(task, labels, missing)]) + "\n")


def _write_frames(out_dir, name, a, ident, rng, no_image, size) -> None:
    n = len(a)
    folder = os.path.join(out_dir, "cropped_aligned", name)
    os.makedirs(folder, exist_ok=True)
    background = _background(ident, size)
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
    params = [cv2.IMWRITE_JPEG_QUALITY, 90]
    for i in range(n):
        if no_image[i]:
            continue
        face = render_face(a[i], ident, background, pose[i], size)
        img = _finish(face, light[i], ramp, bank[picks[i]])
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], params)
        with open(os.path.join(folder, f"{i + 1:05d}.jpg"), "wb") as f:
            f.write(buf.tobytes())


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


def write_ood(out_dir: str, seed: int, count: int, size: int) -> int:
    """Write ``count`` OOD JPEGs to ``out_dir/ood/00001.jpg``...; return the count."""
    folder = os.path.join(out_dir, "ood")
    os.makedirs(folder, exist_ok=True)
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2, i)))
        img = ood_image(rng, OOD_KINDS[i % len(OOD_KINDS)], size)
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
        with open(os.path.join(folder, f"{i + 1:05d}.jpg"), "wb") as f:
            f.write(buf.tobytes())
    return count


# ---------------------------------------------------------------- truth, Bayes limits

_TRUTH_KEYS = ("video", "frame", "expr_probs", "au_probs", "va_mean", "va_std")


def _split_key(split: str) -> str:
    for key, folder in SPLITS.items():
        if split in (key, folder):
            return key
    raise DataError(f"unknown split; expected one of {sorted(SPLITS)}", value=split)


def load_truth(data_dir: str, split: str) -> dict | None:
    """The true label distributions of ``split`` ("train" / "validation"), or None if not synthetic.

    Returns video (N,) str, frame (N,) int32, expr_probs (N, 7), au_probs (N, 12),
    va_mean (N, 2), va_std (N, 2), sorted by (video, frame).
    """
    path = os.path.join(data_dir, "synthetic_truth", f"{_split_key(split)}.npz")
    if not os.path.isfile(path):
        return None
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in _TRUTH_KEYS if k not in z.files]
        if missing:
            raise DataError(f"truth file lacks arrays {missing}", path=path)
        return {k: z[k] for k in _TRUTH_KEYS}


def _va_binned_entropy(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the 20-bin distribution of clip(N(mean, std), -1, 1), per value."""
    from scipy.special import ndtr

    edges = va_bin_edges().astype(np.float64)
    cdf = ndtr((edges[None, :] - mean.reshape(-1, 1)) / std.reshape(-1, 1))
    cdf[:, 0], cdf[:, -1] = 0.0, 1.0  # clipping puts the tails in the end bins
    p = np.clip(np.diff(cdf, axis=1), 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1)


def bayes_limits(truth: dict) -> dict:
    """What a perfect model of the truth scores on labels sampled from it (expected values).

    expr_accuracy = mean_i max_k p_ik; expr_nll = mean_i H(p_i) (nats);
    au_accuracy = mean_ik max(q_ik, 1 - q_ik); au_nll = mean_ik H_bernoulli(q_ik) (nats, per AU);
    va_nll_binned = mean entropy of the 20-bin label distribution (nats, per value);
    va_ccc = per dimension 2 var(m) / (2 var(m) + mean(std^2)) (clipping ignored), mean of V and A.
    """
    p = np.clip(np.asarray(truth["expr_probs"], np.float64), 1e-12, 1.0)
    q = np.clip(np.asarray(truth["au_probs"], np.float64), 1e-12, 1 - 1e-12)
    m, s = np.asarray(truth["va_mean"], np.float64), np.asarray(truth["va_std"], np.float64)
    var_m, noise = m.var(axis=0), (s**2).mean(axis=0)
    return {
        "frames": int(len(p)),
        "expr_accuracy": float(p.max(axis=1).mean()),
        "expr_nll": float(-(p * np.log(p)).sum(axis=1).mean()),
        "expr_median_max_prob": float(np.median(p.max(axis=1))),
        "au_accuracy": float(np.maximum(q, 1 - q).mean()),
        "au_nll": float(-(q * np.log(q) + (1 - q) * np.log(1 - q)).mean()),
        "va_nll_binned": float(_va_binned_entropy(m, s).mean()) if len(m) else float("nan"),
        "va_ccc": float(np.mean(2 * var_m / (2 * var_m + noise))),
    }


# ---------------------------------------------------------------- the whole benchmark

_OURS = ("annotations", "cropped_aligned", "synthetic_truth", "ood", "synthetic_meta.json")


def _prepare_out_dir(out_dir: str) -> None:
    """Create ``out_dir``; clear a previous synthetic run; refuse to touch anything else."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        if not os.path.isfile(os.path.join(out_dir, "synthetic_meta.json")):
            raise DataError("not empty and not a synthetic benchmark; refusing to overwrite", path=out_dir)
        for name in _OURS:
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.isfile(path):
                os.remove(path)
    os.makedirs(out_dir, exist_ok=True)


def video_plan(seed: int, split: str, n_videos: int, pairs: int) -> list[tuple[int, str, tuple]]:
    """(index, name, task sets) of each video of a split; the last 2 * pairs are _left/_right."""
    prefix = "syn-train" if split == "train" else "syn-val"
    pairs = min(pairs, n_videos // 2)
    plan = []
    for i in range(n_videos):
        j = i - (n_videos - 2 * pairs)
        name = f"{prefix}-{i:03d}" if j < 0 else f"{prefix}-{n_videos - 2 * pairs + j // 2:03d}-pair"
        name += "" if j < 0 else ("_left", "_right")[j % 2]
        tasks = _task_sets(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(3, i))), i)
        plan.append((i, name, tasks))
    return plan


def _video_job(job) -> dict:
    out_dir, seed, split, index, name, tasks, n_frames, size = job
    rng = _video_rng(seed, split, index)
    out = make_video(out_dir, split, name, rng, n_frames, tasks, size, FORCED.get(index % 12))
    out["tasks"] = tasks
    return out


def _split_counts(parts: list[dict], n_frames: int) -> dict:
    expr = np.concatenate([p["expr_label"] for p in parts])
    return {
        "videos": len(parts),
        "frames": len(parts) * n_frames,
        "images": int(sum(len(p["frame"]) for p in parts)),
        "videos_per_task": {t: sum(t in p["tasks"] for p in parts) for t in TASKS},
        "expr_sampled_label_freq": np.round(
            np.bincount(expr, minlength=NUM_EXPR) / max(len(expr), 1), 4
        ).tolist(),
    }


def generate(
    out_dir: str,
    seed: int = 0,
    train_videos: int = 24,
    val_videos: int = 6,
    frames_per_video: int = 150,
    image_size: int = 112,
    ood_images: int | None = None,
    pairs: int | None = None,
    workers: int = 1,
) -> dict:
    """Write the synthetic Aff-Wild2 benchmark to ``out_dir``; return a summary dict.

    ``pairs`` = number of _left/_right pairs per split (default: one per split when it has >= 4
    videos); ``ood_images`` defaults to a quarter of the validation frames, at most 400. The
    output is a function of the arguments alone (``workers`` changes only the speed).
    """
    sizes = {
        "train_videos": train_videos,
        "val_videos": val_videos,
        "frames_per_video": frames_per_video,
        "image_size": image_size,
    }
    if min(sizes.values()) < 1 or image_size < 32:
        raise DataError("sizes must be positive and image_size >= 32", value=sizes)
    if ood_images is None:
        ood_images = min(400, val_videos * frames_per_video // 4)
    start = time.perf_counter()
    _prepare_out_dir(out_dir)
    summary = {"seed": seed, "sizes": {**sizes, "ood_images": ood_images}, "counts": {}, "bayes_limits": {}}
    for split, n_videos in (("train", train_videos), ("validation", val_videos)):
        n_pairs = pairs if pairs is not None else (1 if n_videos >= 4 else 0)
        jobs = [
            (out_dir, seed, split, i, name, tasks, frames_per_video, image_size)
            for i, name, tasks in video_plan(seed, split, n_videos, n_pairs)
        ]
        parts = _run_jobs(jobs, workers)
        truth = _write_truth(out_dir, split, parts)
        summary["counts"][split] = _split_counts(parts, frames_per_video)
        summary["bayes_limits"][split] = bayes_limits(truth)
    summary["counts"]["ood"] = write_ood(out_dir, seed, ood_images, image_size)
    with open(os.path.join(out_dir, "synthetic_meta.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    seconds = time.perf_counter() - start
    frames = sum(c["images"] for k, c in summary["counts"].items() if k != "ood")
    return {
        **summary,
        "out_dir": out_dir,
        "seconds": seconds,
        "frames_per_second": frames / max(seconds, 1e-9),
    }


def _run_jobs(jobs: list, workers: int) -> list[dict]:
    if workers <= 1 or len(jobs) <= 1:
        return [_video_job(j) for j in jobs]
    # spawn, not fork: the caller may already hold TensorFlow's threads
    with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
        return pool.map(_video_job, jobs)


def _write_truth(out_dir: str, split: str, parts: list[dict]) -> dict:
    order = sorted(range(len(parts)), key=lambda i: parts[i]["video"][0] if len(parts[i]["video"]) else "")
    parts = [parts[i] for i in order if len(parts[i]["frame"])]
    truth = {k: np.concatenate([p[k] for p in parts]) for k in _TRUTH_KEYS}
    truth["video"] = truth["video"].astype(str)
    folder = os.path.join(out_dir, "synthetic_truth")
    os.makedirs(folder, exist_ok=True)
    np.savez(os.path.join(folder, f"{split}.npz"), **truth)
    return truth


def main(argv: list[str] | None = None) -> dict:
    """CLI: python -m emenet_tf.data.synthetic --out DIR --seed S [sizes]."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (Aff-Wild2 layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train_videos", type=int, default=24)
    parser.add_argument("--val_videos", type=int, default=6)
    parser.add_argument("--frames_per_video", type=int, default=150)
    parser.add_argument("--image_size", type=int, default=112)
    parser.add_argument("--ood_images", type=int, default=None, help="default: val frames / 4, <= 400")
    parser.add_argument("--pairs", type=int, default=None, help="_left/_right pairs per split")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    summary = generate(
        args.out,
        seed=args.seed,
        train_videos=args.train_videos,
        val_videos=args.val_videos,
        frames_per_video=args.frames_per_video,
        image_size=args.image_size,
        ood_images=args.ood_images,
        pairs=args.pairs,
        workers=args.workers,
    )
    for split, counts in summary["counts"].items():
        print(f"{split}: {counts}")
    print(f"bayes limits (validation): {json.dumps(summary['bayes_limits']['validation'], indent=1)}")
    print(
        f"wrote {summary['out_dir']} in {summary['seconds']:.1f} s ({summary['frames_per_second']:.0f} frames/s)"
    )
    return summary


if __name__ == "__main__":
    main()
