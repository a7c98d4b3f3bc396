"""An exported EMENet-TF model with its metadata: faces in, expression / AU / VA results with uncertainty out."""

import cv2
import numpy as np

from edge.contract import INPUT_NAME
from edge.errors import EdgeError
from edge.interpreter import dequantize, input_tensor, load_runner, tensor_quantization
from edge.metadata import check_members, check_model_matches, load_metadata, metadata_path
from edge.results import FaceResult, result_to_json  # noqa: F401  (result_to_json: re-exported)
from edge.uncertainty import bernoulli_entropy, normalised_entropy, va_expectation

COLORS = ("rgb", "bgr")


def _check_face(face_rgb):
    if not isinstance(face_rgb, np.ndarray) or face_rgb.dtype != np.uint8:
        raise EdgeError(f"face must be a uint8 numpy array, got {type(face_rgb).__name__}")
    if face_rgb.ndim != 3 or face_rgb.shape[2] != 3 or min(face_rgb.shape[:2]) < 1:
        raise EdgeError(f"face must be an RGB array (H, W, 3), got shape {face_rgb.shape}")


class EmotionModel:
    """An exported EMENet-TF model with its metadata: faces in, expression / AU / VA results out."""

    def __init__(self, model_path, num_threads=None, face_detector=None):
        self.model_path = str(model_path)
        self.num_threads = num_threads
        self._interpreter, self._runner = load_runner(self.model_path, num_threads)
        meta_file = metadata_path(self.model_path)
        self.metadata = load_metadata(meta_file)
        self._input = self._runner.get_input_details()
        self._outputs = self._runner.get_output_details()
        check_model_matches(self.metadata, self._input, self._outputs, meta_file)
        check_members(self.metadata, [d["name"] for d in self._interpreter.get_tensor_details()], meta_file)
        self._input = self._input[INPUT_NAME]
        self.state = self.metadata.get("state")  # None: a per-frame model; else a stream model
        self.kind = self.metadata["kind"]
        self.size = self.metadata["input"]["size"]
        self.expr_names = list(self.metadata["expr_names"])
        self.au_names = list(self.metadata["au_names"])
        self.va_bin_centres = np.asarray(self.metadata["va_bin_centres"], np.float64)
        self.thresholds = self.metadata["thresholds"]
        # Heads whose task the training data never labelled: left out of every result.
        self.untrained = tuple(self.metadata.get("untrained", ()))
        self._detector = face_detector

    @property
    def face_detector(self):
        """The face detector used by ``predict``: ``edge.faces.FaceDetector()`` (BlazeFace, else Haar
        with a DetectorFallbackWarning) on the model's threads, built on first use unless one was given."""
        if self._detector is None:
            from edge.faces import FaceDetector

            self._detector = FaceDetector(num_threads=self.num_threads)
        return self._detector

    @face_detector.setter
    def face_detector(self, detector):
        """Any object with ``detect(image_rgb) -> [edge.faces.Face]`` (``detect_near`` too, to be
        followed between detections in a video)."""
        self._detector = detector

    def preprocess(self, face_rgb: np.ndarray) -> np.ndarray:
        """Face (H, W, 3) uint8 RGB -> model input (1, S, S, 3): resized (INTER_AREA), scaled, quantised."""
        _check_face(face_rgb)
        if face_rgb.shape[:2] != (self.size, self.size):
            face_rgb = cv2.resize(face_rgb, (self.size, self.size), interpolation=cv2.INTER_AREA)
        low, high = self.metadata["input"]["range"]
        x = low + (high - low) * face_rgb.astype(np.float32) / np.float32(255.0)
        return input_tensor(x[None], self._input)

    def run(self, face_rgb: np.ndarray) -> dict:
        """Raw outputs for one face: name -> float64 array without the batch axis, dequantised.

        A stream model runs from its initial state: a single image is a stream of one frame.
        """
        return (
            self.step(face_rgb, None)[0] if self.state is not None else self._raw(self._invoke(face_rgb, {}))
        )

    def initial_state(self) -> dict:
        """The state a stream starts from (zeros), by input name; {} for a per-frame model."""
        if self.state is None:
            return {}
        return {name: np.zeros((1, self.state["size"]), np.float32) for name in self.state["inputs"]}

    def step(self, face_rgb: np.ndarray, state: dict | None) -> tuple:
        """(raw outputs, next state) of one frame of a stream; ``state`` None: the stream's first frame.

        A per-frame model has no state: (its raw outputs, {}). The state is the model's own float32
        tensors, to be passed back unchanged with the next frame of the same face, and replaced by
        None every ``state["reset_every"]`` frames of that face (when > 0): the model was trained on
        clips of that many frames from a zero state (``edge.predict`` does this per face).
        """
        outputs = self._invoke(face_rgb, self.initial_state() if state is None else state)
        if self.state is None:
            return self._raw(outputs), {}
        following = dict(zip(self.state["inputs"], self.state["outputs"], strict=True))
        state = {name: outputs.pop(out) for name, out in following.items()}
        return self._raw(outputs), state

    def _invoke(self, face_rgb: np.ndarray, state: dict) -> dict:
        return self._runner(**{INPUT_NAME: self.preprocess(face_rgb)}, **state)

    def _raw(self, outputs: dict) -> dict:
        raw = {}
        for name, value in outputs.items():
            detail = self._outputs[name]
            if np.dtype(detail["dtype"]).kind in "iu":
                value = dequantize(value, *tensor_quantization(detail))
            raw[name] = np.asarray(value, np.float64)[0]
        return raw

    def to_result(self, raw: dict, box, source=None, frame=None, face=None) -> FaceResult:
        """The ``FaceResult`` of raw outputs (floats unrounded). ``face``: the detection (an
        ``edge.faces.Face``: its score and keypoints go into the result). A task the model's training
        data never labelled (metadata ``untrained``) is left out: no expression, AU or VA values from a
        head that never learnt them (without expressions ``uncertain`` is None)."""
        result = FaceResult(box=tuple(int(v) for v in box), source=source, frame=frame)
        if face is not None:
            result.score = face.score
            result.keypoints = (
                None if face.keypoints is None else [tuple(map(float, p)) for p in face.keypoints]
            )
        if "expr" not in self.untrained:
            expr = raw["expr_probs"]
            result.expression = {
                "label": self.expr_names[int(np.argmax(expr))],
                "probs": {n: float(p) for n, p in zip(self.expr_names, expr, strict=True)},
                "entropy": float(raw["expr_entropy"][0]),
            }
            result.uncertain = bool(result.expression["entropy"] > self.thresholds["expr_entropy"])
        if "au" not in self.untrained:
            result.au = {
                "probs": {n: float(p) for n, p in zip(self.au_names, raw["au_probs"], strict=True)},
                "entropy": {n: float(h) for n, h in zip(self.au_names, raw["au_entropy"], strict=True)},
            }
        if "va" not in self.untrained:
            result.valence, result.arousal = float(raw["valence"][0]), float(raw["arousal"][0])
            result.va_entropy = {
                "valence": float(raw["valence_entropy"][0]),
                "arousal": float(raw["arousal_entropy"][0]),
            }
        self._ood(result, raw)
        return result

    def _ood(self, result: FaceResult, raw: dict) -> None:
        """The OOD score and flag: a Dirichlet student's own (feature density, threshold ``ood``), an
        ensemble's expression epistemic uncertainty (threshold ``ood_epistemic``)."""
        if self.kind == "dirichlet":
            result.has_ood, result.ood_score = True, float(raw["ood_score"][0])
            limit = self.thresholds.get("ood")
        elif self.kind == "ensemble" and "expr" not in self.untrained:
            result.has_ood, result.ood_score = True, float(raw["expr_epistemic"][0])
            limit = self.thresholds.get("ood_epistemic")
        elif self.kind == "ensemble":
            result.has_ood, limit = True, None
        else:
            return
        result.ood = None if limit is None or result.ood_score is None else bool(result.ood_score > limit)

    def predict_face(
        self, face, *, color: str | None = None, box=None, source=None, frame=None
    ) -> FaceResult:
        """The result for one already-cropped face (uint8, ``color`` "rgb" or "bgr"); box defaults to
        the whole crop."""
        face = as_rgb(face, color)
        box = (0, 0, face.shape[1], face.shape[0]) if box is None else box
        return self.to_result(self.run(face), box, source, frame)

    def predict_raw(self, image_rgb: np.ndarray, detect_faces: bool = True) -> list:
        """[(Face or None, box, raw outputs)] for each face found in an RGB image (detect_faces False: the
        whole image is the face). A found face is fed to the model as its aligned crop (``Face.crop``),
        the crop training data were made with."""
        _check_face(image_rgb)
        height, width = image_rgb.shape[:2]
        if not detect_faces:
            return [(None, (0, 0, width, height), self.run(image_rgb))]
        return [
            (face, face.pixel_box(width, height), self.run(face.crop(image_rgb)))
            for face in self.face_detector.detect(image_rgb)
        ]

    def predict(
        self, image, *, color: str | None = None, detect_faces: bool = True, source=None, frame=None
    ) -> list:
        """One ``FaceResult`` per face in a uint8 image ([] if none; the whole image when not detecting).

        color: "bgr" for what OpenCV gives (``cv2.imread``, ``cv2.VideoCapture``), "rgb" for PIL,
        imageio or ``edge.images.load_image``: there is no default (None is an EdgeError), because the
        wrong one changes the answer without any error.
        """
        items = self.predict_raw(as_rgb(image, color), detect_faces)
        return [self.to_result(raw, box, source, frame, face) for face, box, raw in items]

    def smooth(self, previous: dict, current: dict, alpha: float) -> dict:
        """Exponential smoothing of raw outputs: p <- alpha p_now + (1 - alpha) p_before.

        Probabilities (and ensemble or Dirichlet aleatoric terms, a Dirichlet's ood_score) are averaged;
        entropies, VA expectations and the epistemic part (total - aleatoric, >= 0) are recomputed
        from the smoothed values.
        """
        mix = {k: alpha * current[k] + (1.0 - alpha) * previous[k] for k in current}
        mix["expr_entropy"] = np.atleast_1d(normalised_entropy(mix["expr_probs"]))
        mix["au_entropy"] = bernoulli_entropy(mix["au_probs"])
        va_h = normalised_entropy(mix["va_probs"])
        va_e = va_expectation(mix["va_probs"], self.va_bin_centres)
        mix["valence_entropy"], mix["arousal_entropy"] = va_h[:1], va_h[1:]
        mix["valence"], mix["arousal"] = va_e[:1], va_e[1:]
        if self.kind in ("ensemble", "dirichlet"):
            mix["expr_epistemic"] = np.maximum(mix["expr_entropy"] - mix["expr_aleatoric"], 0.0)
            mix["au_epistemic"] = np.maximum(mix["au_entropy"] - mix["au_aleatoric"], 0.0)
            mix["va_epistemic"] = np.maximum(va_h - mix["va_aleatoric"], 0.0)
        return mix


def as_rgb(image, color: str) -> np.ndarray:
    """A uint8 (H, W, 3) image as RGB, from ``color`` "rgb" or "bgr"; EdgeError for anything else."""
    if color is None:
        raise EdgeError(
            "color is required: 'bgr' for OpenCV's images (cv2.imread, cv2.VideoCapture), 'rgb' else"
        )
    if color not in COLORS:
        raise EdgeError(f"color must be 'bgr' (OpenCV: cv2.imread, cv2.VideoCapture) or 'rgb', got {color!r}")
    _check_face(image)
    return np.ascontiguousarray(image[..., ::-1]) if color == "bgr" else image
