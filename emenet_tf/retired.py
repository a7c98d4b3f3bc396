"""Retired options: what replaced each one, for the command lines and for config.json files of older runs.

Options that served one experiment and lost were retired (research/README.md lists the
experiments and their results). A command line that still gives one stops with one line saying
what replaced it (``refused_flags``). A config.json written before a change is read with its
documented meaning (``upgrade``): an old layout is mapped onto the new fields, and a retired field
that holds the one behaviour that remains is dropped; one that asks for a retired behaviour is
refused in one line naming the file.
"""

from __future__ import annotations

from emenet_tf.errors import ConfigError

_RESEARCH = "research/README.md"

# flag -> what replaced it (the CLI's one line after "--<flag> was retired: ").
FLAGS = {
    "temporal_head": f"the GRU head is the temporal head (the residual head gained nothing on degraded "
    f"frames and its stream step was 1.31x slower; {_RESEARCH})",
    "dirichlet_target": "the Dirichlet student learns every member's probabilities (EnD^2); the proxy "
    f"target was never measured better ({_RESEARCH})",
    "ood_score": "ensembles and MC Dropout are scored by their epistemic uncertainty (mutual "
    f"information); the total-uncertainty score was a diagnostic ({_RESEARCH})",
    "quantize": "int8 models keep their task heads and post-processing float (the one mode left; "
    f"fully int8 post-processing flipped near-tie decisions, {_RESEARCH})",
    "float_backbone": "export keeps leading backbone stages float only when int8 misses a parity target "
    "(automatic, up to export.convert.FLOAT_BACKBONE_MAX stages)",
    "float_backbone_max": "the automatic search stops at export.convert.FLOAT_BACKBONE_MAX stages",
}
# --flag=value pairs retired while the flag stays.
VALUES = {
    ("preset", "paper_method"): "--hard_label_weight 0 --teacher_calibration none (the paper's distillation "
    f"at the demo's settings; {_RESEARCH})",
}
# config.json fields that were retired: the value that means the behaviour kept (dropped on reading).
_KEPT = {"temporal_head": "gru", "dirichlet_target": "members", "ood_score": "epistemic"}
# Old flat synthetic fields -> SyntheticConfig field, and what None meant then (the generator's default).
_SYNTHETIC = {
    "synthetic_seed": ("seed", 0),
    "synthetic_train_videos": ("train_videos", 24),
    "synthetic_val_videos": ("val_videos", 6),
    "synthetic_frames_per_video": ("frames_per_video", 150),
    "synthetic_degraded_frames": ("degraded_frames", 0.0),
}


def refused_flags(argv: list[str]) -> str | None:
    """One line for the first retired flag or value in ``argv`` (None: none given)."""
    for arg in argv[1:]:
        if not arg.startswith("-"):
            continue
        name, _, value = arg.lstrip("-").partition("=")
        bare = name[2:] if name.startswith("no") and name[2:] in FLAGS else name
        if bare in FLAGS:
            return f"--{bare} was retired: {FLAGS[bare]}"
        if (name, value) in VALUES:
            return f"--{name}={value} was retired: use {VALUES[(name, value)]}"
    return None


def upgrade(values: dict, path: str) -> dict:
    """A config dict of any earlier layout, in the current one; ConfigError for a retired behaviour."""
    values = dict(values)
    for name, kept in _KEPT.items():
        if name in values and values.pop(name) != kept:
            raise ConfigError(
                f"{path}: this run used --{name} other than {kept!r}, which was retired: {FLAGS[name]}. "
                f'Set "{name}" to {kept!r} in the file to use the run with what remains'
            )
    if values.get("preset") == "paper_method":
        values["preset"] = "demo"  # its values are in the file; the preset only named them
    if "data_dir" in values:
        data_dir = values.pop("data_dir")
        values.setdefault("data", f"affwild2:{data_dir}" if data_dir else "synthetic")
    synthetic = dict(values.get("synthetic") or {})
    for old, (new, default) in _SYNTHETIC.items():
        if old in values:
            value = values.pop(old)
            synthetic.setdefault(new, default if value is None else value)
    if synthetic:
        values["synthetic"] = synthetic
    return values
