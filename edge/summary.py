"""Per-video summaries (``edge.predict --summary``): what one video or stream showed, as one JSON object.

Each face track (``edge.tracking``) is summarised on its own (``tracks``); the video's label comes
from the tracks kept: a track seen in fewer than MIN_TRACK_FRAMES processed frames (a passer-by, a
false detection) or flagged out of domain in more than MAX_OOD_SHARE of its frames is left out, and
``left_out`` says which and why. Over the N face results of the kept tracks:
  expression.probs    the uncertainty-weighted distribution sum_i w_i p_i / sum_i w_i, with
                      w_i = 1 - H_i and H_i the result's normalised expression entropy (a confident
                      frame counts more; if every w_i is 0, the plain mean); .label its most likely
                      expression; .entropy its normalised entropy H(p) / log 7 (how mixed the video is)
  valence, arousal    the means of the results' values
  au_rates            per AU, the share of results with p >= 0.5
  uncertain           the share of results flagged uncertain
  ood                 the share flagged out of domain (null when the model gives no OOD flag)
  results, frames, faces   N, the frames with a kept face, the tracks kept
Numbers are rounded to ``DIGITS`` decimals. A task the model never learnt has no entry.
"""

from __future__ import annotations

import numpy as np

from edge.results import rounded
from edge.uncertainty import normalised_entropy

MIN_TRACK_FRAMES = 5  # a track seen in fewer processed frames does not label the video
MAX_OOD_SHARE = 0.5  # a track flagged out of domain in more of its frames does not either
DIGITS = 4


class VideoSummary:
    """Accumulates the results of one video or stream; ``to_json_dict`` gives the summary line."""

    def __init__(self, source: str):
        self.source = source
        self.results: dict = {}  # track id -> its FaceResults

    def add(self, result, face=None) -> None:
        """One face result (a ``FaceResult``) of track ``face``."""
        self.results.setdefault(face, []).append(result)

    def _verdict(self, results: list, processed: int, ood: float | None) -> str | None:
        """Why a track is left out of the video's label (``ood``: the share of its frames flagged
        out of domain, None when none was scored), or None when it is kept."""
        if len(results) < min(MIN_TRACK_FRAMES, processed):
            return f"seen in {len(results)} frame(s), fewer than {MIN_TRACK_FRAMES}"
        if ood is not None and ood > MAX_OOD_SHARE:
            return f"out of domain in {ood:.0%} of its frames"
        return None

    def summary(self) -> dict:
        """The summary (see the module docstring)."""
        processed = len({r.frame for rs in self.results.values() for r in rs})
        tracks, kept, left_out = [], [], []
        for face, results in self.results.items():
            described = _describe(results)
            why = self._verdict(results, processed, described["ood"])
            tracks.append({"face": face, **described})
            if why is None:
                kept += results
            else:
                left_out.append({"face": face, "reason": why})
        out = {
            "results": len(kept),
            "frames": len({r.frame for r in kept}),
            "faces": len(self.results) - len(left_out),
        }
        out.update(_describe(kept) if kept else {})
        out["tracks"], out["left_out"] = tracks, left_out
        return rounded(out, DIGITS)

    def to_json_dict(self) -> dict:
        return {"source": self.source, "summary": self.summary()}


def _describe(results: list) -> dict:
    """The figures of the module docstring over ``results`` (of one track, or of the kept tracks)."""
    out = {"results": len(results)}
    first = results[0]
    if first.expression is not None:
        names = list(first.expression["probs"])
        probs = np.array([[r.expression["probs"][n] for n in names] for r in results])
        weights = 1.0 - np.clip([r.expression["entropy"] for r in results], 0.0, 1.0)
        weights = weights if weights.sum() > 0 else np.ones(len(results))
        mixed = weights @ probs / weights.sum()
        out["expression"] = {
            "label": names[int(np.argmax(mixed))],
            "probs": dict(zip(names, mixed.tolist(), strict=True)),
            "entropy": float(normalised_entropy(mixed)),
        }
        out["uncertain"] = float(np.mean([r.uncertain for r in results]))
    if first.valence is not None:
        out["valence"] = float(np.mean([r.valence for r in results]))
        out["arousal"] = float(np.mean([r.arousal for r in results]))
    if first.au is not None:
        au_names = list(first.au["probs"])
        active = np.array([[r.au["probs"][n] >= 0.5 for n in au_names] for r in results])
        out["au_rates"] = dict(zip(au_names, active.mean(axis=0).tolist(), strict=True))
    flagged = [r.ood for r in results if r.ood is not None]
    out["ood"] = float(np.mean(flagged)) if flagged else None
    return out
