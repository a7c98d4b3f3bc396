"""Label spaces of Aff-Wild2 (ABAW2): names, orders, missing markers and the VA bins.

The one place that defines them; ``edge/`` keeps a copy in each model's metadata JSON instead
of importing this module.
"""

import numpy as np

AU_NAMES = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26")
EXPR_NAMES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
VA_NAMES = ("valence", "arousal")

NUM_AU = len(AU_NAMES)
AU_INDEX = {name: k for k, name in enumerate(AU_NAMES)}  # column of each AU in (N, 12) arrays
NUM_EXPR = len(EXPR_NAMES)
NUM_VA_BINS = 20
VA_BIN_EDGE_TOLERANCE = 1e-4  # in bin widths; see va_to_bin

AU_MISSING = -1
EXPR_MISSING = -1
VA_MISSING = -5.0

# Header line of each annotation file, as Aff-Wild2 writes it.
AU_HEADER = ",".join(AU_NAMES)
EXPR_HEADER = ",".join(EXPR_NAMES)
VA_HEADER = "valence,arousal"

# The tasks, in the order every loop over them takes (the synthetic benchmark's draws follow it),
# and the header line of each task's annotation files.
TASKS = ("au", "expr", "va")
HEADERS = {"au": AU_HEADER, "expr": EXPR_HEADER, "va": VA_HEADER}

# The Aff-Wild2 layout: <IMAGE_DIR>/<video>/<frame_name(k)>, <ANNOTATION_DIR>/<Task>_Set/<Split>_Set/<video>.txt
IMAGE_DIR = "cropped_aligned"
ANNOTATION_DIR = "annotations"


def frame_name(frame: int) -> str:
    """The canonical file name of 1-based frame ``frame``: five digits, e.g. 00001.jpg."""
    return f"{frame:05d}.jpg"


# Split folder names in annotations/<Task>_Set/ and the names used everywhere else.
SPLITS = {"train": "Train_Set", "validation": "Validation_Set"}
TASK_DIRS = {"au": "AU_Set", "expr": "EXPR_Set", "va": "VA_Set"}


def va_bin_edges(num_bins: int = NUM_VA_BINS) -> np.ndarray:
    """Edges of the equal-width VA bins over [-1, 1]: shape (num_bins + 1,)."""
    return np.linspace(-1.0, 1.0, num_bins + 1, dtype=np.float32)


def va_bin_centres(num_bins: int = NUM_VA_BINS) -> np.ndarray:
    """Centres of the VA bins: the value a bin stands for; expectation = sum_k p_k c_k."""
    edges = va_bin_edges(num_bins)
    return ((edges[:-1] + edges[1:]) / 2.0).astype(np.float32)


def va_to_bin(values: np.ndarray, num_bins: int = NUM_VA_BINS) -> np.ndarray:
    """Index of the bin holding each value in [-1, 1] (1.0 goes to the last bin).

    A value within VA_BIN_EDGE_TOLERANCE bin widths below an edge counts as on it: -0.4 lies on
    the edge of bins 5 and 6, but in binary floating point (-0.4 + 1) / 2 * 20 is 5.9999...,
    which floor would put in bin 5 (float32, in the TF twin ``losses.va_to_bin``, is off by up
    to ~2e-6 near 20). Annotations have 3 decimals: none lies closer than 0.01 widths below an
    edge, so the tolerance never moves a real value.
    """
    position = (np.asarray(values, np.float64) + 1.0) / 2.0 * num_bins
    idx = np.floor(position + VA_BIN_EDGE_TOLERANCE).astype(np.int64)
    return np.clip(idx, 0, num_bins - 1)
