"""Image files for the edge runtime: which names are images, their size from the header, bounded decoding.

An image is never decoded at a size that could exhaust a small device's memory. Its width, height
and frame count are read from the file header first (JPEG, PNG, GIF, WebP, BMP; pure Python, nothing
decoded). A JPEG above ``MAX_IMAGE_PIXELS`` is decoded by libjpeg at 1/2, 1/4 or 1/8 scale
(``cv2.IMREAD_REDUCED_*``, the smallest reduction that fits); any other image above it is refused
with one line naming the file and its size. Other formats (TIFF, PNM) are decoded as they are, under
OpenCV's own limit (2^30 pixels). Animated files (GIF, APNG, animated WebP) report their frame count.
"""

import math
import struct
from dataclasses import dataclass

import cv2
import numpy as np

from edge.errors import EdgeError

# File name extensions of the images the edge CLI (and evaluation's OOD folder) reads.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm")
# The most pixels decoded at once: 6000 x 4000, a 24-megapixel photo (72 MB as RGB uint8).
MAX_IMAGE_PIXELS = 24_000_000
_REDUCED = {  # scale -> (colour flag, grayscale flag); EXIF orientation ignored like IMREAD_UNCHANGED
    2: (cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    4: (cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
    8: (cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
}
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (DHT, JPG, DAC not)


@dataclass(frozen=True)
class ImageHeader:
    """What a file header says: format, width, height, frame count (> 1: animated), colour channels."""

    format: str
    width: int
    height: int
    frames: int = 1
    channels: int = 3

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _jpeg_header(data):
    if bytes(data[:2]) != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
        elif marker in _JPEG_SOF:
            height, width, channels = struct.unpack_from(">HHB", data, pos + 5)
            return ImageHeader("jpeg", width, height, channels=channels) if height else None
        elif marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        else:
            pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return None


def _png_header(data):
    if bytes(data[:8]) != b"\x89PNG\r\n\x1a\n" or bytes(data[12:16]) != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    frames, pos = 1, 8
    while pos + 12 <= len(data):  # APNG: an acTL chunk before the first IDAT holds the frame count
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"acTL":
            frames = struct.unpack_from(">I", data, pos + 8)[0]
        if kind in (b"acTL", b"IDAT"):
            break
        pos += 12 + length
    return ImageHeader("png", width, height, frames=max(frames, 1))


def _skip_sub_blocks(data, pos: int) -> int:
    while pos < len(data) and data[pos]:
        pos += data[pos] + 1
    return pos + 1


def _colour_table_bytes(flags: int) -> int:
    return 3 << ((flags & 7) + 1) if flags & 0x80 else 0


def _gif_header(data):
    if bytes(data[:6]) not in (b"GIF87a", b"GIF89a"):
        return None
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos, frames = 13 + _colour_table_bytes(flags), 0
    while pos < len(data) and data[pos] in (0x21, 0x2C):  # extension or image; 0x3B ends the file
        if data[pos] == 0x2C:  # descriptor (10 bytes), local colour table, LZW code size, data
            frames += 1
            pos += 10 + _colour_table_bytes(data[pos + 9]) + 1
        else:  # extension: introducer, label, data
            pos += 2
        pos = _skip_sub_blocks(data, pos)
    return ImageHeader("gif", width, height, frames=max(frames, 1))


def _webp_frames(data) -> int:
    """ANMF chunks of an animated WebP (RIFF chunks, padded to even sizes)."""
    pos, frames = 12, 0
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("<4sI", data, pos)
        frames += kind == b"ANMF"
        pos += 8 + size + (size & 1)
    return max(frames, 1)


def _webp_header(data):
    if bytes(data[:4]) != b"RIFF" or bytes(data[8:12]) != b"WEBP":
        return None
    kind, frames = bytes(data[12:16]), 1
    if kind == b"VP8 ":  # lossy: 14-bit sizes after the frame tag and start code
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", data, 26))
    elif kind == b"VP8L":  # lossless: 14 bits each, minus one, after the signature byte
        bits = struct.unpack_from("<I", data, 21)[0]
        width, height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif kind == b"VP8X":  # extended: 24 bits each, minus one; flag 0x02 = animation
        width = int.from_bytes(bytes(data[24:27]), "little") + 1
        height = int.from_bytes(bytes(data[27:30]), "little") + 1
        frames = _webp_frames(data) if data[20] & 0x02 else 1
    else:
        return None
    return ImageHeader("webp", width, height, frames=frames)


def _bmp_header(data):
    if bytes(data[:2]) != b"BM":
        return None
    if struct.unpack_from("<I", data, 14)[0] == 12:  # OS/2 core header: 16-bit sizes
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return ImageHeader("bmp", abs(width), abs(height))


def read_header(data) -> ImageHeader | None:
    """Format, size and frame count from the first bytes of a JPEG, PNG, GIF, WebP or BMP; else None.

    ``data`` is the file's bytes (bytes or a uint8 array); nothing is decoded.
    """
    data = memoryview(np.ascontiguousarray(np.frombuffer(data, np.uint8)))
    for parse in (_jpeg_header, _png_header, _gif_header, _webp_header, _bmp_header):
        try:
            header = parse(data)
        except (struct.error, IndexError):  # a header cut short: let the decoder say what is wrong
            header = None
        if header is not None:
            return header
    return None


def within_limit(header: ImageHeader, max_pixels=None) -> bool:
    """Whether an image can be decoded at full size: at most ``max_pixels`` (default MAX_IMAGE_PIXELS)."""
    return header.pixels <= (MAX_IMAGE_PIXELS if max_pixels is None else max_pixels)


def reduction(header: ImageHeader, max_pixels: int) -> int:
    """1 if the image fits ``max_pixels``; else the smallest JPEG decode scale 2, 4, 8 that fits; else 0."""
    if within_limit(header, max_pixels):
        return 1
    if header.format != "jpeg":
        return 0
    for scale in _REDUCED:
        if math.ceil(header.width / scale) * math.ceil(header.height / scale) <= max_pixels:
            return scale
    return 0


def to_rgb_uint8(image: np.ndarray, bgr: bool = True) -> tuple:
    """(RGB uint8 image, note or None) from a decoded image: gray, BGR(A) or RGB(A), 8 or 16 bit."""
    notes = []
    if image.dtype == np.uint16:
        image = np.round(image / 257.0).astype(np.uint8)
        notes.append("16-bit image scaled to 8 bit")
    elif image.dtype != np.uint8:
        raise EdgeError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        notes.append("grayscale image converted to RGB")
        return cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2RGB), "; ".join(notes)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise EdgeError(f"unsupported image shape {image.shape}")
    if image.shape[2] == 4:
        notes.append("RGBA image: alpha channel dropped (converted to RGB)")
        code = cv2.COLOR_BGRA2RGB if bgr else cv2.COLOR_RGBA2RGB
        return cv2.cvtColor(image, code), "; ".join(notes)
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if bgr else image
    return rgb, "; ".join(notes) or None


def read_file(path) -> np.ndarray:
    """A file's bytes as a uint8 array; EdgeError naming the file if it cannot be read."""
    try:
        return np.fromfile(str(path), np.uint8)
    except OSError as e:
        raise EdgeError(f"{path}: cannot read file ({e.strerror or e})") from None


def decode_image(data: np.ndarray, path, max_pixels=None) -> tuple:
    """(RGB uint8 image, note or None, scale) of an encoded image; scale > 1: decoded at 1/scale size.

    EdgeError naming the file if it cannot be decoded, or is larger than ``max_pixels`` (default
    MAX_IMAGE_PIXELS) and not a JPEG that libjpeg can decode at a reduced scale.
    """
    max_pixels = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    header = read_header(data)
    scale = 1 if header is None else reduction(header, max_pixels)
    if scale == 0:
        raise EdgeError(
            f"{path}: image is {header.width}x{header.height} ({header.pixels / 1e6:.0f} megapixels), "
            f"above the {max_pixels / 1e6:g}-megapixel limit of the edge runtime; shrink it first"
        )
    flags = cv2.IMREAD_UNCHANGED
    if scale > 1:
        flags = _REDUCED[scale][header.channels == 1] | cv2.IMREAD_IGNORE_ORIENTATION
    image = None
    if data.size:
        try:
            image = cv2.imdecode(data, flags)
        except cv2.error:
            image = None
    if image is None:
        raise EdgeError(f"{path}: cannot decode image (not an image file, or corrupt)")
    try:
        rgb, note = to_rgb_uint8(image, bgr=True)
    except EdgeError as e:
        raise EdgeError(f"{path}: {e}") from None
    notes = [note] if note else []
    if scale > 1:
        size = f"{rgb.shape[1]}x{rgb.shape[0]}"
        notes.insert(0, f"{header.width}x{header.height} JPEG decoded at 1/{scale} scale ({size}), above ")
        notes[0] += f"the {max_pixels / 1e6:g}-megapixel limit"
    return rgb, "; ".join(notes) or None, scale


def first_frame_only(header) -> str | None:
    """'animated GIF: only the first of N frames is used' for an animated header, else None."""
    if header is None or header.frames <= 1:
        return None
    return f"animated {header.format.upper()}: only the first of {header.frames} frames is used"


def load_image(path, max_pixels=None) -> tuple:
    """(RGB uint8 image, note or None) read from a file; EdgeError if it cannot be read or decoded.

    A JPEG above ``max_pixels`` (default MAX_IMAGE_PIXELS) comes back at 1/2, 1/4 or 1/8 scale (the note says so); any other
    image above it is an EdgeError. An animated file gives its first frame (the note says so).
    """
    data = read_file(path)
    rgb, note, _ = decode_image(data, path, max_pixels)
    notes = [n for n in (first_frame_only(read_header(data)), note) if n]
    return rgb, "; ".join(notes) or None
