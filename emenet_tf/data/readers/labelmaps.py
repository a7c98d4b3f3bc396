"""The one table of label maps: each dataset's source classes, in source order, and where each lands.

Target EXPR order (emenet_tf.labels, Aff-Wild2): 0 Neutral, 1 Anger, 2 Disgust, 3 Fear, 4 Happiness,
5 Sadness, 6 Surprise. A class entry is (source name, target): the target is the project's EXPR index,
or, for a class outside the 7, the skip reason it is counted under (a string). The facts come from
each dataset's own documentation (class orders as its files write them); tests/test_readers.py checks
every entry against the class names.
"""

from __future__ import annotations

import numpy as np

# Source index i is entry i (the label written in the dataset's files, 0-based unless said).
FER2013 = (
    ("Angry", 1),
    ("Disgust", 2),
    ("Fear", 3),
    ("Happy", 4),
    ("Sad", 5),
    ("Surprise", 6),
    ("Neutral", 0),
)
EXPW = FER2013  # ExpW's label.lst uses the FER2013 order
# RAF-DB basic labels are 1-based (1 Surprise .. 7 Neutral): entry i is label i + 1.
RAFDB = (
    ("Surprise", 6),
    ("Fear", 3),
    ("Disgust", 2),
    ("Happiness", 4),
    ("Sadness", 5),
    ("Anger", 1),
    ("Neutral", 0),
)
AFFECTNET = (
    ("Neutral", 0),
    ("Happy", 4),
    ("Sad", 5),
    ("Surprise", 6),
    ("Fear", 3),
    ("Disgust", 2),
    ("Anger", 1),
    ("Contempt", "contempt"),
    ("None", "none"),
    ("Uncertain", "uncertain"),
    ("No-Face", "no_face"),
)
# FER+ vote columns of fer2013new.csv, in file order.
FERPLUS = (
    ("neutral", 0),
    ("happiness", 4),
    ("surprise", 6),
    ("sadness", 5),
    ("anger", 1),
    ("disgust", 2),
    ("fear", 3),
    ("contempt", "contempt"),
    ("unknown", "unknown"),
    ("NF", "no_face"),
)
MAPS = {"fer2013": FER2013, "expw": EXPW, "rafdb": RAFDB, "affectnet": AFFECTNET, "ferplus": FERPLUS}

# The folder reader's class names (compared lower-cased), and its classes outside the 7. An index 0-6
# (Aff-Wild2 order) is accepted too.
FOLDER = {
    "neutral": 0,
    "anger": 1,
    "angry": 1,
    "disgust": 2,
    "fear": 3,
    "happiness": 4,
    "happy": 4,
    "sadness": 5,
    "sad": 5,
    "surprise": 6,
}
FOLDER_NOT_EXPRESSION = {
    "contempt": "contempt",
    "none": "none",
    "uncertain": "uncertain",
    "no-face": "no_face",
    "no_face": "no_face",
    "noface": "no_face",
}

# DISFA codes 12 AUs; the 8 below are among the project's 12 (DISFA AU number -> column of
# labels.AU_NAMES). AU5, AU9, AU17 and AU20 are not; the project's AU7, AU10, AU23, AU24 stay masked.
DISFA_AUS = (1, 2, 4, 5, 6, 9, 12, 15, 17, 20, 25, 26)
DISFA = {1: 0, 2: 1, 4: 2, 6: 3, 12: 6, 15: 7, 25: 10, 26: 11}


def targets(dataset: str) -> np.ndarray:
    """(classes,) int64: the EXPR index of each source class of ``dataset``, -1 outside the 7."""
    return np.array([t if isinstance(t, int) else -1 for _, t in MAPS[dataset]], np.int64)


def reasons(dataset: str) -> dict[int, str]:
    """{source index: skip reason} of ``dataset``'s classes outside the 7."""
    return {i: t for i, (_, t) in enumerate(MAPS[dataset]) if isinstance(t, str)}


def folder_class(name: str) -> int | str | None:
    """The folder reader's reading of an expression name or index: 0-6, a skip reason, or None."""
    key = name.strip().lower()
    if key in FOLDER:
        return FOLDER[key]
    if key in FOLDER_NOT_EXPRESSION:
        return FOLDER_NOT_EXPRESSION[key]
    if key.isdigit() and key.isascii() and int(key) <= 6:
        return int(key)
    return None
