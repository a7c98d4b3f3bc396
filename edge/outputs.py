"""Where the edge CLI's results go besides stdout: the ``--csv`` rows and the ``--draw`` pictures."""

import csv
import os

from edge.draw import VIDEO_CODECS, Drawing
from edge.images import IMAGE_EXTENSIONS


def draw_file(path: str) -> str | None:
    """What a --draw path names by its extension: "video" (.avi, .mp4), "image" (an image
    extension) or None (a folder: one picture per input). ``edge.predict`` allows a file only for
    one input."""
    ext = os.path.splitext(path)[1].lower()
    return "video" if ext in VIDEO_CODECS else "image" if ext in IMAGE_EXTENSIONS else None


class Outputs:
    """Where results go besides stdout: the --csv file (one row per face, its header from the first
    row) and the --draw pictures (one file, or one per input in a folder)."""

    def __init__(self, args):
        self.csv_path, self.draw_path = args.csv, args.draw
        self._csv_file = self._writer = None
        self.draw_folder = self.draw_path is not None and draw_file(self.draw_path) is None
        if self.draw_folder:
            os.makedirs(self.draw_path, exist_ok=True)

    def row(self, result) -> None:
        if self.csv_path is None:
            return
        row = result.csv_row()
        if self._writer is None:
            self._csv_file = open(self.csv_path, "w", newline="")  # noqa: SIM115  (closed by close())
            self._writer = csv.DictWriter(self._csv_file, fieldnames=list(row), extrasaction="ignore")
            self._writer.writeheader()
        self._writer.writerow(row)
        self._csv_file.flush()

    def drawing(self, source: str, video: bool, fps=None):
        """A Drawing for ``source`` (None without --draw): the --draw file, or a file named after the
        input inside the --draw folder (.avi for videos, .png for images)."""
        if self.draw_path is None:
            return None
        if not self.draw_folder:
            return Drawing(self.draw_path, fps)
        stem = os.path.splitext(os.path.basename(source.rstrip("/")))[0].replace(":", "_") or "camera"
        return Drawing(os.path.join(self.draw_path, stem + (".avi" if video else ".png")), fps)

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
