"""absl flags derived from ``TrainConfig``'s fields: one set of defaults, one help text each.

``define_config_flags()`` defines one flag per field (type from the annotation, default and help
from the field); ``config_from_flags()`` builds the config from the ``--preset``'s values,
overridden by the flags given on the command line. Flags are defined by a call, never as a side
effect of importing this module.
"""

from __future__ import annotations

import dataclasses
import os
import typing

from absl import flags

from emenet_tf.config import PRESETS, TrainConfig, make_config

PATH_FIELDS = ("workdir", "data_dir", "backbone_weights")  # made absolute: a run must not depend on its cwd


def _base_type(annotation) -> type:
    """int for ``int | None``, str for ``str``, ..."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def define_config_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Define one flag per TrainConfig field on ``flag_values`` (skipping flags already defined)."""
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name in flag_values:
            continue
        kind = _base_type(hints[field.name])
        help_text = field.metadata["help"]
        if field.name == "preset":
            flags.DEFINE_enum(field.name, field.default, list(PRESETS), help_text, flag_values=flag_values)
        elif "choices" in field.metadata:
            flags.DEFINE_enum(
                field.name, field.default, list(field.metadata["choices"]), help_text, flag_values=flag_values
            )
        elif kind is bool:
            flags.DEFINE_bool(field.name, field.default, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(field.name, field.default, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(field.name, field.default, help_text, flag_values=flag_values)
        elif kind is str:
            flags.DEFINE_string(field.name, field.default, help_text, flag_values=flag_values)
        else:  # a field of a type the command line cannot carry: a programming error
            raise TypeError(f"TrainConfig.{field.name}: no flag type for {kind!r}")


def explicit_flags(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """{field: value} of the TrainConfig flags given on the command line (paths made absolute)."""
    out = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name != "preset" and flag_values[field.name].present:
            value = flag_values[field.name].value
            if field.name in PATH_FIELDS and value:
                value = os.path.abspath(value)
            out[field.name] = value
    return out


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS, **overrides) -> TrainConfig:
    """The config: the preset's values, then the flags given, then ``overrides``."""
    values = {**explicit_flags(flag_values), **overrides}
    values.setdefault("workdir", os.path.abspath(flag_values["workdir"].value))
    return make_config(flag_values["preset"].value, **values)
