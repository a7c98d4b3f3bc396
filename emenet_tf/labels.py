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
    """Index of the bin holding each value in [-1, 1] (1.0 goes to the last bin)."""
    idx = np.floor((np.asarray(values, np.float64) + 1.0) / 2.0 * num_bins).astype(np.int64)
    return np.clip(idx, 0, num_bins - 1)
