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
  (default :data:`MAX_PIXELS`) *before* anything is allocated, and so is the size of the decoded
  buffer (pixels x channels x bytes per sample, alpha and 16 bit included) against
  ``3 * max_pixels`` bytes, the size of a ``max_pixels`` 8-bit RGB image: a 16-bit RGBA image may have
  at most 15 MP. Conversions to 8-bit RGB run in strips, so one decode holds at most about twice that
  budget (240 MB by default, :func:`decode_peak_bytes`). Decodes running in several threads take
  their peak from one budget per process (:func:`memory_gate`, half of the machine's memory): a
  thread waits rather than exceed it.
- ``expected_size=S``: the result must be S x S (an "aligned" input); anything else raises.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from igfiqa.errors import DataError, ImageDecodeError
from igfiqa.files import read_regular_file
from igfiqa.machine import machine_memory

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm"}
    | {".jp2"}
)
"""File name endings (lower case) that folder scans (training and scoring) treat as images."""

MAX_PIXELS = 40_000_000
"""Largest image (width x height) decoded by default: ~40 megapixels, far above any face photo."""

BYTES_PER_PIXEL_BUDGET = 3
"""The decoded buffer may take ``max_pixels * BYTES_PER_PIXEL_BUDGET`` bytes: what a ``max_pixels``
8-bit RGB image takes (a 16-bit RGBA image, 8 bytes per pixel, may then have 15 MP)."""

DECODE_PEAK_FACTOR = 2
"""A decode holds at most two buffers within the budget above (OpenCV's decode keeps two copies at
its peak; the conversion to RGB holds the decoded buffer and the result)."""

_STRIP_PIXELS = 1 << 18
"""Pixels converted at a time (16-bit -> 8-bit, alpha, channel order): keeps temporaries small."""


class MemoryGate:
    """A byte budget shared by the threads of a process: :meth:`hold` waits until ``nbytes`` fit
    beside what the other threads hold. Decodes and face searches take from it, so that any number
    of decode threads together never hold more than ``budget`` bytes of such work (an item larger
    than the whole budget runs alone)."""

    def __init__(self, budget: int) -> None:
        self.budget = max(int(budget), 1)
        self.used = 0
        self._condition = threading.Condition()

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        nbytes = min(max(int(nbytes), 0), self.budget)
        with self._condition:
            while self.used + nbytes > self.budget:
                self._condition.wait()
            self.used += nbytes
        try:
            yield
        finally:
            with self._condition:
                self.used -= nbytes
                self._condition.notify_all()


_GATE: MemoryGate | None = None
_GATE_LOCK = threading.Lock()


def memory_gate() -> MemoryGate:
    """The process's :class:`MemoryGate`: half of :func:`igfiqa.machine.machine_memory`."""
    global _GATE
    with _GATE_LOCK:
        if _GATE is None:
            _GATE = MemoryGate(machine_memory() // 2)
        return _GATE


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


def decode_peak_bytes(max_pixels: int = MAX_PIXELS) -> int:
    """Most memory one :func:`decode_image` of an image within ``max_pixels`` holds at once, besides
    its encoded bytes (240 MB for :data:`MAX_PIXELS`)."""
    return DECODE_PEAK_FACTOR * BYTES_PER_PIXEL_BUDGET * int(max_pixels)


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """(width, height) announced in a JPEG or PNG header, or None for other or unparseable data."""
    layout = _header_layout(data)
    return None if layout is None else (layout.width, layout.height)


class _Layout:
    """What a header announces: size, channels of the decoded buffer, bytes per sample."""

    __slots__ = ("channels", "height", "kind", "sample_bytes", "width")

    def __init__(self, width: int, height: int, channels: int, sample_bytes: int, kind: str):
        self.width, self.height = width, height
        self.channels, self.sample_bytes, self.kind = channels, sample_bytes, kind

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * self.channels * self.sample_bytes


_PNG_COLOUR = {
    0: ("grey", 1),
    2: ("RGB", 3),
    3: ("palette", 3),
    4: ("grey+alpha", 4),
    6: ("RGBA", 4),
}


def _header_layout(data: bytes) -> _Layout | None:
    """The layout announced by a JPEG or PNG header, or None for other or unparseable data."""
    if data.startswith(_PNG_SIGNATURE):
        if len(data) < 26 or data[12:16] != b"IHDR":
            return None
        width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
        kind, channels = _PNG_COLOUR.get(colour, ("unknown", 4))
        if channels == 3 and _png_has_transparency(data):  # OpenCV adds an alpha channel
            kind, channels = f"{kind}+alpha", 4
        sample_bytes = 2 if depth > 8 else 1
        return _Layout(width, height, channels, sample_bytes, f"{max(depth, 8)}-bit {kind}")
    if data.startswith(_JPEG_SOI):
        return _jpeg_frame(data)
    return None


def _png_has_transparency(data: bytes) -> bool:
    """Whether a tRNS chunk comes before the image data (chunk headers only are read)."""
    pos = 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if kind == b"tRNS":
            return True
        if kind in (b"IDAT", b"IEND"):
            return False
        pos += 12 + length
    return False


def _jpeg_frame(data: bytes) -> _Layout | None:
    """Walk the JPEG marker segments up to the first SOF and read its frame header."""
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
            precision = data[pos + 4]
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            components = data[pos + 9] if pos + 10 <= end else 3
            components = max(components, 3)  # decoded to RGB whatever is stored
            kind = {3: "colour", 4: "CMYK"}.get(components, f"{components}-component")
            sample_bytes = 2 if precision > 8 else 1
            return _Layout(width, height, components, sample_bytes, f"{precision}-bit {kind} JPEG")
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
    layout = _header_layout(data)
    is_jpeg = data.startswith(_JPEG_SOI)
    if layout is None:
        layout = _layout_with_pillow(data)
    if layout is None and is_jpeg:
        raise ImageDecodeError(f"{label}: corrupt JPEG header (no readable frame size)")
    if layout is None:
        raise ImageDecodeError(
            f"{label}: not a recognised image (first bytes {data[:8]!r}); expected JPEG, PNG, BMP, "
            "TIFF, WebP or another format Pillow reads"
        )
    _check_layout(layout, label, max_pixels)
    # OpenCV holds two copies of the decoded buffer at its peak; the RGB result is at most as big.
    peak = 2 * max(layout.decoded_bytes, 3 * layout.width * layout.height)
    with memory_gate().hold(peak):
        return _decode_checked(data, label, is_jpeg)


def _decode_checked(data: bytes, label: str, is_jpeg: bool) -> np.ndarray:
    buffer = np.frombuffer(data, dtype=np.uint8)
    if is_jpeg:
        _check_jpeg_complete(data, label)
        if _IMREAD_RGB is not None:
            image = cv2.imdecode(buffer, _IMREAD_RGB)
        else:  # older OpenCV: BGR out, swapped in place
            image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
            if image is not None:
                image = _pixels_to_rgb(image, label, bgr=True, in_place=True)
        if image is None:
            raise ImageDecodeError(f"{label}: corrupt JPEG data (OpenCV could not decode it)")
        return np.ascontiguousarray(image)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        return _decode_with_pillow(data, label)
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return _pixels_to_rgb(image, label, bgr=True, in_place=True)  # OpenCV's buffer is ours
    return _pixels_to_rgb(image, label, bgr=image.ndim == 3 and image.shape[2] in (3, 4))


def _check_layout(layout: _Layout, label: str, max_pixels: int) -> None:
    width, height = layout.width, layout.height
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"{label}: the header announces an empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{label}: the header announces {width}x{height} = {width * height:,} pixels, more than "
            f"the limit of {max_pixels:,} (a decompression bomb or a huge image); refused before "
            "decoding. If it is a genuine photo, downscale it first (in Python, "
            "decode_image(..., max_pixels=N) raises the limit)"
        )
    limit = BYTES_PER_PIXEL_BUDGET * max_pixels
    if layout.decoded_bytes > limit:
        per_pixel = layout.channels * layout.sample_bytes
        raise ImageDecodeError(
            f"{label}: the header announces {width}x{height} pixels of {layout.kind} "
            f"({per_pixel} bytes per pixel, {layout.decoded_bytes:,} bytes decoded), more than the "
            f"limit of {limit:,} bytes (a {max_pixels:,}-pixel 8-bit RGB image); refused before "
            "decoding. Convert it to 8-bit RGB or downscale it first (in Python, "
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


_PILLOW_SAMPLE_BYTES = {"I": 4, "F": 4, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}


def _layout_with_pillow(data: bytes) -> _Layout | None:
    """The layout from Pillow's lazy header parse, or None when Pillow does not know the data."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return _pillow_layout(image)
    except Image.DecompressionBombError:
        with _pillow_without_bomb_limit():
            try:
                with Image.open(io.BytesIO(data)) as image:
                    return _pillow_layout(image)
            except Exception:
                return None
    except Exception:
        return None


def _pillow_layout(image: Any) -> _Layout:
    """Channels x bytes per sample of what OpenCV or Pillow will allocate for ``image``."""
    mode = image.mode
    width, height = image.size
    channels = max(len(image.getbands()), 3 if mode == "P" else 1)
    sample_bytes = _PILLOW_SAMPLE_BYTES.get(mode, 1)
    tags = getattr(image, "tag_v2", None)  # TIFF: the stored bits and samples per pixel
    if tags is not None:
        bits = tags.get(258) or (8,)
        bits = bits if isinstance(bits, tuple) else (bits,)
        sample_bytes = max(sample_bytes, (max(int(b) for b in bits) + 7) // 8)
        channels = max(channels, int(tags.get(277) or 1))
    if mode in ("RGBA", "LA", "PA") or "transparency" in image.info:  # decoded as RGBA
        channels = max(channels, 4)
    kind = f"{8 * sample_bytes}-bit {mode} {image.format or ''}".strip()
    return _Layout(width, height, channels, sample_bytes, kind)


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
    """Pillow's decode, converted to RGB one strip at a time (no full-size copy or conversion)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            mode = image.mode
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"{label}: empty image ({width}x{height})")
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                target = None
            elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
                target = "RGBA"
            elif mode in ("L", "RGB"):
                target = None
            else:  # CMYK, YCbCr, P, 1, F, ...: Pillow's conversion
                target = "RGB"
            out = np.empty((height, width, 3), dtype=np.uint8)
            rows = max(1, _STRIP_PIXELS // width)
            for top in range(0, height, rows):
                strip = image.crop((0, top, width, min(height, top + rows)))
                if target is not None:
                    strip = strip.convert(target)
                pixels = np.asarray(strip)
                if mode in ("I;16", "I;16B", "I;16L", "I"):
                    pixels = pixels.astype(np.uint16)
                _check_pixel_array(pixels, label)
                out[top : top + len(pixels)] = _block_to_rgb(pixels, bgr=False)
    except ImageDecodeError:
        raise
    except Exception as error:
        raise ImageDecodeError(f"{label}: corrupt or unsupported image ({error})") from None
    return out


def _check_pixel_array(pixels: np.ndarray, label: str) -> None:
    if pixels.dtype not in (np.uint8, np.uint16):
        raise ImageDecodeError(
            f"{label}: pixel arrays must be uint8 or uint16, got {pixels.dtype}; convert with "
            "(array * 255).round().astype('uint8') if it holds floats in [0, 1]"
        )
    if pixels.ndim == 2 or (pixels.ndim == 3 and pixels.shape[2] == 1):
        if pixels.size == 0:
            raise ImageDecodeError(f"{label}: empty image ({pixels.shape})")
        return
    if pixels.ndim != 3 or pixels.shape[2] not in (2, 3, 4) or pixels.size == 0:
        raise ImageDecodeError(
            f"{label}: expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {pixels.shape}"
        )


def _pixels_to_rgb(
    pixels: np.ndarray, label: str, *, bgr: bool = False, in_place: bool = False
) -> np.ndarray:
    """Decoded RGB(A)/grey pixels of any supported depth -> (H, W, 3) uint8 per the module policy.

    ``bgr``: the colour channels are in OpenCV's order. The conversion runs in strips of rows, so it
    holds the input, the result and small temporaries; ``in_place`` (an 8-bit 3-channel array the
    caller gives up) reorders the channels in the input itself.
    """
    _check_pixel_array(pixels, label)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    plain = pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    if plain and not bgr:
        return np.ascontiguousarray(pixels)
    if plain and in_place and pixels.flags.c_contiguous and pixels.flags.writeable:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB, dst=pixels)  # in place, no copy
    if pixels.dtype == np.uint8 and pixels.ndim == 2:
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_GRAY2RGB)
    height, width = pixels.shape[:2]
    out = np.empty((height, width, 3), dtype=np.uint8)
    rows = max(1, _STRIP_PIXELS // width)
    for top in range(0, height, rows):
        out[top : top + rows] = _block_to_rgb(pixels[top : top + rows], bgr=bgr)
    return out


def _block_to_rgb(pixels: np.ndarray, *, bgr: bool) -> np.ndarray:
    """A few rows of checked pixels -> (rows, W, 3) uint8 (a new array)."""
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if pixels.shape[2] == 2:  # grey + alpha
        grey = _composite_on_black(pixels[:, :, :1], pixels[:, :, 1:])
        return np.repeat(grey, 3, axis=2)
    if pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if bgr else np.array(pixels)
    colour = pixels[:, :, 2::-1] if bgr else pixels[:, :, :3]
    return _composite_on_black(colour, pixels[:, :, 3:])


def _composite_on_black(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``round(color * alpha / 255)``: the image over a black background."""
    mixed = (color.astype(np.uint16) * alpha.astype(np.uint16) + 127) // 255
    return np.ascontiguousarray(mixed.astype(np.uint8))


__all__ = [
    "BYTES_PER_PIXEL_BUDGET",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "MemoryGate",
    "decode_image",
    "decode_peak_bytes",
    "image_size_from_header",
    "memory_gate",
]
