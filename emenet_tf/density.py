"""Feature-density OOD score (DDU, Mukhoti et al. 2023): class-conditional Gaussians on a model's features.

Features: the outputs of ``layers`` of the model, each averaged over its spatial axes when it is a
feature map, concatenated (D values per image). Fit once after training, on the training frames
(no augmentation), in float64: class k of a frame = the model's EXPR argmax; mu_k its mean,
pi_k its share; one covariance S shared by the classes (stable with few frames per class), plus
JITTER * mean variance on the diagonal. With S = L L^T, W = L^-1, m the mean training feature,
u = W (z - m) and v_k = W (mu_k - m):
  log pi_k N(z; mu_k, S) = c_k - |u - v_k|^2 / 2,   c_k = log pi_k - log det L - D/2 log 2 pi
  score(z) = -logsumexp_k(...) / D      (nats per feature; higher: less like the training faces)
At inference that is a difference, one matrix product, a broadcast difference, a sum of squares
and a logsumexp: TFLite builtins. Centring on m and the explicit difference keep float32 exact
where whitened features are large: |u|^2 - 2 u.v_k + |v_k|^2 of uncentred features cancelled
catastrophically (it turned the float TFLite score's AUROC from 0.97 to 0.37 on a tiny run).
"""

from __future__ import annotations

import dataclasses
import math
import zipfile

import numpy as np

from emenet_tf.errors import RunError
from emenet_tf.io import atomic_save_npz, short_reason

# The layers whose outputs are the features: two early stages, spatially averaged. OOD AUROC of
# the Dirichlet students of three default runs, mean (per run): block1 + block2 (96 features for
# "small") 0.962 (0.995, 0.904, 0.987); block1 0.960; block1 + block2 + embedding 0.963; the
# embedding alone (DDU's choice) 0.90; the ensembles' epistemic score 0.76. The embedding adds
# nothing here but a 224 x 224 matrix product in the graph (latency: docs/ARCHITECTURE.md).
DENSITY_LAYERS = ("block1_0_project_bn", "block2_0_project_bn")
JITTER = 1e-3  # added to the covariance's diagonal, relative to the mean feature variance
MIN_CLASS_FRAMES = 2  # classes with fewer training frames get no Gaussian


@dataclasses.dataclass(frozen=True)
class GaussianDensity:
    """The fitted density: feature ``layers``, centre ``m`` (D,), whitening ``w`` (D, D), class
    means ``v`` (K, D) in whitened space and offsets ``c`` (K,)."""

    layers: tuple[str, ...]
    m: np.ndarray
    w: np.ndarray
    v: np.ndarray
    c: np.ndarray

    @classmethod
    def fit(cls, features, classes, layers=DENSITY_LAYERS) -> GaussianDensity:
        """Fit on (N, D) ``features`` with (N,) integer ``classes``; ValueError if none has 2 frames."""
        z = np.asarray(features, np.float64)
        classes = np.asarray(classes)
        kept = [k for k in np.unique(classes) if (classes == k).sum() >= MIN_CLASS_FRAMES]
        if not kept:
            raise ValueError(f"no class has {MIN_CLASS_FRAMES} frames to fit a density on ({len(z)} frames)")
        rows = np.isin(classes, kept)
        mu = np.stack([z[classes == k].mean(axis=0) for k in kept])
        log_pi = np.log([(classes == k).sum() / rows.sum() for k in kept])
        centred = z[rows] - mu[np.searchsorted(kept, classes[rows])]
        dim = z.shape[1]
        cov = centred.T @ centred / rows.sum()
        cov += JITTER * np.trace(cov) / dim * np.eye(dim)
        chol = np.linalg.cholesky(cov)
        w = np.linalg.inv(chol)
        m = z[rows].mean(axis=0)
        c = log_pi - np.log(np.diag(chol)).sum() - 0.5 * dim * math.log(2 * math.pi)
        return cls(tuple(layers), m, w, (mu - m) @ w.T, c)

    def score(self, features) -> np.ndarray:
        """(N, D) features -> (N,) OOD score, float64 (the module docstring's formula)."""
        u = (np.asarray(features, np.float64) - self.m) @ self.w.T
        logits = self.c - 0.5 * ((u[:, None, :] - self.v) ** 2).sum(axis=-1)
        top = logits.max(axis=1, keepdims=True)
        log_density = (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))[:, 0]
        return -log_density / self.w.shape[0]

    def score_tf(self, features):
        """The same score as TensorFlow builtin ops (FullyConnected, Sub, Mul, Sum, Exp, Log): float32."""
        from emenet_tf._keras import tf

        u = tf.matmul(features - tf.constant(self.m, tf.float32), tf.constant(self.w.T, tf.float32))
        diff = u[:, None, :] - tf.constant(self.v, tf.float32)
        logits = tf.constant(self.c, tf.float32) - 0.5 * tf.reduce_sum(diff * diff, axis=-1)
        top = tf.reduce_max(logits, axis=1)  # logsumexp by hand: tf's adds an is-finite guard (2 ops)
        log_density = top + tf.math.log(tf.reduce_sum(tf.exp(logits - top[:, None]), axis=1))
        return log_density * (-1.0 / self.w.shape[0])

    def save(self, path: str) -> None:
        atomic_save_npz(path, layers=np.array(self.layers), m=self.m, w=self.w, v=self.v, c=self.c)

    @classmethod
    def load(cls, path: str) -> GaussianDensity:
        """The density saved at ``path``; RunError naming the file when it is cut or unreadable."""
        try:
            with np.load(path) as data:
                return cls(tuple(str(n) for n in data["layers"]), data["m"], data["w"], data["v"], data["c"])
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
            reason = short_reason(err)
            raise RunError(f"{path}: unreadable feature density ({reason})") from None


def feature_tensor(net, layers=DENSITY_LAYERS):
    """The features of a Keras model: ``layers``' outputs, spatially averaged if 4-D, concatenated."""
    from emenet_tf._keras import keras

    outs = []
    for name in layers:
        out = net.get_layer(name).output
        outs.append(
            keras.layers.GlobalAveragePooling2D(name=f"{name}_density_pool")(out)
            if out.shape.rank == 4
            else out
        )
    return outs[0] if len(outs) == 1 else keras.layers.Concatenate(name="density_features")(outs)


def predict_features(net, dataset, layers=DENSITY_LAYERS) -> dict:
    """{"features" (N, D), "outputs" {name: (N, ...)} the model's raw outputs, "frame_id" (N,)} over a dataset."""
    from emenet_tf._keras import keras

    model = keras.Model(net.input, {"features": feature_tensor(net, layers), **net.output})
    chunks: dict[str, list] = {}
    for batch in dataset:
        for key, value in {**model.predict_on_batch(batch["image"]), "frame_id": batch["frame_id"]}.items():
            chunks.setdefault(key, []).append(np.asarray(value))
    arrays = {k: np.concatenate(v) for k, v in chunks.items()}
    features, frame_id = arrays.pop("features"), arrays.pop("frame_id")
    return {"features": features, "outputs": arrays, "frame_id": frame_id}


def fit_model_density(net, dataset, layers=DENSITY_LAYERS) -> GaussianDensity:
    """Fit the density of ``net``'s features over ``dataset`` (classes: its EXPR argmax)."""
    pred = predict_features(net, dataset, layers)
    return GaussianDensity.fit(pred["features"], pred["outputs"]["expr"].argmax(axis=1), layers)
