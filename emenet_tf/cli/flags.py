"""absl flags derived from the config dataclasses: one set of defaults, one help text each; one-line errors.

``define_config_flags()`` defines one flag per ``TrainConfig`` field (type from the annotation,
default and help from the field) and ``--synthetic_<name>`` per ``SyntheticConfig`` field;
``config_from_flags()`` builds the config from the ``--preset``'s values, overridden by the flags
given on the command line. ``--data_dir PATH`` is read as ``--data affwild2:PATH``. Flags are
defined by a call, never as a side effect of importing this module. ``run(main, prog)`` parses the
command line and turns every flag error (an unknown flag, a bad value, a retired option) into one
line ``prog: error: ...`` and exit status 2.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing

from absl import app, flags

from emenet_tf import retired
from emenet_tf.config import PRESETS, TrainConfig, make_config
from emenet_tf.data import sources
from emenet_tf.data.synthetic_config import SyntheticConfig
from emenet_tf.errors import ConfigError

PATH_FIELDS = ("workdir", "backbone_weights")  # made absolute: a run must not depend on its cwd
SYNTHETIC_PREFIX = "synthetic_"


def _base_type(annotation) -> type:
    """int for ``int | None``, str for ``str``, ..."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def define_dataclass_flags(
    cls, prefix: str = "", flag_values: flags.FlagValues = flags.FLAGS, skip=()
) -> None:
    """One flag ``--<prefix><field>`` per field of the dataclass ``cls`` (those already defined, and
    ``skip``, are left alone): type from the annotation, default and help from the field."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        name = prefix + field.name
        if name in flag_values or field.name in skip:
            continue
        kind = _base_type(hints[field.name])
        help_text = field.metadata["help"]
        default = field.default
        choices = list(PRESETS) if name == "preset" else field.metadata.get("choices")
        if choices is not None:
            flags.DEFINE_enum(name, default, list(choices), help_text, flag_values=flag_values)
        elif kind is bool:
            flags.DEFINE_bool(name, default, help_text, flag_values=flag_values)
        elif kind is int:
            flags.DEFINE_integer(name, default, help_text, flag_values=flag_values)
        elif kind is float:
            flags.DEFINE_float(name, default, help_text, flag_values=flag_values)
        elif kind is str:
            flags.DEFINE_string(name, default, help_text, flag_values=flag_values)
        else:  # a field of a type the command line cannot carry: a programming error
            raise TypeError(f"{cls.__name__}.{field.name}: no flag type for {kind!r}")


def define_config_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """TrainConfig's flags, the synthetic benchmark's ``--synthetic_*`` and ``--data_dir``."""
    define_dataclass_flags(TrainConfig, flag_values=flag_values, skip=("synthetic",))
    define_dataclass_flags(SyntheticConfig, SYNTHETIC_PREFIX, flag_values)
    if "data_dir" not in flag_values:
        flags.DEFINE_string(
            "data_dir", None, "An Aff-Wild2 root: the same as --data affwild2:PATH.", flag_values=flag_values
        )


def explicit_values(cls, prefix: str = "", flag_values: flags.FlagValues = flags.FLAGS, skip=()) -> dict:
    """{field: value} of the dataclass flags given on the command line."""
    return {
        f.name: flag_values[prefix + f.name].value
        for f in dataclasses.fields(cls)
        if f.name not in skip and flag_values[prefix + f.name].present
    }


def explicit_flags(flag_values: flags.FlagValues = flags.FLAGS) -> dict:
    """{field: value} of the TrainConfig flags given on the command line (paths made absolute)."""
    out = explicit_values(TrainConfig, flag_values=flag_values, skip=("synthetic", "preset"))
    for name in PATH_FIELDS:
        if out.get(name):
            out[name] = os.path.abspath(out[name])
    if flag_values["data_dir"].present and flag_values["data_dir"].value:
        if "data" in out:
            raise ConfigError("give --data or --data_dir, not both")
        out["data"] = f"affwild2:{flag_values['data_dir'].value}"
    if "data" in out:
        out["data"] = sources.absolute(out["data"])
    synthetic = explicit_values(SyntheticConfig, SYNTHETIC_PREFIX, flag_values)
    if synthetic:
        out["synthetic"] = SyntheticConfig(**synthetic)
    return out


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS, **overrides) -> TrainConfig:
    """The config: the preset's values, then the flags given, then ``overrides``."""
    values = {**explicit_flags(flag_values), **overrides}
    values.setdefault("workdir", os.path.abspath(flag_values["workdir"].value))
    return make_config(flag_values["preset"].value, **values)


def error(prog: str, message: str) -> int:
    """Print ``prog: error: message`` (one line) to stderr; the exit status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def run(main, prog: str) -> None:
    """``app.run(main)`` with one-line flag errors: a retired option, an unknown flag or a bad value
    prints ``prog: error: ...`` and exits 2 (absl's own report is several lines)."""

    def parse(argv):
        message = retired.refused_flags(argv)
        if message is not None:
            sys.exit(error(prog, message))
        try:
            return flags.FLAGS(argv)
        except flags.Error as err:
            sys.exit(error(prog, f"{err} (--helpfull lists the flags)"))

    app.run(main, flags_parser=parse)
