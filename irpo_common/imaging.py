"""Image decoding and encoding shared by the services.

Images travel as PNG/JPEG bytes (base64 in JSON, or multipart uploads) and are decoded to
float32 RGB arrays of shape (H, W, 3) in [0, 1]. Every way an upload can be wrong raises
ImageError with a message precise enough to return to the client as a 4xx.
"""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 4096 * 4096
_ALLOWED_FORMATS = {"PNG", "JPEG"}


class ImageError(ValueError):
    """A client-supplied image is unusable; the message names the field and the reason."""


def decode_image(data: bytes, *, field: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode PNG/JPEG bytes to float32 (H, W, 3) in [0, 1]; the size is checked before pixels are read."""
    if not data:
        raise ImageError(f"{field}: empty image")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{field}: not a decodable PNG or JPEG image") from None
    except Image.DecompressionBombError as exc:  # PIL's own guard, far above ours, fires while reading the header
        raise ImageError(f"{field}: exceeds the limit of {max_pixels} pixels ({exc})") from None
    if img.format not in _ALLOWED_FORMATS:
        raise ImageError(f"{field}: format {img.format} is not accepted; send PNG or JPEG")
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{field}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    bands = img.getbands()
    if bands != ("R", "G", "B"):
        raise ImageError(f"{field}: has {len(bands)} channel(s) ({img.mode}); send a 3-channel RGB image")
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{field}: image data is corrupt ({exc})") from None
    arr = np.asarray(img)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:  # 16-bit PNG
        return arr.astype(np.float32) / 65535.0
    raise ImageError(f"{field}: unsupported pixel type {arr.dtype}")


def decode_base64_image(text: str, *, field: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a base64 string (optionally a data: URL) holding PNG/JPEG bytes."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{field}: not valid base64") from None
    return decode_image(raw, field=field, max_pixels=max_pixels)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float (H, W, 3) in [0, 1] to uint8 with rounding; values outside [0, 1] are clipped."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    """Float (H, W, 3) in [0, 1] or uint8 (H, W, 3) to PNG bytes."""
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def encode_base64_png(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")
