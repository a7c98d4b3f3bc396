"""Temporal EMENet: the per-frame backbone on every frame of a clip, then a GRU in each task head.

The paper's heads are GRUs of 128 units; their code recurred over the batch. Here each head's GRU
recurs over the frames of one clip or video segment:

  image (B, T, S, S, 3) --TimeDistributed(frame_net)--> embedding (B, T, D)
  --head_dropout--> GRU(128, return_sequences) per task (masked by frame_mask) --> Dense per task
  --> {"au": (B, T, 12), "expr": (B, T, 7), "va": (B, T, 2, 20)} logits

The model is built from objects and keeps them as attributes (as keras-hub's Backbone and Task
do): ``model.frame_net`` (image -> embedding, the layer names of ``build_emenet``'s backbone) and
``model.heads`` (``TemporalHeads``: [embedding sequence, frame_mask] -> logits, with its GRU layer
and logits layer of each task in ``heads.grus`` / ``heads.logits``). Training runs the backbone on
the present frames only, evaluation runs each video segment through the heads with its state
carried, and ``build_stream_step`` wires the same layers into one step for streaming. A masked
step (frame_mask 0) leaves every GRU state unchanged (Keras RNN masking); its output is never read.

Streaming step: inputs ``image`` (B, S, S, 3) and one state per task (B, 128); outputs the three
logits and each task's next state, computed with the GRU cell of the trained layer
(``reset_after=True``, Keras' default): plain matmuls, sigmoid and tanh, so TFLite converts it
with builtin ops only; unrolled over a sequence it gives exactly the GRU layer's outputs.
"""

from __future__ import annotations

from edge import contract
from emenet_tf._keras import keras, tf
from emenet_tf.labels import NUM_AU, NUM_EXPR, NUM_VA_BINS, TASKS
from emenet_tf.models.backbone import backbone
from emenet_tf.models.blocks import SeedSequence
from emenet_tf.models.emenet import INPUT_NAME, checked_spec

GRU_UNITS = 128  # the paper's GRU size in every head
FRAME_MASK = "frame_mask"
FRAME_NET = "frame_net"
HEADS_NET = "temporal_heads"
FRAMES_LAYER = "frames"  # the TimeDistributed wrapper of frame_net
OUTPUT_SIZES = {"au": NUM_AU, "expr": NUM_EXPR, "va": 2 * NUM_VA_BINS}
STATE_INPUTS = dict(zip(TASKS, contract.STATE_INPUTS, strict=True))  # the streaming step's state names
NEXT_STATES = dict(zip(TASKS, contract.STATE_OUTPUTS, strict=True))


def build_frame_net(spec, size: int, width: float, seeds: SeedSequence) -> keras.Model:
    """image (B, S, S, 3) in [0, 1] -> embedding (B, D): the per-frame EMENet backbone."""
    image = keras.Input(shape=(size, size, 3), dtype="float32", name=INPUT_NAME)
    feature = backbone(image, spec.blocks, width, spec.stem_filters, spec.last_filters, spec.embedding, seeds)
    return keras.Model(image, feature, name=FRAME_NET)


def _gru(task: str, units: int, seeds: SeedSequence) -> keras.layers.RNN:
    """A GRU layer over the time axis whose cell has a name of its own (``<task>_gru_cell``), so the
    streaming step can hold the three cells side by side."""
    cell = keras.layers.GRUCell(
        units,
        kernel_initializer=seeds.glorot(),
        recurrent_initializer=keras.initializers.Orthogonal(seed=seeds.next()),
        name=f"{task}_gru_cell",
    )
    return keras.layers.RNN(cell, return_sequences=True, name=f"{task}_gru")


def _logits_name(task: str) -> str:
    """Name of the layer giving a task's flat logits (VA's are reshaped to (2, 20) after it)."""
    return "va_logits" if task == "va" else task


class TemporalHeads(keras.Model):
    """[embedding (B, T, D), frame_mask (B, T)] -> logits (B, T, ...): per task a GRU, then a Dense.

    A functional model that keeps its parts as attributes: ``grus`` and ``logits`` ({task: layer}),
    ``dropout`` (``head_dropout``) and ``present`` (the mask as booleans).
    """

    def __init__(self, embedding: int, dropout: float, mc_dropout: bool, units: int, seeds: SeedSequence):
        feature = keras.Input(shape=(None, embedding), dtype="float32", name="embedding")
        mask = keras.Input(shape=(None,), dtype="float32", name=FRAME_MASK)
        present_layer = keras.layers.Lambda(lambda m: m > 0, name="present")
        drop = keras.layers.Dropout(dropout, seed=seeds.next(), name="head_dropout")
        present = present_layer(mask)
        # training=True is stored in the functional graph: the layer stays active at inference.
        x = drop(feature, training=True) if mc_dropout else drop(feature)
        grus, denses, out = {}, {}, {}
        for task in TASKS:
            grus[task] = _gru(task, units, seeds)
            denses[task] = keras.layers.Dense(
                OUTPUT_SIZES[task], kernel_initializer=seeds.glorot(), name=_logits_name(task)
            )
            out[task] = denses[task](grus[task](x, mask=present))
        out["va"] = keras.layers.Reshape((-1, 2, NUM_VA_BINS), name="va")(out["va"])
        super().__init__([feature, mask], out, name=HEADS_NET)
        self.grus, self.logits = grus, denses

    @property
    def units(self) -> int:
        """Units of each head's GRU (its state size)."""
        return int(self.grus[TASKS[0]].cell.units)


class TemporalEMENet(keras.Model):
    """{"image": (B, T, S, S, 3), "frame_mask": (B, T)} -> logits (B, T, ...): the backbone on every
    frame (TimeDistributed), then the GRU heads. Keeps ``frame_net`` and ``heads`` as attributes."""

    def __init__(self, frame_net: keras.Model, heads: TemporalHeads, size: int, name: str):
        image = keras.Input(shape=(None, size, size, 3), dtype="float32", name=INPUT_NAME)
        mask = keras.Input(shape=(None,), dtype="float32", name=FRAME_MASK)
        embedding = keras.layers.TimeDistributed(frame_net, name=FRAMES_LAYER)(image)
        super().__init__({INPUT_NAME: image, FRAME_MASK: mask}, heads([embedding, mask]), name=name)
        self.frame_net, self.heads = frame_net, heads


def build_temporal_emenet(
    variant: str = "small",
    image_size: int | None = None,
    dropout: float = 0.5,
    mc_dropout: bool = False,
    seed: int | None = None,
    units: int = GRU_UNITS,
    name: str | None = None,
) -> TemporalEMENet:
    """Temporal EMENet: {"image": (B, T, S, S, 3), "frame_mask": (B, T)} -> {"au", "expr", "va"} logits.

    T may differ between calls (clips in training, whole segments in evaluation). Arguments as
    ``build_emenet``'s; ``units``: the GRU size of each head. ``mc_dropout=True`` builds the same
    layers and weights with ``head_dropout`` active at inference.
    """
    spec, size, width = checked_spec(variant, image_size, dropout)
    seeds = SeedSequence(seed)
    frames = build_frame_net(spec, size, width, seeds)
    heads = TemporalHeads(spec.embedding, dropout, mc_dropout, units, seeds)
    return TemporalEMENet(frames, heads, size, name or f"temporal_emenet_{variant}")


def is_temporal(model: keras.Model) -> bool:
    """Whether ``model`` is a temporal EMENet."""
    return isinstance(model, TemporalEMENet)


def build_stream_step(model: TemporalEMENet) -> keras.Model:
    """One streaming step of a temporal EMENet, sharing its weights (inference: no dropout).

    Inputs ``image`` (B, S, S, 3) and ``h_au``, ``h_expr``, ``h_va`` (B, units); outputs
    ``au``, ``expr``, ``va`` logits (as ``build_emenet``'s) and ``next_h_<task>`` (B, units).
    A stream starts from zero states.
    """
    frames, heads = model.frame_net, model.heads
    size, units = int(frames.input.shape[1]), heads.units
    image = keras.Input(shape=(size, size, 3), dtype="float32", name=INPUT_NAME)
    states = {t: keras.Input(shape=(units,), dtype="float32", name=STATE_INPUTS[t]) for t in TASKS}
    embedding = frames(image)
    outputs = {}
    for task in TASKS:
        _, new = heads.grus[task].cell(embedding, [states[task]])
        new = new[0] if isinstance(new, (list, tuple)) else new
        outputs[NEXT_STATES[task]] = keras.layers.Identity(name=NEXT_STATES[task])(new)
        outputs[task] = heads.logits[task](new)
    outputs["va"] = keras.layers.Reshape((2, NUM_VA_BINS), name="va")(outputs["va"])
    inputs = {INPUT_NAME: image, **{STATE_INPUTS[t]: states[t] for t in TASKS}}
    return keras.Model(inputs, outputs, name=f"{model.name}_step")


def zero_states(batch: int, units: int) -> dict:
    """The state a stream starts from: zeros (batch, units) for each task, by input name."""
    return {STATE_INPUTS[t]: tf.zeros((batch, units), tf.float32) for t in TASKS}
