"""Temporal EMENet: the per-frame backbone on every frame of a clip, then a GRU in each task head.

The paper's heads are GRUs of 128 units; their code recurred over the batch. Here each head's GRU
recurs over the frames of one clip or video segment:

  image (B, T, S, S, 3) --TimeDistributed(frame_net)--> embedding (B, T, D)
  --head_dropout--> GRU(128, return_sequences) per task (masked by frame_mask) --> Dense per task
  --> {"au": (B, T, 12), "expr": (B, T, 7), "va": (B, T, 2, 20)} logits

That is the ``gru`` head (``--temporal_head gru``). The ``residual`` head adds to that Dense, which
starts at zero, the per-frame model's head on the frame's own embedding (Dense(hidden) + ReLU ->
Dense): training starts from a per-frame model and the GRU learns what earlier frames add.

``frame_net`` (image -> embedding, the layer names of ``build_emenet``'s backbone) and
``heads_net`` ([embedding sequence, frame_mask] -> logits) are sub-models of the returned model
(``frame_net(model)``, ``heads_net(model)``): training runs the backbone on the present frames
only, evaluation runs each video segment through the heads with its state carried, and
``build_stream_step`` wires the same layers into one step for streaming. A masked step
(frame_mask 0) leaves every GRU state unchanged (Keras RNN masking); its output is never read (the
``gru`` head repeats the last one, the ``residual`` head's per-frame part sees the masked image).

Streaming step: inputs ``image`` (B, S, S, 3) and one state per task (B, 128); outputs the three
logits and each task's next state, computed with the GRU cell of the trained layer
(``reset_after=True``, Keras' default): plain matmuls, sigmoid and tanh, so TFLite converts it
with builtin ops only; unrolled over a sequence it gives exactly the GRU layer's outputs.
"""

from __future__ import annotations

from edge import contract
from emenet_tf._keras import keras, tf
from emenet_tf.config import TEMPORAL_HEADS as HEADS  # a task's logits: GRU alone, or per-frame + GRU
from emenet_tf.errors import ConfigError
from emenet_tf.labels import NUM_AU, NUM_EXPR, NUM_VA_BINS, TASKS
from emenet_tf.models.backbone import backbone
from emenet_tf.models.blocks import SeedSequence
from emenet_tf.models.emenet import INPUT_NAME, checked_spec
from emenet_tf.models.heads import dense_head

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


def _task_logits(task: str, x, h, head: str, hidden: int, seeds: SeedSequence, layers=None):
    """One task's logits from the frame's feature ``x`` and its GRU output ``h`` (any leading axes).

    ``gru``: Dense(h). ``residual``: the per-frame head on ``x`` (``heads.dense_head``, layers
    ``<task>_frame_hidden``, ``<task>_frame``) plus Dense(h) (``<task>_recurrent``, zero-initialised:
    training starts from the per-frame model and the GRU learns what time adds). ``layers``: the
    trained heads sub-model whose layers to reuse (the streaming step); None builds new ones.
    """
    name = _logits_name(task)
    if head == "gru":
        dense = (
            layers.get_layer(name)
            if layers is not None
            else keras.layers.Dense(OUTPUT_SIZES[task], kernel_initializer=seeds.glorot(), name=name)
        )
        return dense(h)
    if layers is not None:
        frame = _frame_logits(layers, task, x)
        recurrent = layers.get_layer(f"{task}_recurrent")(h)
        return layers.get_layer(name)([frame, recurrent])
    frame = dense_head(x, hidden, OUTPUT_SIZES[task], f"{task}_frame", seeds)
    recurrent = keras.layers.Dense(OUTPUT_SIZES[task], kernel_initializer="zeros", name=f"{task}_recurrent")(
        h
    )
    return keras.layers.Add(name=name)([frame, recurrent])


def build_heads_net(
    embedding: int,
    dropout: float,
    mc_dropout: bool,
    units: int,
    seeds: SeedSequence,
    head: str = "gru",
    hidden: int = 0,
) -> keras.Model:
    """[embedding (B, T, D), frame_mask (B, T)] -> logits (B, T, ...) through one GRU per task
    (``head``, ``hidden``: see ``_task_logits``)."""
    feature = keras.Input(shape=(None, embedding), dtype="float32", name="embedding")
    mask = keras.Input(shape=(None,), dtype="float32", name=FRAME_MASK)
    present = keras.layers.Lambda(lambda m: m > 0, name="present")(mask)
    drop = keras.layers.Dropout(dropout, seed=seeds.next(), name="head_dropout")
    # training=True is stored in the functional graph: the layer stays active at inference.
    x = drop(feature, training=True) if mc_dropout else drop(feature)
    out = {}
    for task in TASKS:
        h = _gru(task, units, seeds)(x, mask=present)
        out[task] = _task_logits(task, x, h, head, hidden, seeds)
    out["va"] = keras.layers.Reshape((-1, 2, NUM_VA_BINS), name="va")(out["va"])
    return keras.Model([feature, mask], out, name=HEADS_NET)


def build_temporal_emenet(
    variant: str = "small",
    image_size: int | None = None,
    dropout: float = 0.5,
    mc_dropout: bool = False,
    seed: int | None = None,
    units: int = GRU_UNITS,
    name: str | None = None,
    head: str = "gru",
) -> keras.Model:
    """Temporal EMENet: {"image": (B, T, S, S, 3), "frame_mask": (B, T)} -> {"au", "expr", "va"} logits.

    T may differ between calls (clips in training, whole segments in evaluation). Arguments as
    ``build_emenet``'s; ``units``: the GRU size of each head. ``mc_dropout=True`` builds the same
    layers and weights with ``head_dropout`` active at inference. ``head``: a key of ``HEADS``.
    """
    if head not in HEADS:
        raise ConfigError(f"temporal head must be one of {HEADS}, got {head!r}")
    spec, size, width = checked_spec(variant, image_size, dropout)
    seeds = SeedSequence(seed)
    frames = build_frame_net(spec, size, width, seeds)
    heads = build_heads_net(spec.embedding, dropout, mc_dropout, units, seeds, head, spec.head_units)
    image = keras.Input(shape=(None, size, size, 3), dtype="float32", name=INPUT_NAME)
    mask = keras.Input(shape=(None,), dtype="float32", name=FRAME_MASK)
    embedding = keras.layers.TimeDistributed(frames, name=FRAMES_LAYER)(image)
    outputs = heads([embedding, mask])
    return keras.Model(
        {INPUT_NAME: image, FRAME_MASK: mask}, outputs, name=name or f"temporal_emenet_{variant}"
    )


def is_temporal(model: keras.Model) -> bool:
    """Whether ``model`` is a temporal EMENet (it has the heads sub-model)."""
    return any(layer.name == HEADS_NET for layer in model.layers)


def frame_net(model: keras.Model) -> keras.Model:
    """The per-frame backbone of a temporal EMENet (shares its weights)."""
    return model.get_layer(FRAMES_LAYER).layer


def heads_net(model: keras.Model) -> keras.Model:
    """The GRU heads of a temporal EMENet (shares its weights)."""
    return model.get_layer(HEADS_NET)


def frame_heads(model: keras.Model) -> keras.Model:
    """The per-frame part of a ``residual`` temporal EMENet's heads (shares its weights):
    embedding (B, T, D) -> logits (B, T, ...) from each frame's own embedding, no GRU."""
    heads = heads_net(model)
    feature = keras.Input(shape=(None, int(heads.inputs[0].shape[-1])), dtype="float32", name="embedding")
    out = _parts(heads, heads.get_layer("head_dropout")(feature), None)
    return keras.Model(feature, {t: out[f"{t}_frame"] for t in TASKS}, name=f"{model.name}_frame_heads")


def residual_parts(model: keras.Model) -> keras.Model:
    """The two terms of a ``residual`` temporal EMENet's logits (shares its weights): [embedding
    (B, T, D), frame_mask (B, T)] -> ``<task>_frame`` (the per-frame heads) and ``<task>_recurrent``
    (the Dense on the GRU), each (B, T, ...), from one dropout of the embedding; their sum is the
    model's logits."""
    heads = heads_net(model)
    feature = keras.Input(shape=(None, int(heads.inputs[0].shape[-1])), dtype="float32", name="embedding")
    mask = keras.Input(shape=(None,), dtype="float32", name=FRAME_MASK)
    present = heads.get_layer("present")(mask)
    out = _parts(heads, heads.get_layer("head_dropout")(feature), present)
    return keras.Model([feature, mask], out, name=f"{model.name}_residual_parts")


def _frame_logits(heads: keras.Model, task: str, x):
    """A ``residual`` head's per-frame term: its trained ``<task>_frame_hidden`` -> ``<task>_frame`` on ``x``."""
    return heads.get_layer(f"{task}_frame")(heads.get_layer(f"{task}_frame_hidden")(x))


def _parts(heads: keras.Model, x, present) -> dict:
    """``<task>_frame`` logits of the dropped-out embedding ``x`` and, given ``present``, the GRU's
    ``<task>_recurrent`` ones (VA's reshaped to (2, 20))."""
    out = {}
    for task in TASKS:
        out[f"{task}_frame"] = _frame_logits(heads, task, x)
        if present is not None:
            h = heads.get_layer(f"{task}_gru")(x, mask=present)
            out[f"{task}_recurrent"] = heads.get_layer(f"{task}_recurrent")(h)
    for key in [k for k in out if k.startswith("va_")]:
        out[key] = keras.layers.Reshape((-1, 2, NUM_VA_BINS), name=f"{key}_bins")(out[key])
    return out


def per_frame_part(model: keras.Model) -> keras.Model:
    """A ``residual`` temporal EMENet's per-frame part as an EMENet: image (B, S, S, 3) -> logits,
    the backbone and the per-frame heads (shares their weights; no GRU)."""
    frames, heads = frame_net(model), frame_heads(model)
    image = keras.Input(shape=frames.input.shape[1:], dtype="float32", name=INPUT_NAME)
    one_step = keras.layers.Reshape((1, -1), name="one_step")(frames(image))
    out = heads(one_step)
    flat = {t: keras.layers.Reshape(v.shape[2:], name=f"{t}_frame_logits")(v) for t, v in out.items()}
    return keras.Model(image, flat, name=f"{model.name}_per_frame_part")


def head_kind(model: keras.Model) -> str:
    """Which of ``HEADS`` a temporal EMENet's task heads are."""
    return (
        "residual" if f"{TASKS[0]}_recurrent" in {layer.name for layer in heads_net(model).layers} else "gru"
    )


def state_size(model: keras.Model) -> int:
    """Units of each head's GRU (its state size)."""
    return int(heads_net(model).get_layer(f"{TASKS[0]}_gru").cell.units)


def build_stream_step(model: keras.Model) -> keras.Model:
    """One streaming step of a temporal EMENet, sharing its weights (inference: no dropout).

    Inputs ``image`` (B, S, S, 3) and ``h_au``, ``h_expr``, ``h_va`` (B, units); outputs
    ``au``, ``expr``, ``va`` logits (as ``build_emenet``'s) and ``next_h_<task>`` (B, units).
    A stream starts from zero states.
    """
    frames, heads = frame_net(model), heads_net(model)
    size, units = int(frames.input.shape[1]), state_size(model)
    image = keras.Input(shape=(size, size, 3), dtype="float32", name=INPUT_NAME)
    states = {t: keras.Input(shape=(units,), dtype="float32", name=STATE_INPUTS[t]) for t in TASKS}
    embedding = frames(image)
    head = head_kind(model)
    outputs = {}
    for task in TASKS:
        _, new = heads.get_layer(f"{task}_gru").cell(embedding, [states[task]])
        new = new[0] if isinstance(new, (list, tuple)) else new
        outputs[NEXT_STATES[task]] = keras.layers.Identity(name=NEXT_STATES[task])(new)
        outputs[task] = _task_logits(task, embedding, new, head, 0, None, layers=heads)
    outputs["va"] = keras.layers.Reshape((2, NUM_VA_BINS), name="va")(outputs["va"])
    inputs = {INPUT_NAME: image, **{STATE_INPUTS[t]: states[t] for t in TASKS}}
    return keras.Model(inputs, outputs, name=f"{model.name}_step")


def zero_states(batch: int, units: int) -> dict:
    """The state a stream starts from: zeros (batch, units) for each task, by input name."""
    return {STATE_INPUTS[t]: tf.zeros((batch, units), tf.float32) for t in TASKS}
