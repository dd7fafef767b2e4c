"""The decoder on good inputs and on a corpus of bad inputs generated here."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from igfiqa.data.decode import decode_image, image_size_from_header
from igfiqa.errors import DataError, ImageDecodeError


def _smooth_rgb(height: int = 48, width: int = 40) -> np.ndarray:
    """A smooth colour image (JPEG reproduces it closely)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), np.full_like(x, 90)],
        axis=2,
    ).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def test_jpeg_bytes_path_and_1d_array_give_rgb(tmp_path: Path) -> None:
    rgb = _smooth_rgb()
    data = _encode(Image.fromarray(rgb), "JPEG", quality=95)
    path = tmp_path / "face.jpg"
    path.write_bytes(data)
    for source in (data, path, str(path), np.frombuffer(data, np.uint8), bytearray(data)):
        out = decode_image(source)
        assert out.shape == (48, 40, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
        # RGB order (not OpenCV's BGR): channel 2 is the constant 90.
        assert np.abs(out.astype(int) - rgb).mean() < 3
        assert abs(int(out[..., 2].mean()) - 90) < 3


def test_png_lossless_round_trip_and_array_passthrough() -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    assert (decode_image(_encode(Image.fromarray(rgb), "PNG")) == rgb).all()
    assert (decode_image(rgb) == rgb).all()
    # BMP goes through OpenCV too.
    assert (decode_image(_encode(Image.fromarray(rgb), "BMP")) == rgb).all()


def test_empty_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match=r"empty\.jpg.*empty"):
        decode_image(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="not found"):
        decode_image(tmp_path / "nope.jpg")
    with pytest.raises(ImageDecodeError, match="directory"):
        decode_image(tmp_path)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_jpeg_is_refused_not_returned_grey(tmp_path: Path, keep: float) -> None:
    noisy = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encode(Image.fromarray(noisy), "JPEG", quality=90)
    cut = data[: int(len(data) * keep)]
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    # OpenCV on its own returns a (partly grey) image here; the decoder must refuse.
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg.*truncated"):
        decode_image(path)


def test_jpeg_header_only_is_refused() -> None:
    data = _encode(Image.fromarray(_smooth_rgb()), "JPEG")
    header_end = data.find(b"\xff\xda")
    with pytest.raises(ImageDecodeError, match="no start-of-scan"):
        decode_image(data[:header_end], name="headless.jpg")
    # Cut inside the header, before the frame size: refused, not decoded without a size check.
    sof = data.find(b"\xff\xc0")
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: corrupt JPEG header"):
        decode_image(data[: sof + 4], name="cut.jpg")


def test_text_named_jpg_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    with pytest.raises(ImageDecodeError, match=r"notes\.jpg.*not a recognised image"):
        decode_image(path)


def test_corrupt_png_body_is_refused() -> None:
    data = bytearray(_encode(Image.fromarray(_smooth_rgb()), "PNG"))
    idat = data.find(b"IDAT")
    data[idat + 8 : idat + 40] = b"\x00" * 32
    with pytest.raises(ImageDecodeError, match=r"broken\.png"):
        decode_image(bytes(data), name="broken.png")


def test_png_with_alpha_is_composited_on_black() -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = [200, 100, 50]
    rgba[..., 3] = [[0, 64, 128, 255]] * 4
    out = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    alpha = rgba[0, :, 3].astype(int)
    expected = np.round(np.array([200, 100, 50])[None, :] * alpha[:, None] / 255)
    np.testing.assert_allclose(out[0].astype(int), expected, atol=0.5)
    # Greyscale + alpha too.
    la = np.stack([np.full((3, 3), 200, np.uint8), np.full((3, 3), 255, np.uint8)], axis=2)
    assert (decode_image(_encode(Image.fromarray(la, "LA"), "PNG")) == 200).all()


def test_sixteen_bit_png_is_scaled_to_eight_bit() -> None:
    values = np.array([[0, 257, 32896, 65535], [1000, 20000, 40000, 60000]], np.uint16)
    rgb16 = np.stack([values, values[::-1], values[:, ::-1]], axis=2)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    assert ok
    out = decode_image(encoded.tobytes())
    expected = np.round(rgb16.astype(np.float64) * 255 / 65535)
    np.testing.assert_array_equal(out, expected.astype(np.uint8))
    # 16-bit greyscale also becomes three equal channels.
    ok, grey = cv2.imencode(".png", values)
    out = decode_image(grey.tobytes())
    assert out.shape == (2, 4, 3) and (out[..., 0] == out[..., 2]).all()
    np.testing.assert_array_equal(
        out[..., 1], np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)
    )


def test_greyscale_becomes_three_channels() -> None:
    grey = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4).astype(np.uint8)
    for fmt in ("PNG", "JPEG"):
        out = decode_image(
            _encode(Image.fromarray(grey, "L"), fmt, **({"quality": 100} if fmt == "JPEG" else {}))
        )
        assert out.shape == (8, 8, 3)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        assert np.abs(out[..., 0].astype(int) - grey).max() <= 3
    assert decode_image(grey).shape == (8, 8, 3)


def test_cmyk_jpeg_gives_correct_colours() -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:16] = [200, 30, 40]
    rgb[16:] = [20, 180, 90]
    data = _encode(Image.fromarray(rgb).convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data)
    assert np.abs(out[4:12, 4:28].astype(int) - [200, 30, 40]).max() <= 6
    assert np.abs(out[20:28, 4:28].astype(int) - [20, 180, 90]).max() <= 6


def test_exif_orientation_is_applied_to_jpeg() -> None:
    rgb = _smooth_rgb(30, 50)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    data = _encode(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data)
    assert out.shape == (50, 30, 3)
    from PIL import ImageOps

    viewer = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert np.abs(out.astype(int) - viewer).max() <= 3


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_decompression_bomb_is_refused_from_the_header() -> None:
    # A PNG announcing 100k x 100k pixels (30 GB decoded): refused from its header alone.
    bomb = _png_header_only(100_000, 100_000)
    assert image_size_from_header(bomb) == (100_000, 100_000)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(bomb, name="bomb.png")
    # A real, highly compressible PNG above a lowered limit: refused before decoding.
    real = cv2.imencode(".png", np.zeros((2000, 2000, 3), np.uint8))[1].tobytes()
    assert len(real) < 100_000
    with pytest.raises(ImageDecodeError, match="4,000,000 pixels"):
        decode_image(real, max_pixels=1_000_000)
    # A JPEG header with a huge frame size.
    jpeg = bytearray(_encode(Image.fromarray(_smooth_rgb()), "JPEG"))
    sof = jpeg.find(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = struct.pack(">HH", 60000, 60000)
    assert image_size_from_header(bytes(jpeg)) == (60000, 60000)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(bytes(jpeg))
    # A format only Pillow parses (GIF) announcing a huge canvas.
    gif = bytearray(_encode(Image.fromarray(_smooth_rgb()).convert("P"), "GIF"))
    gif[6:10] = struct.pack("<HH", 65000, 65000)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(bytes(gif))


def test_wrong_size_for_aligned_input() -> None:
    data = _encode(Image.fromarray(_smooth_rgb(100, 90)), "PNG")
    with pytest.raises(
        ImageDecodeError, match=r"face\.png: expected an aligned 112x112 image, got 90x100"
    ):
        decode_image(data, name="face.png", expected_size=112)
    assert decode_image(np.zeros((112, 112, 3), np.uint8), expected_size=112).shape == (112, 112, 3)


def test_bad_arrays_and_types() -> None:
    with pytest.raises(ImageDecodeError, match="float"):
        decode_image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageDecodeError, match="shape"):
        decode_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageDecodeError, match="encoded image bytes"):
        decode_image(np.zeros(10, np.float32))
    with pytest.raises(ImageDecodeError, match="type int"):
        decode_image(3)  # type: ignore[arg-type]
    # The error type is part of the DataError family the CLI reports cleanly.
    assert issubclass(ImageDecodeError, DataError)


def test_gif_and_palette_images_via_fallbacks() -> None:
    rgb = np.zeros((6, 6, 3), np.uint8)
    rgb[:3] = [255, 0, 0]
    rgb[3:] = [0, 0, 255]
    out = decode_image(_encode(Image.fromarray(rgb).convert("P"), "GIF"))
    assert (out[0, 0] == [255, 0, 0]).all() and (out[5, 5] == [0, 0, 255]).all()
    out = decode_image(_encode(Image.fromarray(rgb).convert("P"), "PNG"))
    assert (out[0, 0] == [255, 0, 0]).all() and (out[5, 5] == [0, 0, 255]).all()


# --- The decoded-size cap counts bytes (depth and channels), conversions run in strips ---------------


def _png(width: int, height: int, depth: int, colour: int, body: bytes = b"") -> bytes:
    """A PNG with the given IHDR and an IDAT holding ``body`` compressed (rows not checked)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(body))
        + chunk(b"IEND", b"")
    )


def test_sixteen_bit_rgba_png_within_the_pixel_cap_is_refused_by_its_bytes(tmp_path: Path) -> None:
    # 6300 x 6300 = 39.7 M pixels (under the 40 M pixel cap) of 16-bit RGBA: 318 MB decoded, and
    # it used to take 1.5 GB to convert. Refused from its header, in one line naming file and limit.
    path = tmp_path / "deep.png"
    path.write_bytes(_png(6300, 6300, 16, 6))
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    assert "6300x6300" in message and "16-bit RGBA" in message
    assert "317,520,000 bytes" in message and "120,000,000 bytes" in message


@pytest.mark.parametrize(
    ("encode", "pixels_ok"),
    [
        (lambda n: cv2.imencode(".png", np.zeros((n, n, 3), np.uint8))[1], True),  # 3 B/px
        (lambda n: cv2.imencode(".png", np.zeros((n, n), np.uint16))[1], True),  # 2 B/px
        (lambda n: cv2.imencode(".png", np.zeros((n, n, 4), np.uint8))[1], False),  # 4 B/px
        (lambda n: cv2.imencode(".png", np.zeros((n, n, 3), np.uint16))[1], False),  # 6 B/px
        (lambda n: cv2.imencode(".tiff", np.zeros((n, n, 4), np.uint16))[1], False),  # 8 B/px
        (lambda n: _encode(Image.new("RGB", (n, n)).convert("CMYK"), "JPEG"), False),  # 4 B/px
        (lambda n: _encode(Image.new("P", (n, n)), "PNG", transparency=0), False),  # RGBA out
    ],
)
def test_the_decoded_byte_budget_counts_depth_and_channels(encode, pixels_ok: bool) -> None:
    # 10 x 10 = 100 pixels is the pixel limit; the byte budget is what 100 8-bit RGB pixels take.
    data = bytes(encode(10))
    if pixels_ok:
        assert decode_image(data, max_pixels=100).shape == (10, 10, 3)
    else:
        with pytest.raises(ImageDecodeError, match="more than the limit of 300 bytes"):
            decode_image(data, max_pixels=100)
        assert decode_image(data, max_pixels=400).shape == (10, 10, 3)


def test_conversions_in_strips_give_the_whole_image_result(monkeypatch) -> None:
    import igfiqa.data.decode as decode

    rng = np.random.default_rng(3)
    rgba16 = rng.integers(0, 65536, (37, 23, 4), dtype=np.uint16)
    rgb8 = rng.integers(0, 256, (37, 23, 3), dtype=np.uint8)
    la8 = rng.integers(0, 256, (37, 23, 2), dtype=np.uint8)
    inputs = {
        "rgba16.png": cv2.imencode(".png", cv2.cvtColor(rgba16, cv2.COLOR_RGBA2BGRA))[1].tobytes(),
        "rgb8.png": cv2.imencode(".png", cv2.cvtColor(rgb8, cv2.COLOR_RGB2BGR))[1].tobytes(),
        "la8.png": _encode(Image.fromarray(la8, "LA"), "PNG"),
        "cmyk.tif": _encode(Image.fromarray(rgb8).convert("CMYK"), "TIFF"),
        "p.gif": _encode(Image.fromarray(rgb8).convert("P"), "GIF"),
    }
    whole = {name: decode_image(data) for name, data in inputs.items()}
    monkeypatch.setattr(decode, "_STRIP_PIXELS", 50)  # two rows at a time
    for name, data in inputs.items():
        np.testing.assert_array_equal(decode_image(data), whole[name], err_msg=name)
    alpha = rgba16[..., 3:].astype(np.uint32)
    colour = (rgba16[..., :3].astype(np.uint32) * 255 + 32767) // 65535
    expected = (colour * ((alpha * 255 + 32767) // 65535) + 127) // 255
    np.testing.assert_array_equal(whole["rgba16.png"], expected)
    np.testing.assert_array_equal(whole["rgb8.png"], rgb8)
    np.testing.assert_array_equal(decode_image(rgba16), expected)  # an array: same policy


_PEAK_SCRIPT = """
import resource, sys
import numpy as np
from igfiqa.data.decode import decode_image
decode_image(np.zeros((8, 8, 4), np.uint16))  # libraries loaded and warm
data = open(sys.argv[1], "rb").read()

def status(key):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(key))

try:  # reset the peak (VmHWM) to the current size
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    before, peak = status("VmRSS:"), lambda: status("VmHWM:")
except OSError:  # no /proc: the high-water mark since start (may only underestimate)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
image = decode_image(data, max_pixels=int(sys.argv[2]))
print(image.shape, peak() - before)
"""


def test_peak_memory_of_the_largest_allowed_image_is_that_of_an_rgb_one(tmp_path: Path) -> None:
    # With a 10 M pixel limit the largest 16-bit RGBA image allowed has 3.75 M pixels (30 MB).
    # The old whole-image conversion peaked at 5x that (152 MB); now it costs what a 10 M pixel
    # 8-bit RGB image does: twice the 30 MB budget (OpenCV's two copies), 62 MB measured.
    import subprocess
    import sys

    from igfiqa.data.decode import decode_peak_bytes

    side = 1936  # 1936^2 x 8 bytes = 29.98 MB <= 30 MB
    path = tmp_path / "rgba16.png"
    path.write_bytes(cv2.imencode(".png", np.zeros((side, side, 4), np.uint16))[1].tobytes())
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path), "10000000"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    shape, peak = result.stdout.rsplit(")", 1)
    assert shape.strip() == f"({side}, {side}, 3"
    assert int(peak) <= 1.15 * decode_peak_bytes(10_000_000), result.stdout


def test_the_memory_gate_makes_a_big_decode_wait_for_room() -> None:
    import threading

    import igfiqa.data.decode as decode

    gate = decode.MemoryGate(budget=10_000_000)
    data = cv2.imencode(".png", np.zeros((1000, 1000, 3), np.uint8))[1].tobytes()  # 6 MB peak
    done = threading.Event()
    original = decode._GATE
    decode._GATE = gate
    try:
        with gate.hold(8_000_000):  # another thread's big decode
            worker = threading.Thread(target=lambda: (decode_image(data), done.set()))
            worker.start()
            assert not done.wait(0.3)  # 8 + 6 MB > 10 MB: it waits
        assert done.wait(10)  # room again: it runs
        worker.join()
        with gate.hold(50_000_000):  # more than the budget: runs alone, does not deadlock
            assert gate.used == gate.budget
        assert gate.used == 0
    finally:
        decode._GATE = original
