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


def open_image(data: bytes, *, field: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read only the header of PNG/JPEG bytes and check format, size, channels and bit depth, so that a
    caller can budget the decoded pixels of a whole request before any pixel is decoded."""
    if not data:
        raise ImageError(f"{field}: empty image")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError(f"{field}: not a decodable PNG or JPEG image") from None
    except Image.DecompressionBombError as exc:  # PIL's own guard, far above ours, fires while reading the header
        raise ImageError(f"{field}: exceeds the limit of {max_pixels} pixels ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # a header that breaks the parser
        raise ImageError(f"{field}: image header is corrupt ({type(exc).__name__})") from None
    if img.format not in _ALLOWED_FORMATS:
        raise ImageError(f"{field}: format {img.format} is not accepted; send PNG or JPEG")
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"{field}: {w}x{h} = {w * h} pixels exceeds the limit of {max_pixels}")
    bands = img.getbands()
    if bands != ("R", "G", "B"):
        raise ImageError(f"{field}: has {len(bands)} channel(s) ({img.mode}); send a 3-channel RGB image")
    rawmode = img.tile[0].args if img.tile else ""
    if img.format == "PNG" and "16" in str(rawmode if isinstance(rawmode, str) else rawmode[0]):
        # Pillow reads 16-bit RGB as 8-bit RGB (it drops the low byte): refuse rather than truncate silently
        raise ImageError(f"{field}: 16-bit RGB PNG is not accepted (it would lose its low 8 bits); send an 8-bit "
                         "PNG, or float images losslessly in the binary batch (application/vnd.safetensors)")
    return img


def load_pixels(img: Image.Image, *, field: str) -> np.ndarray:
    """Decode an image checked by open_image to float32 (H, W, 3) in [0, 1]."""
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{field}: image data is corrupt ({type(exc).__name__})") from None
    return np.asarray(img, dtype=np.uint8).astype(np.float32) / 255.0


def decode_image(data: bytes, *, field: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode PNG/JPEG bytes to float32 (H, W, 3) in [0, 1]; the size is checked before pixels are read."""
    return load_pixels(open_image(data, field=field, max_pixels=max_pixels), field=field)


def base64_bytes(text: str, *, field: str) -> bytes:
    """The bytes of a base64 string (optionally a data: URL)."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{field}: not valid base64") from None


def decode_base64_image(text: str, *, field: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a base64 string (optionally a data: URL) holding PNG/JPEG bytes."""
    return decode_image(base64_bytes(text, field=field), field=field, max_pixels=max_pixels)


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
