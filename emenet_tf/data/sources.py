"""What ``--data`` names: the datasets a run trains on, each read by its reader into one masked FrameIndex.

  --data synthetic                          the built-in benchmark (default; settings --synthetic_*)
  --data affwild2:/data/Aff-Wild2           one dataset
  --data affwild2:/data/aw2,ferplus:/data/ferplus:0.5,folder:/photos/labels.csv
                                            several: NAME:PATH[:WEIGHT], comma-separated

NAME is a reader (``READERS``); PATH its copy of the dataset as distributed (each reader's module says
which file or folder); WEIGHT (default 1) scales how often the dataset's training frames are drawn:
a dataset of N frames is drawn in proportion to WEIGHT x N. A path may not contain a comma. Parsing
needs no TensorFlow and no dataset: ``parse`` checks the syntax and the names, ``check`` the paths.
"""

from __future__ import annotations

import dataclasses
import math
import os

from emenet_tf.errors import ConfigError

SYNTHETIC = "synthetic"
# reader name -> (module under emenet_tf.data, what PATH is). A reader module has
# ``read(path, work_dir, skip_bad_labels) -> {"train": FrameIndex, "validation": FrameIndex}`` and may
# have ``check_path(path)`` (a one-line error when PATH is not that dataset, before anything is written).
READERS = {
    "synthetic": ("affwild2", "no path: the benchmark is generated into the run folder"),
    "affwild2": ("affwild2", "the folder holding cropped_aligned/ and annotations/"),
    "fer2013": (
        "readers.fer2013",
        "fer2013.csv (emotion,pixels,Usage), or the folder holding it or train.csv/test.csv",
    ),
    "ferplus": (
        "readers.ferplus",
        "the folder holding fer2013new.csv (fer2013.csv beside it or in its parent)",
    ),
    "rafdb": ("readers.rafdb", "RAF-DB's basic folder (EmoLabel/list_patition_label.txt, Image/aligned/)"),
    "affectnet": (
        "readers.affectnet",
        "the folder holding training.csv and validation.csv, or train_set/ and val_set/",
    ),
    "expw": ("readers.expw", "the ExpW folder (label/label.lst, image/origin/)"),
    "disfa": ("readers.disfa", "the DISFA folder (ActionUnit_Labels/, Videos_LeftCamera/)"),
    "afew_va": ("readers.afew_va", "the AFEW-VA folder of clips (<clip>/<clip>.json and its frames)"),
    "folder": (
        "readers.folder",
        "a labels CSV (path, expr, AU1..AU26, valence, arousal, split) or a folder of class sub-folders",
    ),
}
RESAMPLE_SHARE = 0.8  # --train_resample_seed: the share of training identities kept
FLAG_HELP = (
    "The data: 'synthetic' (the built-in benchmark), or NAME:PATH[:WEIGHT],... with NAME one of the "
    "readers (emenet_tf.data.sources.READERS: e.g. affwild2:/data/Aff-Wild2). WEIGHT scales how often a "
    "dataset's frames are drawn in training (default 1)."
)


@dataclasses.dataclass(frozen=True)
class Source:
    """One dataset of ``--data``: its reader, its path (None for the benchmark), its sampling weight."""

    name: str
    path: str | None = None
    weight: float = 1.0

    def spec(self) -> str:
        """Back to ``NAME[:PATH][:WEIGHT]``."""
        parts = [self.name] + ([self.path] if self.path else [])
        return ":".join(parts + ([f"{self.weight:g}"] if self.weight != 1.0 else []))


def parse(spec: str) -> tuple[Source, ...]:
    """The datasets of a ``--data`` value, in order; ConfigError naming the entry that is wrong."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"--data is empty; give 'synthetic' or NAME:PATH (readers: {', '.join(READERS)})")
    out = [_entry(entry.strip(), spec) for entry in spec.split(",")]
    if len({(s.name, s.path) for s in out}) != len(out):
        raise ConfigError(f"--data {spec!r} names one dataset twice")
    if sum(s.name == SYNTHETIC for s in out) > 1:
        raise ConfigError(f"--data {spec!r} names the synthetic benchmark twice")
    return tuple(out)


def _entry(entry: str, spec: str) -> Source:
    name, _, rest = entry.partition(":")
    if name not in READERS:
        raise ConfigError(f"--data entry {entry!r}: unknown dataset {name!r}; readers: {', '.join(READERS)}")
    path, weight = rest, 1.0
    head, _, last = rest.rpartition(":")
    if head and _is_number(last):
        path, weight = head, float(last)
    elif name == SYNTHETIC and _is_number(rest):
        path, weight = "", float(rest)
    if not (math.isfinite(weight) and weight > 0):
        raise ConfigError(f"--data entry {entry!r}: the weight must be a number > 0, got {weight}")
    if name == SYNTHETIC:
        if path:
            raise ConfigError(
                f"--data entry {entry!r}: the synthetic benchmark takes no path (--synthetic_*)"
            )
        return Source(name, None, weight)
    if not path:
        raise ConfigError(
            f"--data entry {entry!r}: give the dataset's path, {name}:PATH ({READERS[name][1]})"
        )
    return Source(name, path, weight)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def absolute(spec: str) -> str:
    """``spec`` with every path made absolute (a run must not depend on its current directory)."""
    return ",".join(
        dataclasses.replace(s, path=os.path.abspath(s.path) if s.path else s.path).spec() for s in parse(spec)
    )


def check(spec: str) -> None:
    """ConfigError unless every dataset's path exists (before anything is written or TensorFlow loads)."""
    for source in parse(spec):
        if source.path is not None and not os.path.exists(source.path):
            raise ConfigError(f"--data {source.name}:{source.path}: no such file or folder")
        reader_check = getattr(reader(source.name), "check_path", None)
        if reader_check is not None and source.path is not None:
            reader_check(source.path)


def reader(name: str):
    """The reader module of dataset ``name``."""
    import importlib

    return importlib.import_module(f"emenet_tf.data.{READERS[name][0]}")


def labels(datasets: tuple[Source, ...]) -> list[str]:
    """How each dataset is named in reports and in the run folder: its reader's name, numbered
    (``folder``, ``folder-2``) when one reader reads several copies."""
    out, seen = [], {}
    for s in datasets:
        seen[s.name] = seen.get(s.name, 0) + 1
        out.append(s.name if seen[s.name] == 1 else f"{s.name}-{seen[s.name]}")
    return out


def load_splits(
    datasets: tuple[Source, ...],
    synthetic_dir: str,
    work_dir: str,
    skip_bad_labels: bool = False,
    resample_seed: int | None = None,
) -> tuple[dict, dict]:
    """({"train": FrameIndex, "validation": FrameIndex} over every dataset, data summary).

    synthetic_dir: where the run's synthetic benchmark lies; work_dir: where readers that must write
    (face crops, decoded pixels) write, one folder per dataset. The summary is {split: FrameIndex
    summary}, with a ``datasets`` entry per split when there are several. ``resample_seed``: keep a
    seeded RESAMPLE_SHARE of the training identities (``index.resample``).
    """
    from emenet_tf.data.index import concat, resample

    per = {}
    for label, source in zip(labels(datasets), datasets, strict=True):
        path = synthetic_dir if source.name == SYNTHETIC else source.path
        per[label] = reader(source.name).read(path, os.path.join(work_dir, label), skip_bad_labels)
    splits = {
        split: concat({label: p[split] for label, p in per.items()}) for split in ("train", "validation")
    }
    if resample_seed is not None:
        splits["train"] = resample(splits["train"], resample_seed, RESAMPLE_SHARE)
    summary = {split: index.summary() for split, index in splits.items()}
    if len(per) > 1:
        for split in summary:
            summary[split]["datasets"] = {label: p[split].summary() for label, p in per.items()}
    return splits, summary


def aff_wild2_folders(datasets: tuple[Source, ...], synthetic_dir: str) -> dict[str, str]:
    """{dataset label: folder} of the datasets in the Aff-Wild2 layout (the synthetic benchmark and
    ``affwild2:PATH``): where a benchmark's extras lie (``ood/``, ``synthetic_truth/``) when there are any."""
    return {
        label: synthetic_dir if s.name == SYNTHETIC else s.path
        for label, s in zip(labels(datasets), datasets, strict=True)
        if READERS[s.name][0] == "affwild2"
    }


def weights(datasets: tuple[Source, ...]) -> dict[str, float]:
    """{dataset label: sampling weight}."""
    return dict(zip(labels(datasets), (s.weight for s in datasets), strict=True))
