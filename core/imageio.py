"""Image input: bytes in, RGB ``uint8`` arrays out, with a typed error for every bad file.

Decoding is OpenCV's (``cv2.imdecode`` releases the GIL, so a thread pool decodes in
parallel). Pillow is used only to read the header lazily: format, size, mode and EXIF
orientation, before any pixel is decoded, so a decompression bomb is refused without
allocating it.

Supported: JPEG, PNG, WebP, BMP, TIFF and GIF (first frame). Grayscale, alpha (composited on
white), 16-bit and CMYK inputs all come out as 3-channel RGB ``uint8``. When the caller needs
only a small image (the model's input size), JPEGs are decoded at 1/2, 1/4 or 1/8 scale by
libjpeg itself (``IMREAD_REDUCED_COLOR_*``), which is several times faster on camera photos.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from core.errors import UsageError

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
DEFAULT_MAX_PIXELS = 100_000_000
#: Bytes the decoder may allocate for one image's pixels (width x height x channels x bytes per
#: sample): 512 MiB leaves a 2 GiB pod room for the model, a batch and the copies after decoding.
#: A 100-megapixel 8-bit RGB photo (286 MiB) fits; a 9999x9999 RGBA PNG at 16 bits (763 MiB)
#: does not, however few bytes its file has.
DEFAULT_MAX_DECODE_BYTES = 512 * 1024 * 1024
EXIF_ORIENTATION = 0x0112

# Formats recognised by their first bytes that we refuse with a hint, rather than calling
# them "not an image".
_KNOWN_UNSUPPORTED = (
    (b"%PDF", "PDF"),
    (b"8BPS", "Photoshop PSD"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\x00\x00\x01\x00", "ICO"),
)
_SUPPORTED_MAGIC = (
    (b"\xff\xd8", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_FTYP_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF"}


class ImageError(UsageError, ValueError):
    """A file that cannot be used as an image. The message names the file and the problem."""

    reason = "invalid_image"

    def __init__(self, name: str, problem: str):
        self.name = name
        self.problem = problem
        super().__init__(f"{name}: {problem}")


class EmptyImageError(ImageError):
    reason = "empty"


class NotAnImageError(ImageError):
    reason = "not_an_image"


class UnsupportedFormatError(ImageError):
    reason = "unsupported_format"


class TruncatedImageError(ImageError):
    reason = "truncated"


class TooManyPixelsError(ImageError):
    reason = "too_many_pixels"


class DecodeBudgetError(TooManyPixelsError):
    """Decoding would allocate more than the decode budget (``IMGTAG_MAX_DECODE_BYTES``)."""

    reason = "decode_budget"


@dataclass(frozen=True)
class ImageInfo:
    """What the header says, with width and height as displayed (after EXIF rotation)."""

    format: str
    width: int
    height: int
    mode: str
    orientation: int = 1
    has_alpha: bool = False
    bytes_per_sample: int = 1

    @property
    def decoded_bytes(self) -> int:
        """What the decoder allocates for the pixels of one frame: with alpha OpenCV keeps every
        channel at its stored depth; without, it decodes straight to 8-bit BGR."""
        if self.has_alpha:
            channels = 2 if self.mode in ("LA", "La") else 4
            return self.width * self.height * channels * self.bytes_per_sample
        return self.width * self.height * 3


def _sniff_supported(data: bytes) -> str | None:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return next((label for magic, label in _SUPPORTED_MAGIC if data.startswith(magic)), None)


def _sniff_unsupported(data: bytes) -> str | None:
    for magic, label in _KNOWN_UNSUPPORTED:
        if data.startswith(magic):
            return label
    if data[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(data[8:12], "ISO media (HEIF/MP4)")
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    return None


def probe(
    data: bytes,
    name: str = "<bytes>",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> ImageInfo:
    """Read the header only and check the file is an image we can decode within the limits.

    Nothing is decoded: a file whose pixels would need more than ``max_decode_bytes`` is
    refused from its header, whatever its size on disk (a PNG of zeros compresses a thousandfold).

    Raises:
        EmptyImageError, NotAnImageError, UnsupportedFormatError, TruncatedImageError,
        TooManyPixelsError, DecodeBudgetError: with a message that names ``name``.
    """
    if not data:
        raise EmptyImageError(name, "the file is empty (0 bytes)")
    unsupported = _sniff_unsupported(data)
    if unsupported:
        raise UnsupportedFormatError(
            name, f"{unsupported} is not supported; convert it to one of {', '.join(SUPPORTED_FORMATS)}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning; we check below
            with Image.open(io.BytesIO(data)) as im:
                fmt, (width, height), mode = im.format, im.size, im.mode
                has_alpha = "A" in im.getbands() or "transparency" in im.info
                _check_size(name, fmt, width, height, max_pixels)
                orientation = _orientation(im)
                depth = _bytes_per_sample(data, im)
    except Image.DecompressionBombError as exc:
        raise TooManyPixelsError(
            name,
            f"more pixels than the limit of {max_pixels:,} (IMGTAG_MAX_PIXELS); downscale it first ({exc})",
        ) from None
    except UnidentifiedImageError:
        if fmt := _sniff_supported(data):
            raise TruncatedImageError(
                name,
                f"the {fmt} file is truncated, damaged or a variant that cannot be read "
                "(for example 64-bit samples); re-save it as 8-bit RGB",
            ) from None
        raise NotAnImageError(
            name,
            f"not an image: no known image header (first bytes {data[:8]!r}); "
            f"supported formats are {', '.join(SUPPORTED_FORMATS)}",
        ) from None
    except (OSError, SyntaxError, ValueError, struct.error) as exc:
        if isinstance(exc, ImageError):
            raise
        raise TruncatedImageError(name, f"the image header is truncated or damaged ({exc})") from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    info = ImageInfo(fmt, width, height, mode, orientation, has_alpha, depth)
    if info.decoded_bytes > max_decode_bytes:
        layout = f"{'with alpha, ' if has_alpha else ''}{8 * depth} bits a sample"
        raise DecodeBudgetError(
            name,
            f"{width}x{height} ({layout}) would take {info.decoded_bytes / 2**20:,.0f} MiB to decode, "
            f"more than the budget of {max_decode_bytes / 2**20:,.0f} MiB (IMGTAG_MAX_DECODE_BYTES); "
            "save it smaller, at 8 bits a sample or without transparency",
        )
    return info


def _bytes_per_sample(data: bytes, im: Image.Image) -> int:
    """Bytes per sample as stored: PNG's IHDR bit depth, TIFF's BitsPerSample, else Pillow's mode."""
    if im.format == "PNG" and len(data) > 24:
        return 2 if data[24] == 16 else 1  # IHDR: signature 8, length 4, type 4, size 8, bit depth
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, (8,))
        bits = max(bits) if isinstance(bits, tuple) else int(bits)
        return max(1, -(-int(bits) // 8))
    return 2 if im.mode.startswith("I;16") else 4 if im.mode in ("I", "F") else 1


def _check_size(name: str, fmt: str, width: int, height: int, max_pixels: int) -> None:
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedFormatError(
            name, f"{fmt} is not supported; convert it to one of {', '.join(SUPPORTED_FORMATS)}"
        )
    if width <= 0 or height <= 0:
        raise TruncatedImageError(name, f"the header gives an empty size {width}x{height}")
    if width * height > max_pixels:
        raise TooManyPixelsError(
            name,
            f"{width}x{height} is {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (IMGTAG_MAX_PIXELS); downscale it first",
        )


def _orientation(im: Image.Image) -> int:
    """EXIF orientation without decoding pixels (Pillow's ``getexif`` loads PNGs whole)."""
    if im.format == "GIF":
        return 1
    if im.format == "PNG":
        raw = im.info.get("exif")
        if not raw:
            return 1
        exif = Image.Exif()
        exif.load(raw)
    else:
        exif = im.getexif()
    value = int(exif.get(EXIF_ORIENTATION, 1) or 1)
    return value if 1 <= value <= 8 else 1


def _reduction_for(info: ImageInfo, min_side: int | None) -> int:
    """Largest libjpeg scale (8, 4, 2) that keeps the shorter side at least ``min_side``."""
    if info.format != "JPEG" or not min_side:
        return 1
    shorter = min(info.width, info.height)
    for factor in (8, 4, 2):
        if shorter // factor >= min_side:
            return factor
    return 1


_REDUCED_FLAGS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4, 8: cv2.IMREAD_REDUCED_COLOR_8}


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        return (pixels >> 8).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        return (np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    info = np.iinfo(pixels.dtype)
    return ((pixels.astype(np.float64) - info.min) / (info.max - info.min) * 255.0).astype(np.uint8)


def _apply_orientation(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 1..8 as OpenCV flips and rotations."""
    if orientation == 2:
        return cv2.flip(pixels, 1)
    if orientation == 3:
        return cv2.rotate(pixels, cv2.ROTATE_180)
    if orientation == 4:
        return cv2.flip(pixels, 0)
    if orientation == 5:
        return cv2.flip(cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE), 1)
    if orientation == 6:
        return cv2.rotate(pixels, cv2.ROTATE_90_CLOCKWISE)
    if orientation == 7:
        return cv2.flip(cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE), 1)
    if orientation == 8:
        return cv2.rotate(pixels, cv2.ROTATE_90_COUNTERCLOCKWISE)
    return pixels


def _flatten_alpha_to_bgr(pixels: np.ndarray) -> np.ndarray:
    """Any channel layout from ``IMREAD_UNCHANGED`` to BGR, alpha composited on white."""
    pixels = _to_uint8(pixels)
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    channels = pixels.shape[2]
    if channels == 1:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if channels == 2:  # gray + alpha
        gray, alpha = pixels[..., 0], pixels[..., 1]
        pixels = np.dstack([gray, gray, gray, alpha])
        channels = 4
    if channels == 4:
        # In bands of rows: float copies of the whole image would take 16 bytes a pixel.
        out = np.empty(pixels.shape[:2] + (3,), np.uint8)
        for top in range(0, pixels.shape[0], 512):
            band = pixels[top : top + 512]
            alpha = band[..., 3:4].astype(np.float32) / 255.0
            out[top : top + 512] = band[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5
        return out
    return pixels[..., :3]


def _decode_bgr(data: bytes, name: str, info: ImageInfo, min_side: int | None) -> np.ndarray:
    if info.format == "JPEG" and data.rfind(b"\xff\xd9") < 0:
        raise TruncatedImageError(name, "the JPEG is truncated (no end-of-image marker)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if info.has_alpha:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if pixels is not None:
            pixels = _apply_orientation(_flatten_alpha_to_bgr(pixels), info.orientation)
    else:
        factor = _reduction_for(info, min_side)
        flags = _REDUCED_FLAGS[factor] if factor > 1 else cv2.IMREAD_COLOR  # applies EXIF orientation
        pixels = cv2.imdecode(buffer, flags)
    if pixels is None or pixels.size == 0:
        raise TruncatedImageError(
            name, f"the {info.format} data could not be decoded: the file is truncated or corrupt"
        )
    return pixels


def decode(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode an image at full size.

    Returns:
        ``(rgb, info)``: an ``(H, W, 3)`` RGB ``uint8`` array (EXIF orientation applied) and
        the header information.

    Raises:
        ImageError: a subclass naming the problem and ``name``.
    """
    info = probe(data, name, max_pixels, max_decode_bytes)
    return cv2.cvtColor(_decode_bgr(data, name, info, None), cv2.COLOR_BGR2RGB), info


def load_for_model(
    data: bytes,
    size: int,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode (at reduced size where the JPEG allows) and resize to ``size`` x ``size`` RGB.

    The whole picture is kept (no crop): for tagging, what is near the edge counts too.
    """
    info = probe(data, name, max_pixels, max_decode_bytes)
    bgr = _decode_bgr(data, name, info, size)
    h, w = bgr.shape[:2]
    # INTER_AREA anti-aliases large reductions; below 2x (the usual case after a reduced JPEG
    # decode, which low-passes in the DCT) bilinear is as good and five times cheaper.
    interpolation = cv2.INTER_AREA if min(h, w) >= 2 * size else cv2.INTER_LINEAR
    resized = cv2.resize(bgr, (size, size), interpolation=interpolation)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), info


def load_to_fit(
    data: bytes,
    size: int,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode and shrink to fit in ``size`` x ``size``, keeping the aspect ratio (thumbnails).

    Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg when the longer side still
    reaches ``size``; smaller images are returned at their own size (never enlarged).

    Returns:
        ``(rgb, info)``: an RGB ``uint8`` array whose longer side is at most ``size``, and the
        header information.

    Raises:
        ImageError: a subclass naming the problem and ``name``.
    """
    info = probe(data, name, max_pixels, max_decode_bytes)
    # the shorter side that keeps the longer one at ``size`` after a reduced decode
    min_side = -(-size * min(info.width, info.height) // max(info.width, info.height))
    bgr = _decode_bgr(data, name, info, max(min_side, 1))
    h, w = bgr.shape[:2]
    scale = size / max(h, w)
    if scale < 1.0:
        target = (max(1, round(w * scale)), max(1, round(h * scale)))
        bgr = cv2.resize(bgr, target, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), info
