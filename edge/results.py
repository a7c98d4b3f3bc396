"""What the edge runtime returns for one face: a ``FaceResult``, its JSON line and its CSV row.

``EmotionModel.to_result`` builds one from a model's raw outputs; ``to_dict`` is the JSON line the
CLI prints (floats rounded by ``result_to_json``), ``csv_row`` the flat row of ``--csv``. A task the
model's training data never labelled has no field (``expression``, ``au`` or the VA fields are None
and left out of both).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np


@dataclasses.dataclass
class FaceResult:
    """One face: where it is, how sure the detector was, and the model's answer with its uncertainty.

    box: (x, y, w, h) whole pixels of the image; score: the detector's confidence (None: Haar or no
    detection); keypoints: [(x, y)] x 6 (BlazeFace: right eye, left eye, nose tip, mouth centre, right
    ear, left ear) or None; expression: {"label", "probs": {name: p}, "entropy"}; au: {"probs",
    "entropy"} by AU name; valence / arousal in [-1, 1] with va_entropy; uncertain: the expression
    entropy is above the model's threshold; ood_score / ood: ensembles and the Dirichlet student only;
    face: the track number within a video.
    """

    box: tuple
    score: float | None = None
    keypoints: list | None = None
    expression: dict | None = None
    au: dict | None = None
    valence: float | None = None
    arousal: float | None = None
    va_entropy: dict | None = None
    uncertain: bool | None = None
    ood_score: float | None = None
    ood: bool | None = None
    source: str | None = None
    frame: int | None = None
    face: int | None = None
    has_ood: bool = dataclasses.field(default=False, repr=False)  # the model gives an OOD signal

    def top_emotion(self) -> tuple | None:
        """(label, probability) of the most likely expression, or None without an expression head."""
        if self.expression is None:
            return None
        label = self.expression["label"]
        return label, self.expression["probs"][label]

    def to_dict(self) -> dict:
        """The JSON line's dict (floats unrounded): detection fields only when known, task fields only
        for the tasks the model learnt, ood fields only for models that give them."""
        out = {"source": self.source, "frame": self.frame}
        if self.face is not None:
            out["face"] = self.face
        out["box"] = [int(v) for v in self.box]
        if self.score is not None:
            out["score"] = self.score
        if self.keypoints is not None:
            out["keypoints"] = [[float(x), float(y)] for x, y in self.keypoints]
        for name in ("expression", "au", "valence", "arousal", "va_entropy"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.expression is not None:  # the expression entropy's flag: no expression, no flag
            out["uncertain"] = self.uncertain
        if self.has_ood:
            out["ood_score"], out["ood"] = self.ood_score, self.ood
        return out

    def csv_row(self, digits: int = 4) -> dict:
        """One flat row for ``--csv``: the box's four numbers, the label and its probability, every
        class's and AU's probability, VA and the uncertainty fields (rounded to ``digits``)."""
        row = {"source": self.source, "frame": self.frame, "face": self.face}
        row.update(zip(("x", "y", "w", "h"), (int(v) for v in self.box), strict=True))
        row["score"] = self.score
        if self.expression is not None:
            label, prob = self.top_emotion()
            row.update(expression=label, expression_prob=prob, expression_entropy=self.expression["entropy"])
            row.update({f"p_{name}": p for name, p in self.expression["probs"].items()})
            row["uncertain"] = self.uncertain
        if self.has_ood:
            row.update(ood_score=self.ood_score, ood=self.ood)
        if self.valence is not None:
            row.update(valence=self.valence, arousal=self.arousal)
            row.update(valence_entropy=self.va_entropy["valence"], arousal_entropy=self.va_entropy["arousal"])
        if self.au is not None:
            row.update({name: p for name, p in self.au["probs"].items()})
        return {k: rounded(v, digits) for k, v in row.items()}


def rounded(value, digits: int):
    """``value`` with every float (numpy ones too) rounded to ``digits`` decimals, through dicts and lists."""
    if isinstance(value, (float, np.floating)):
        return round(float(value), digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def result_to_json(result, digits: int = 4) -> str:
    """One JSON line for a result (a FaceResult or its dict), floats rounded to ``digits`` decimals."""
    data = result.to_dict() if isinstance(result, FaceResult) else result
    return json.dumps(rounded(data, digits))
