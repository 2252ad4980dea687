"""Image input: every supported format decodes to RGB uint8, and every bad file gets a typed
error that names it. (The TensorFlow decode of the model's graph: tests/core/test_model.py.)"""

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from core import imageio

RED = (220, 30, 40)


def pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def solid(mode="RGB", size=(64, 48), color=RED):
    return Image.new(mode, size, color)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_each_supported_format_decodes_to_rgb_uint8(fmt):
    rgb, info = imageio.decode(pil_bytes(solid(), fmt), f"red.{fmt.lower()}")
    assert info.format == fmt and (info.width, info.height) == (64, 48)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(rgb[24, 32], RED, atol=12)  # lossy formats and GIF palette


def test_gif_first_frame_is_used():
    frames = [solid(color=(0, 0, 255)), solid(color=(0, 255, 0))]
    data = pil_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    rgb, _ = imageio.decode(data, "anim.gif")
    assert rgb[0, 0, 2] > 200 and rgb[0, 0, 1] < 50


def test_exif_orientation_is_applied():
    # A wide image whose EXIF says "rotate 90 degrees clockwise to display" (orientation 6).
    image = Image.new("RGB", (80, 40), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 40))  # white band on the left edge
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION] = 6
    data = pil_bytes(image, "JPEG", exif=exif.tobytes(), quality=95)
    rgb, info = imageio.decode(data, "rotated.jpg")
    assert rgb.shape[:2] == (80, 40) and (info.width, info.height) == (40, 80)
    assert rgb[2, 20].mean() > 200 and rgb[-3, 20].mean() < 50  # left edge is now the top


def test_exif_orientation_is_applied_to_images_with_alpha():
    image = Image.new("RGBA", (80, 40), (0, 0, 0, 255))
    image.paste((255, 255, 255, 255), (0, 0, 10, 40))
    exif = Image.Exif()
    exif[imageio.EXIF_ORIENTATION] = 8  # rotate 90 degrees counter-clockwise
    rgb, _ = imageio.decode(pil_bytes(image, "PNG", exif=exif.tobytes()), "rotated.png")
    assert rgb.shape[:2] == (80, 40)
    assert rgb[-3, 20].mean() > 200 and rgb[2, 20].mean() < 50  # left edge is now the bottom


def test_grayscale_alpha_sixteen_bit_and_cmyk_become_rgb():
    gray, _ = imageio.decode(pil_bytes(solid("L", color=128), "PNG"), "gray.png")
    assert gray.shape == (48, 64, 3) and np.all(gray == 128)

    transparent = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    rgba, _ = imageio.decode(pil_bytes(transparent, "PNG"), "transparent.png")
    assert rgba.shape == (48, 64, 3) and np.all(rgba == 255)  # composited on white

    deep = np.full((48, 64, 3), 40000, dtype=np.uint16)
    ok, encoded = cv2.imencode(".png", deep)
    sixteen, info = imageio.decode(encoded.tobytes(), "deep.png")
    assert ok and sixteen.dtype == np.uint8 and abs(int(sixteen[0, 0, 0]) - 40000 // 256) <= 1

    cmyk, info = imageio.decode(pil_bytes(solid("CMYK", color=(0, 255, 255, 0)), "JPEG"), "cmyk.jpg")
    assert info.mode == "CMYK" and cmyk.shape == (48, 64, 3)
    assert cmyk[0, 0, 0] > 200 and cmyk[0, 0, 1] < 60  # red, in RGB order


def test_large_jpeg_is_decoded_at_reduced_size_for_the_model():
    big = np.random.default_rng(0).integers(0, 255, (1800, 2400, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", big)
    info = imageio.probe(encoded.tobytes(), "big.jpg")
    assert imageio._reduction_for(info, 224) == 8  # 1800 / 8 = 225 >= 224
    assert imageio._reduction_for(info, 300) == 4
    pixels, _ = imageio.load_for_model(encoded.tobytes(), 224, "big.jpg")
    assert pixels.shape == (224, 224, 3)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_header_only(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width`` x ``height``: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * min(width, 1000)) * 4)
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


def jpeg_bytes() -> bytes:
    ok, encoded = cv2.imencode(".jpg", np.full((100, 100, 3), 90, np.uint8))
    return encoded.tobytes()


@pytest.mark.parametrize(
    "data, error, words",
    [
        (b"", imageio.EmptyImageError, "empty"),
        (b"just some text, not a picture\n", imageio.NotAnImageError, "not an image"),
        (jpeg_bytes()[:300], imageio.TruncatedImageError, "truncated"),
        (png_header_only(50_000, 50_000), imageio.TooManyPixelsError, "than the limit"),
        (b"%PDF-1.7\n%...", imageio.UnsupportedFormatError, "PDF is not supported"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", imageio.UnsupportedFormatError, "HEIC"),
    ],
    ids=["empty", "text", "truncated", "bomb", "pdf", "heic"],
)
def test_bad_input_raises_a_typed_error_naming_the_file(data, error, words):
    with pytest.raises(error) as caught:
        imageio.load_for_model(data, 224, "holiday/IMG_0042.jpg")
    assert str(caught.value).startswith("holiday/IMG_0042.jpg: ")
    assert words in str(caught.value)
    assert isinstance(caught.value, imageio.ImageError) and caught.value.reason


@pytest.mark.parametrize("cut", [2, 30, 0.5, -2])
def test_truncated_jpeg_anywhere_is_refused(cut):
    data = jpeg_bytes()
    end = int(len(data) * cut) if isinstance(cut, float) else cut
    with pytest.raises(imageio.TruncatedImageError, match="truncated"):
        imageio.load_for_model(data[:end], 224, "cut.jpg")


def test_pixel_limit_is_checked_before_decoding():
    assert imageio.probe(png_header_only(4000, 3000), "ok.png", max_pixels=12_000_000).width == 4000
    with pytest.raises(imageio.TooManyPixelsError):
        imageio.probe(png_header_only(4000, 3001), "big.png", max_pixels=12_000_000)


def pixel_bomb_png(side: int = 9999) -> bytes:
    """A real, complete PNG of ``side`` x ``side`` transparent black, RGBA at 16 bits a sample:
    under a megabyte on disk, about 763 MiB once decoded (the rows are compressed one by one,
    so making it never holds the pixels either)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + side * 8)
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    return (
        b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def pixel_bomb(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    path.write_bytes(pixel_bomb_png())
    return path


def test_a_pixel_bomb_under_the_pixel_limit_is_refused_by_the_decode_budget(pixel_bomb):
    data = pixel_bomb.read_bytes()
    assert len(data) < 1_000_000 and 9999 * 9999 < imageio.DEFAULT_MAX_PIXELS  # passes the old checks
    for load in (
        lambda: imageio.probe(data, "bomb.png"),
        lambda: imageio.decode(data, "bomb.png"),
        lambda: imageio.load_for_model(data, 224, "bomb.png"),
        lambda: imageio.load_to_fit(data, 256, "bomb.png"),
    ):
        with pytest.raises(imageio.DecodeBudgetError) as refused:
            load()
        assert refused.value.reason == "decode_budget"
        assert isinstance(refused.value, imageio.TooManyPixelsError)  # handled wherever that is
        message = str(refused.value)
        # 763 MiB of pixels, which OpenCV decodes into a buffer of its own and copies: 1.5 GiB
        assert message.startswith(
            "bomb.png: 9999x9999 (with alpha, 16 bits a sample) would take 1,550 MiB to decode ("
        )
        assert "IMGTAG_MAX_DECODE_BYTES" in message


def test_refusing_the_bomb_never_allocates_its_pixels(pixel_bomb):
    """In a process of its own: the peak resident memory stays far below the 763 MiB of pixels."""
    import subprocess
    import sys

    # VmHWM, the peak of this process's own memory (ru_maxrss would carry the parent's across exec)
    script = (
        "import re, sys\n"
        "from core import imageio\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "try:\n"
        "    imageio.load_for_model(data, 224, 'bomb.png')\n"
        "except imageio.DecodeBudgetError:\n"
        "    print(re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(pixel_bomb)], capture_output=True, text=True, check=True
    )
    peak_mib = int(done.stdout) / 1024
    assert peak_mib < 500, f"peak {peak_mib:.0f} MiB"


def test_the_budget_counts_channels_and_bytes_per_sample():
    overhead = imageio.DECODE_OVERHEAD
    alpha = overhead + imageio.ALPHA_BANDS  # compositing on white works in bands of rows
    opaque = pil_bytes(solid("RGB", (1000, 1000)), "PNG")  # decoded to 8-bit BGR, twice: 6 bytes a pixel
    transparent = pil_bytes(solid("RGBA", (1000, 1000), RED + (128,)), "PNG")  # 4 bytes, then flattened to 3
    assert imageio.probe(opaque, "o.png", max_decode_bytes=6_000_000 + overhead).decoded_bytes == 3_000_000
    with pytest.raises(imageio.DecodeBudgetError, match="with alpha, 8 bits a sample"):
        imageio.probe(transparent, "t.png", max_decode_bytes=11_000_000 + alpha - 1)
    assert (
        imageio.probe(transparent, "t.png", max_decode_bytes=11_000_000 + alpha).decode_cost()
        == 11_000_000 + alpha
    )
    sixteen = np.zeros((100, 100, 4), np.uint16)
    sixteen[..., 3] = 65535
    ok, encoded = cv2.imencode(".png", sixteen)
    info = imageio.probe(encoded.tobytes(), "s.png")
    assert info.decoded_bytes == 100 * 100 * 4 * 2 and info.decode_cost() == 2 * 100 * 100 * 4 * 2 + alpha
    rgb, _ = imageio.decode(encoded.tobytes(), "s.png")  # within the budget: decodes as before
    assert rgb.shape == (100, 100, 3) and rgb.dtype == np.uint8
