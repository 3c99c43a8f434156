"""Untrusted image bytes in, a checked RGB array out: size, type (by magic bytes), pixel count, decoding.

Every rejection is an `ImageRejected` carrying the HTTP status the server answers with
(413 too large, 415 not JPEG/PNG, 400 broken) and a message that says what to send instead.
"""

from __future__ import annotations

import cv2
import numpy as np

from polyp.errors import PolypError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ACCEPTED_CONTENT_TYPES = ("image/jpeg", "image/jpg", "image/pjpeg", "image/png", "application/octet-stream", "")
MAX_PIXELS = 40_000_000  # decoded width * height; a small compressed file can claim a huge image
# JPEG start-of-frame markers carry the image size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class ImageRejected(PolypError):
    """An upload that is not served; `status` is the HTTP status code to answer with."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail


def sniff_format(data: bytes) -> str | None:
    """"jpeg" or "png" from the file's first bytes, None for anything else."""
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if len(data) < 24 or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length field
            position += 2
            continue
        if marker in _SOF_MARKERS:
            height = int.from_bytes(data[position + 5:position + 7], "big")
            width = int.from_bytes(data[position + 7:position + 9], "big")
            return width, height
        position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return None


def header_size(data: bytes, image_format: str) -> tuple[int, int] | None:
    """(width, height) as the JPEG or PNG header states it, read without decoding; None if not found."""
    return _png_size(data) if image_format == "png" else _jpeg_size(data)


def check_upload(data: bytes, content_type: str | None, max_bytes: int, max_pixels: int = MAX_PIXELS) -> str:
    """Checks size, declared type, magic bytes and stated pixel count of an upload before decoding.

    Args:
        data: the uploaded file's bytes.
        content_type: the type the client declared for the file (may be None).
        max_bytes: largest accepted file in bytes.
        max_pixels: largest accepted width * height.

    Returns:
        "jpeg" or "png".

    Raises:
        ImageRejected: 400 empty or no size in the header, 413 too many bytes or pixels, 415 not JPEG/PNG.
    """
    if not data:
        raise ImageRejected(400, "the uploaded file is empty; send a JPEG or PNG image")
    if len(data) > max_bytes:
        raise ImageRejected(413, f"the file is {len(data):,} bytes; the limit is {max_bytes:,} bytes")
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared not in ACCEPTED_CONTENT_TYPES:
        raise ImageRejected(415, f"the file was sent as {declared!r}; only JPEG (image/jpeg) and PNG (image/png) are accepted")
    image_format = sniff_format(data)
    if image_format is None:
        raise ImageRejected(415, f"the file is not a JPEG or PNG image (it starts with bytes {data[:8].hex(' ')})")
    size = header_size(data, image_format)
    if size is None or min(size) < 1:
        raise ImageRejected(400, f"the {image_format.upper()} file is broken: its header states no image size")
    if size[0] * size[1] > max_pixels:
        raise ImageRejected(413, f"the image is {size[0]}x{size[1]} pixels; the limit is {max_pixels:,} pixels")
    return image_format


def decode_upload(data: bytes, content_type: str | None, max_bytes: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Checks an upload (see `check_upload`) and decodes it into an RGB uint8 array (H,W,3).

    Raises:
        ImageRejected: when a check fails or the bytes do not decode.
    """
    image_format = check_upload(data, content_type, max_bytes, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageRejected(400, f"the {image_format.upper()} file is broken: it could not be decoded")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageRejected(413, f"the image is {image.shape[1]}x{image.shape[0]} pixels; the limit is {max_pixels:,} pixels")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
