"""Per-video summaries (``edge.predict --summary``): what one video or stream showed, as one JSON object.

Over the N face results of a video (every face of every processed frame):
  expression.probs    the uncertainty-weighted distribution sum_i w_i p_i / sum_i w_i, with
                      w_i = 1 - H_i and H_i the result's normalised expression entropy (a confident
                      frame counts more; if every w_i is 0, the plain mean); .label its most likely
                      expression; .entropy its normalised entropy H(p) / log 7 (how mixed the video is)
  valence, arousal    the means of the results' values
  au_rates            per AU, the share of results with p >= 0.5
  uncertain           the share of results flagged uncertain
  ood                 the share flagged out of domain (null when the model gives no OOD flag)
  results, frames, faces   N, the frames with at least one face, the distinct face tracks
"""

import numpy as np

from edge.uncertainty import normalised_entropy


class VideoSummary:
    """Accumulates the results of one video or stream; ``to_json_dict`` gives the summary line."""

    def __init__(self, source: str):
        self.source = source
        self.results: list[dict] = []
        self.frames: set = set()
        self.faces: set = set()

    def add(self, result: dict, face=None) -> None:
        """One face result (``EmotionModel.to_result``) of frame ``result["frame"]``, of track ``face``."""
        self.results.append(result)
        self.frames.add(result["frame"])
        self.faces.add(face)

    def summary(self) -> dict:
        """The summary (see the module docstring); counts only when no result was added."""
        counts = {"results": len(self.results), "frames": len(self.frames), "faces": len(self.faces)}
        if not self.results:
            return counts
        names = list(self.results[0]["expression"]["probs"])
        probs = np.array([[r["expression"]["probs"][n] for n in names] for r in self.results])
        weights = 1.0 - np.clip([r["expression"]["entropy"] for r in self.results], 0.0, 1.0)
        weights = weights if weights.sum() > 0 else np.ones(len(self.results))
        mixed = weights @ probs / weights.sum()
        au_names = list(self.results[0]["au"]["probs"])
        active = np.array([[r["au"]["probs"][n] >= 0.5 for n in au_names] for r in self.results])
        flagged = [r["ood"] for r in self.results if r.get("ood") is not None]
        return {
            **counts,
            "expression": {
                "label": names[int(np.argmax(mixed))],
                "probs": dict(zip(names, mixed.tolist(), strict=True)),
                "entropy": float(normalised_entropy(mixed)),
            },
            "valence": float(np.mean([r["valence"] for r in self.results])),
            "arousal": float(np.mean([r["arousal"] for r in self.results])),
            "au_rates": dict(zip(au_names, active.mean(axis=0).tolist(), strict=True)),
            "uncertain": float(np.mean([r["uncertain"] for r in self.results])),
            "ood": float(np.mean(flagged)) if flagged else None,
        }

    def to_json_dict(self) -> dict:
        return {"source": self.source, "summary": self.summary()}
