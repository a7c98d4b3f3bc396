"""The streaming export of a temporal run: one frame plus the GRU state in, the outputs plus the next state out.

``StreamModule`` wires each member's one-step graph (``models.temporal.build_stream_step``: the
backbone on the frame, each task's GRU cell on (embedding, state), the dense heads) into the
contract's outputs (``graph.contract_outputs``, as for a per-frame model) plus the next state.
State tensors are float32 (1, members x units), named by ``edge.contract.STATE_INPUTS`` /
``STATE_OUTPUTS``; the edge runtime carries them from call to call and starts from zeros.

Parity of a stream model runs over validation video segments in frame order (``sequence_frames``),
the state carried within a segment and reset at its start, against the trained sequence model
run over the same segments at once (``keras_outputs``): the float model must equal it within the
float target at every frame, the int8 model must agree with the float one (the targets of
``parity``), so the quantisation error carried through the recurrence is measured too.
"""

from __future__ import annotations

import numpy as np

from edge.contract import INPUT_NAME, SIGNATURE, STATE_INPUTS, STATE_OUTPUTS
from emenet_tf._keras import tf
from emenet_tf.data import clips, pipeline
from emenet_tf.data.index import FrameIndex
from emenet_tf.export.graph import MEMBER_SCOPE, contract_outputs
from emenet_tf.labels import TASKS
from emenet_tf.models import temporal as tm


class StreamModule(tf.Module):
    """A temporal model or ensemble, one step: ``serve(image, h_au, h_expr, h_va)`` -> outputs, next state."""

    def __init__(self, members: list, image_size: int, max_gap: int, reset_every: int):
        super().__init__()
        self.members = list(members)
        self.steps = [tm.build_stream_step(m) for m in self.members]
        self.image_size = int(image_size)
        self.units = self.members[0].heads.units
        self.state_size = self.units * len(self.members)
        self.max_gap = int(max_gap)
        self.reset_every = int(reset_every)
        specs = [tf.TensorSpec((1, self.image_size, self.image_size, 3), tf.float32, name=INPUT_NAME)]
        specs += [tf.TensorSpec((1, self.state_size), tf.float32, name=n) for n in STATE_INPUTS]
        self.serve = tf.function(self._serve, input_signature=specs)

    @property
    def kind(self) -> str:
        return "ensemble" if len(self.members) > 1 else "single"

    @property
    def state(self) -> dict:
        """The metadata's state block: the state tensors, their size, how many frames without its
        face a stream keeps a face's state (the gap training bridged: ``--temporal_max_gap``), and
        after how many seen frames of a face its state is reset to zero (the clip length trained
        on, ``--temporal``: see ``clips.chunks``)."""
        return {
            "inputs": list(STATE_INPUTS),
            "outputs": list(STATE_OUTPUTS),
            "size": self.state_size,
            "max_gap": self.max_gap,
            "reset_every": self.reset_every,
        }

    def zero_state(self) -> dict:
        return {n: np.zeros((1, self.state_size), np.float32) for n in STATE_INPUTS}

    def representative(self, frames: dict) -> dict:
        """Calibration inputs {name: (N, ...)}: ``frames["image"]`` in order and the state each frame
        meets in a stream (the Keras step run over the frames, reset where ``frames["start"]``)."""
        images = frames["image"].astype(np.float32)
        state, seen = self.zero_state(), {n: [] for n in STATE_INPUTS}
        for i, image in enumerate(images):
            if frames["start"][i]:
                state = self.zero_state()
            for n in STATE_INPUTS:
                seen[n].append(state[n][0])
            out = self._serve(tf.constant(image[None]), *(tf.constant(state[n]) for n in STATE_INPUTS))
            state = {n: out[o].numpy() for n, o in zip(STATE_INPUTS, STATE_OUTPUTS, strict=True)}
        return {INPUT_NAME: images, **{n: np.stack(v) for n, v in seen.items()}}

    def _serve(self, image, h_au, h_expr, h_va):
        states = dict(zip(TASKS, (h_au, h_expr, h_va), strict=True))
        logits, following = [], {t: [] for t in TASKS}
        for k, step in enumerate(self.steps):
            own = {tm.STATE_INPUTS[t]: states[t][:, k * self.units : (k + 1) * self.units] for t in TASKS}
            with tf.name_scope(f"{MEMBER_SCOPE}{k}"):
                out = step({INPUT_NAME: image, **own}, training=False)
            logits.append({t: out[t] for t in TASKS})
            for t in TASKS:
                following[t].append(out[tm.NEXT_STATES[t]])
        outputs = contract_outputs(logits)
        for t, name in zip(TASKS, STATE_OUTPUTS, strict=True):
            outputs[name] = tf.concat(following[t], axis=-1)
        return outputs

    def save(self, saved_dir: str) -> None:
        tf.saved_model.save(self, saved_dir, signatures={SIGNATURE: self.serve})

    def keras_outputs(self, images: np.ndarray, starts: np.ndarray) -> dict:
        """The contract's outputs of the trained sequence models over each segment of ``images``
        (a segment begins where ``starts`` is True), the state carried as in training: numpy arrays."""
        chunks = []
        for first, end in _segments(starts):
            x = {INPUT_NAME: images[None, first:end], tm.FRAME_MASK: np.ones((1, end - first), np.float32)}
            logits = [{t: v[0] for t, v in m(x, training=False).items()} for m in self.members]
            chunks.append({k: v.numpy() for k, v in contract_outputs(logits).items()})
        return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def _segments(starts: np.ndarray) -> list[tuple[int, int]]:
    """[(first, end)) of the runs of frames that begin where ``starts`` is True."""
    firsts = np.flatnonzero(starts).tolist()
    return list(zip(firsts, firsts[1:] + [len(starts)], strict=True))


def sequence_frames(index: FrameIndex, image_size: int, count: int, max_gap: int, reset_every: int) -> dict:
    """About ``count`` validation frames in video order for stream parity and calibration.

    Takes the first frames of each of the index's segments (gaps of at most ``max_gap`` missing
    frames bridged, as in evaluation), as many from each as ``count`` allows; returns
    image (N,S,S,3), expr, expr_mask and start (N,) bool: the state is reset there (a segment
    begins, or ``reset_every`` frames of it have been seen: ``clips.chunks``). Frames whose image
    fails to decode are left out (a segment continues over them).
    """
    segments = clips.segments(index, max_gap)
    per_segment = max(8, -(-count // len(segments)))
    rows = []
    for steps in segments:
        present = steps[steps >= 0][:per_segment]
        rows.append(present)
        if sum(len(r) for r in rows) >= count:
            break
    chosen = np.concatenate(rows)[:count]
    segment_of = np.concatenate([np.full(len(r), i) for i, r in enumerate(rows)])[: len(chosen)]
    ds = pipeline.make_dataset(index.subset(chosen), image_size, 64, training=False)
    parts = [{k: batch[k].numpy() for k in ("image", "expr", "expr_mask", "frame_id")} for batch in ds]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    segment = segment_of[out.pop("frame_id")]
    first = np.concatenate([[True], segment[1:] != segment[:-1]])
    seen = np.arange(len(segment)) - np.maximum.accumulate(np.where(first, np.arange(len(segment)), 0))
    out["start"] = first | ((seen % reset_every == 0) if reset_every > 0 else False)
    return out
