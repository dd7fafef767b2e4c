"""The one image decoder of the project: bytes, a path or an array -> RGB ``uint8`` (H, W, 3).

Conversion policy (every input either follows it or raises :class:`~igfiqa.errors.ImageDecodeError`
naming the file):

- **JPEG** (fast path, OpenCV): decoded straight to RGB; greyscale and CMYK/YCCK JPEGs are converted
  to RGB by libjpeg (CMYK colours are correct, Adobe-inverted files included). The EXIF orientation tag
  is **applied** (the image comes out the way a photo viewer shows it). A JPEG whose entropy-coded data
  ends before the end-of-image marker (a truncated file) is refused rather than returned half grey.
- **PNG, BMP, TIFF, WebP, ...**: decoded as stored (EXIF orientation is not applied to these formats).
  Greyscale is replicated to three channels; 16-bit samples are mapped to 8 bit by
  ``round(v * 255 / 65535)``; an alpha channel is composited onto **black** (``rgb * alpha``), the same
  colour as the border of :func:`igfiqa.data.align.align_face`. Formats OpenCV cannot read are tried with
  Pillow.
- **Arrays**: a 1-D ``uint8`` array is taken as encoded bytes (as stored in insightface ``.bin`` files);
  an (H, W) / (H, W, 1) / (H, W, 3) / (H, W, 4) ``uint8`` or ``uint16`` array is taken as decoded pixels
  in **RGB(A)** order and converted as above. Float arrays are refused (their scale is ambiguous).
- **Decompression bombs**: the pixel count announced in the header is checked against ``max_pixels``
  (default :data:`MAX_PIXELS`) *before* anything is allocated.
- ``expected_size=S``: the result must be S x S (an "aligned" input); anything else raises.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import cv2
import numpy as np

from igfiqa.errors import DataError, ImageDecodeError
from igfiqa.files import read_regular_file

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}
    | {".jp2"}
)
"""File name endings (lower case) that folder scans (training and scoring) treat as images."""

MAX_PIXELS = 40_000_000
"""Largest image (width x height) decoded by default: ~40 megapixels, far above any face photo."""

_JPEG_SOI = b"\xff\xd8"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOF markers carry the frame size: C0-CF except DHT (C4), JPG (C8) and DAC (CC).
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_IMREAD_RGB = getattr(cv2, "IMREAD_COLOR_RGB", None)


def decode_image(
    source: bytes | bytearray | memoryview | str | os.PathLike[str] | np.ndarray,
    *,
    name: str | None = None,
    expected_size: int | None = None,
    max_pixels: int = MAX_PIXELS,
    max_bytes: int | None = None,
) -> np.ndarray:
    """Decode ``source`` into a C-contiguous RGB ``uint8`` array of shape (H, W, 3).

    ``source`` is encoded bytes, a file path, a 1-D uint8 array of encoded bytes, or a decoded pixel
    array (RGB order). ``name`` is used in error messages (defaults to the path). With
    ``expected_size`` the image must be exactly ``expected_size`` x ``expected_size``.
    Raises :class:`ImageDecodeError` for anything that is not a decodable image within ``max_pixels``
    (or, for a path, not a regular file of at most ``max_bytes``; default
    :func:`igfiqa.files.max_file_bytes`, 256 MiB or ``IGFIQA_MAX_FILE_MB``).
    """
    if isinstance(source, np.ndarray) and source.ndim != 1:
        label = name or "<array>"
        image = _pixels_to_rgb(source, label)
    else:
        if isinstance(source, (str, os.PathLike)):
            label = name or str(source)
            data = _read_file(Path(source), label, max_bytes)
        elif isinstance(source, np.ndarray):
            label = name or "<array>"
            if source.dtype != np.uint8:
                raise ImageDecodeError(
                    f"{label}: a 1-D array must hold encoded image bytes (uint8), got {source.dtype}"
                )
            data = source.tobytes()
        elif isinstance(source, (bytes, bytearray, memoryview)):
            label = name or "<bytes>"
            data = bytes(source)
        else:
            raise ImageDecodeError(
                f"{name or '<input>'}: cannot decode an object of type {type(source).__name__}; "
                "pass encoded bytes, a file path or a uint8 array"
            )
        image = _decode_bytes(data, label, max_pixels)
    if expected_size is not None and image.shape[:2] != (expected_size, expected_size):
        raise ImageDecodeError(
            f"{label}: expected an aligned {expected_size}x{expected_size} image, got "
            f"{image.shape[1]}x{image.shape[0]} (width x height); align it first "
            "(igfiqa.data.align.align_face) or pass images of the model's input size"
        )
    return image


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) announced in a JPEG or PNG header, or None for other or unparseable data."""
    if data.startswith(_PNG_SIGNATURE):
        if len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack(">II", data[16:24])
            return width, height
        return None
    if data.startswith(_JPEG_SOI):
        return _jpeg_frame_size(data)
    return None


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG marker segments up to the first SOF and read its frame size."""
    pos = 2
    end = len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length field
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            if pos + 9 > end:
                return None
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header: malformed
            return None
        pos += 2 + length
    return None


def _read_file(path: Path, label: str, max_bytes: int | None) -> bytes:
    try:
        return read_regular_file(path, label, max_bytes)
    except DataError as error:  # as an ImageDecodeError: a batch job records it per item
        raise ImageDecodeError(str(error)) from None


def _decode_bytes(data: bytes, label: str, max_pixels: int) -> np.ndarray:
    if not data:
        raise ImageDecodeError(f"{label}: the file is empty (0 bytes); re-export or remove it")
    size = image_size_from_header(data)
    is_jpeg = data.startswith(_JPEG_SOI)
    if size is None:
        size = _size_with_pillow(data)
    if size is None and is_jpeg:
        raise ImageDecodeError(f"{label}: corrupt JPEG header (no readable frame size)")
    if size is not None:
        _check_pixels(size, label, max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8)
    if is_jpeg:
        _check_jpeg_complete(data, label)
        if _IMREAD_RGB is not None:
            image = cv2.imdecode(buffer, _IMREAD_RGB)
        else:  # older OpenCV: BGR out, swap.
            image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            if image is not None:
                image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        if image is None:
            raise ImageDecodeError(f"{label}: corrupt JPEG data (OpenCV could not decode it)")
        return np.ascontiguousarray(image)
    if size is None:
        raise ImageDecodeError(
            f"{label}: not a recognised image (first bytes {data[:8]!r}); expected JPEG, PNG, BMP, "
            "TIFF, WebP or another format Pillow reads"
        )
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        return _decode_with_pillow(data, label)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(
            image, cv2.COLOR_BGR2RGB if image.shape[2] == 3 else cv2.COLOR_BGRA2RGBA
        )
    return _pixels_to_rgb(image, label)


def _check_pixels(size: tuple[int, int], label: str, max_pixels: int) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{label}: the header announces an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{label}: the header announces {width}x{height} = {width * height:,} pixels, more than "
            f"the limit of {max_pixels:,} (a decompression bomb or a huge image); refused before "
            "decoding. If it is a genuine photo, downscale it first (in Python, "
            "decode_image(..., max_pixels=N) raises the limit)"
        )


def _check_jpeg_complete(data: bytes, label: str) -> None:
    """A JPEG must have an end-of-image marker after its last start-of-scan marker.

    Inside entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so neither
    marker can appear by accident; a file cut short has no EOI after its last SOS.
    """
    last_scan = data.rfind(b"\xff\xda")
    if last_scan < 0:
        raise ImageDecodeError(f"{label}: JPEG without image data (no start-of-scan marker)")
    if data.find(b"\xff\xd9", last_scan) < 0:
        raise ImageDecodeError(
            f"{label}: truncated JPEG (the file ends before its end-of-image marker); "
            "re-download or re-encode it"
        )


def _size_with_pillow(data: bytes) -> tuple[int, int] | None:
    """(width, height) from Pillow's lazy header parse, or None when Pillow does not know the data."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError:
        with _pillow_without_bomb_limit():
            try:
                with Image.open(io.BytesIO(data)) as image:
                    return image.size
            except Exception:
                return None
    except Exception:
        return None


class _pillow_without_bomb_limit:
    """Let Pillow parse a header past its own limit so that our check gives the message."""

    def __enter__(self) -> None:
        from PIL import Image

        self._saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None

    def __exit__(self, *exc: object) -> None:
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = self._saved


def _decode_with_pillow(data: bytes, label: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.asarray(image).astype(np.uint16)
            elif image.mode in ("RGBA", "LA", "PA") or (
                image.mode == "P" and "transparency" in image.info
            ):
                pixels = np.asarray(image.convert("RGBA"))
            elif image.mode in ("L", "RGB"):
                pixels = np.asarray(image)
            else:  # CMYK, YCbCr, P, 1, F, ...: Pillow's conversion
                pixels = np.asarray(image.convert("RGB"))
    except Exception as error:
        raise ImageDecodeError(f"{label}: corrupt or unsupported image ({error})") from None
    return _pixels_to_rgb(pixels, label)


def _pixels_to_rgb(pixels: np.ndarray, label: str) -> np.ndarray:
    """Decoded RGB(A)/grey pixels of any supported depth -> (H, W, 3) uint8 per the module policy."""
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise ImageDecodeError(
            f"{label}: pixel arrays must be uint8 or uint16, got {pixels.dtype}; convert with "
            "(array * 255).round().astype('uint8') if it holds floats in [0, 1]"
        )
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        if pixels.size == 0:
            raise ImageDecodeError(f"{label}: empty image ({pixels.shape})")
        return np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
    if pixels.ndim != 3 or pixels.shape[2] not in (2, 3, 4) or pixels.size == 0:
        raise ImageDecodeError(
            f"{label}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {pixels.shape}"
        )
    if pixels.shape[2] == 2:  # grey + alpha
        grey = _composite_on_black(pixels[:, :, :1], pixels[:, :, 1:])
        return np.ascontiguousarray(np.repeat(grey, 3, axis=2))
    if pixels.shape[2] == 4:
        return _composite_on_black(pixels[:, :, :3], pixels[:, :, 3:])
    return np.ascontiguousarray(pixels)


def _composite_on_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``round(color * alpha / 255)``: the image over a black background."""
    mixed = (color.astype(np.uint16) * alpha.astype(np.uint16) + 127) // 255
    return np.ascontiguousarray(mixed.astype(np.uint8))


__all__ = ["IMAGE_EXTENSIONS", "MAX_PIXELS", "decode_image", "image_size_from_header"]
