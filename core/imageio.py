"""Image input: bytes in, RGB ``uint8`` arrays out, with a typed error for every bad file.

Decoding is OpenCV's (``cv2.imdecode`` releases the GIL, so a thread pool decodes in
parallel). Pillow is used only to read the header lazily: format, size, mode and EXIF
orientation, before any pixel is decoded, so a decompression bomb is refused without
allocating it.

Supported: JPEG, PNG, WebP, BMP, TIFF and GIF (first frame). Grayscale, alpha (composited on
white), 16-bit and CMYK inputs all come out as 3-channel RGB ``uint8``. When the caller needs
only a small image (the model's input size), JPEGs are decoded at 1/2, 1/4 or 1/8 scale by
libjpeg itself (``IMREAD_REDUCED_COLOR_*``), which is several times faster on camera photos.

Memory is counted as the decoders really spend it (:meth:`ImageInfo.decode_cost`, measured on
OpenCV 5 for every format): the decoded image twice (OpenCV decodes into a buffer of its own,
then copies), at the depth and channels it is decoded at, plus what a format makes the decoder
hold: a TIFF's largest strip or tile at its stored depth, a progressive JPEG's coefficients,
GIF's and animations' canvases. A file whose cost passes ``IMGTAG_MAX_DECODE_BYTES`` is refused
from its header; every decode also reserves its cost from the process's budget
(:mod:`core.decode_budget`), so concurrent decodes never hold more than it together.

A JPEG's EXIF orientation is read from its header here, and also in TensorFlow graph ops
(:func:`exif_orientation`, :func:`apply_exif_orientation`) for the decode that training and the
exported SavedModel share (:func:`core.model.decode_and_resize`): both paths turn a portrait
camera photo upright the same way.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from core import decode_budget
from core.errors import UsageError
from core.tf_runtime import import_tensorflow

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)
DEFAULT_MAX_PIXELS = 100_000_000
#: Bytes one image's decode may spend (:meth:`ImageInfo.decode_cost`). A 100-megapixel 8-bit RGB
#: photo, which OpenCV decodes through two buffers of 286 MiB, fits (572 MiB); a 9999x9999 RGBA
#: PNG at 16 bits (1.5 GiB) or a 10000x10000 RGB TIFF at 16 bits in one strip (1.1 GiB) does
#: not, however few bytes its file has.
DEFAULT_MAX_DECODE_BYTES = 600 * 1024 * 1024
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH, _TIFF_ROWS_PER_STRIP, _TIFF_COMPRESSION = 322, 323, 278, 259
_TIFF_SAMPLES, _TIFF_BITS = 277, 258
#: What any decode holds beside its buffers (the codec's state, row buffers, allocator slack):
#: measured 5-6 MiB over the buffers on every format.
DECODE_OVERHEAD = 8 * 1024 * 1024
#: The float temporaries of compositing alpha on white, a band of rows at a time.
ALPHA_BANDS = 16 * 1024 * 1024
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
    """What the header says, with width and height as displayed (after EXIF rotation).

    Attributes:
        channels: samples per pixel as stored (3 for RGB, 4 with alpha, 1 for gray).
        chunk_bytes: TIFF: the largest strip or tile at its stored depth, which the decoder
            holds whole (0 for other formats).
        chunk_compressed: TIFF: the strips are compressed (libtiff then reads the compressed
            bytes, not a second copy of the strip).
        progressive_bytes: a progressive JPEG's DCT coefficients, which libjpeg keeps for the
            whole image even when it decodes at a reduced scale (0 otherwise).
        animated: more than one frame (animated PNG, WebP or GIF): the decoder composes the
            first on full-size canvases.
    """

    format: str
    width: int
    height: int
    mode: str
    orientation: int = 1
    has_alpha: bool = False
    bytes_per_sample: int = 1
    channels: int = 3
    chunk_bytes: int = 0
    chunk_compressed: bool = True
    progressive_bytes: int = 0
    animated: bool = False

    @property
    def decoded_bytes(self) -> int:
        """What the decoder returns for the pixels of one frame: with alpha OpenCV keeps every
        channel at its stored depth; without, it decodes straight to 8-bit BGR."""
        if self.has_alpha:
            return self.width * self.height * self.channels * self.bytes_per_sample
        return self.width * self.height * 3

    def decode_cost(self, reduction: int = 1) -> int:
        """Bytes a decode of this image really holds at its peak (measured on OpenCV 5).

        Args:
            reduction: the libjpeg scale (1, 2, 4, 8) the decode uses; JPEG only.
        """
        return sum(part for _, part in self._cost_parts(reduction))

    def _cost_parts(self, reduction: int = 1) -> list[tuple[str, int]]:
        pixels = self.width * self.height
        parts = [("the decoder's state", DECODE_OVERHEAD)]
        if self.has_alpha:
            # decoded at full depth with alpha (twice, as OpenCV copies), then flattened: an 8-bit
            # copy (or gray + alpha spread to four channels) and the RGB result beside it
            stored = self.decoded_bytes
            parts.append(("the decoded pixels", max(2 * stored, stored + 4 * pixels + 3 * pixels)))
            parts.append(("alpha compositing in bands", ALPHA_BANDS))
        else:
            scaled = -(-self.width // reduction) * -(-self.height // reduction) * 3
            parts.append(("two buffers of the decoded pixels", 2 * scaled))
        if self.chunk_bytes:
            parts.append(
                (
                    "the largest TIFF strip or tile, held whole",
                    self.chunk_bytes * (1 if self.chunk_compressed else 2),
                )
            )
        if self.progressive_bytes:
            parts.append(("the progressive JPEG's coefficients", self.progressive_bytes))
        if self.format == "WEBP":
            parts.append(("libwebp's buffers", pixels))  # measured 2.1 decoded copies, not 2
        if self.format == "GIF":
            parts.append(("GIF's canvases", 3 * pixels))  # 9 bytes a pixel in all
        if self.animated:
            parts.append(("the animation's canvases", 8 * pixels))
        return parts


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
                layout = _layout(im, width, height, depth)
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
    info = ImageInfo(fmt, width, height, mode, orientation, has_alpha, depth, **layout)
    _check_decode_budget(name, info, max_decode_bytes)
    return info


def _check_decode_budget(name: str, info: ImageInfo, max_decode_bytes: int) -> None:
    """Raise :class:`DecodeBudgetError` when decoding the image would take more than
    ``max_decode_bytes``, naming what takes the memory and how to save it smaller."""
    cost = info.decode_cost()
    if cost > max_decode_bytes:
        kind = f"{'with alpha, ' if info.has_alpha else ''}{8 * info.bytes_per_sample} bits a sample"
        parts = ", ".join(f"{what} {part / 2**20:,.0f} MiB" for what, part in info._cost_parts() if part)
        advice = "save it smaller, at 8 bits a sample or without transparency"
        if info.chunk_bytes > 64 * 2**20:
            advice += ", or as a TIFF with small strips or tiles"
        raise DecodeBudgetError(
            name,
            f"{info.width}x{info.height} ({kind}) would take {cost / 2**20:,.0f} MiB to decode ({parts}), "
            f"more than the budget of {max_decode_bytes / 2**20:,.0f} MiB (IMGTAG_MAX_DECODE_BYTES); {advice}",
        )


def _layout(im: Image.Image, width: int, height: int, depth: int) -> dict:
    """The header fields that decide what a decoder holds beyond the pixels (see :class:`ImageInfo`)."""
    layout: dict = {"channels": len(im.getbands())}
    if im.format == "TIFF":
        tags = im.tag_v2
        samples = int(tags.get(_TIFF_SAMPLES, layout["channels"]) or 1)
        if _TIFF_TILE_WIDTH in tags and _TIFF_TILE_LENGTH in tags:
            chunk_width, chunk_rows = int(tags[_TIFF_TILE_WIDTH]), int(tags[_TIFF_TILE_LENGTH])
        else:
            chunk_width, chunk_rows = (
                width,
                min(int(tags.get(_TIFF_ROWS_PER_STRIP, height) or height), height),
            )
        layout["channels"] = samples
        layout["chunk_bytes"] = chunk_width * chunk_rows * samples * depth
        layout["chunk_compressed"] = int(tags.get(_TIFF_COMPRESSION, 1) or 1) != 1
    elif im.format == "JPEG" and im.info.get("progressive"):
        sampling = getattr(im, "layer", None) or [(0, 1, 1, 0)] * layout["channels"]
        most_h = max(h for _, h, _, _ in sampling)
        most_v = max(v for _, _, v, _ in sampling)
        share = sum(h * v for _, h, v, _ in sampling) / (most_h * most_v)
        layout["progressive_bytes"] = int(width * height * share * 2)  # a 16-bit coefficient a sample
    if im.format in ("PNG", "WEBP"):
        layout["animated"] = bool(getattr(im, "is_animated", False))
    return layout


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


#: Pixels per band when converting in place-sized steps (a few MB of temporaries, whatever the width).
_BAND_PIXELS = 1 << 18


def _band_rows(pixels: np.ndarray) -> int:
    return max(1, _BAND_PIXELS // max(1, pixels.shape[1]))


def _to_uint8(pixels: np.ndarray) -> np.ndarray:
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.uint16:
        out = np.empty(
            pixels.shape, np.uint8
        )  # in bands: a whole-image temporary would take 2 bytes a sample
        rows = _band_rows(pixels)
        for top in range(0, pixels.shape[0], rows):
            np.right_shift(pixels[top : top + rows], 8, out=out[top : top + rows], casting="unsafe")
        return out
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
        rows = _band_rows(pixels)
        for top in range(0, pixels.shape[0], rows):
            band = pixels[top : top + rows]
            alpha = band[..., 3:4].astype(np.float32) / 255.0
            out[top : top + rows] = band[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha) + 0.5
        return out
    return pixels[..., :3]


def _decode_bgr(data: bytes, name: str, info: ImageInfo, factor: int = 1) -> np.ndarray:
    if info.format == "JPEG" and data.rfind(b"\xff\xd9") < 0:
        raise TruncatedImageError(name, "the JPEG is truncated (no end-of-image marker)")
    buffer = np.frombuffer(data, dtype=np.uint8)
    if info.has_alpha:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if pixels is not None:
            pixels = _apply_orientation(_flatten_alpha_to_bgr(pixels), info.orientation)
    else:
        flags = _REDUCED_FLAGS[factor] if factor > 1 else cv2.IMREAD_COLOR  # applies EXIF orientation
        pixels = cv2.imdecode(buffer, flags)
    if pixels is None or pixels.size == 0:
        raise TruncatedImageError(
            name, f"the {info.format} data could not be decoded: the file is truncated or corrupt"
        )
    return pixels


def _reserved(
    info: ImageInfo, name: str, factor: int, budget: decode_budget.DecodeBudget | None, wait: float | None
):
    """Hold this decode's cost in the process's decode budget (or ``budget``) while it runs."""
    return (budget or decode_budget.process_budget()).reserve(
        info.decode_cost(factor), timeout=wait, name=name
    )


def decode(
    data: bytes,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    budget: decode_budget.DecodeBudget | None = None,
    wait: float | None = None,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode an image at full size.

    Returns:
        ``(rgb, info)``: an ``(H, W, 3)`` RGB ``uint8`` array (EXIF orientation applied) and
        the header information.

    Args:
        budget: the decode budget to reserve the decode's cost from (default: the process's).
        wait: seconds to wait for room in it (None: as long as it takes).

    Raises:
        ImageError: a subclass naming the problem and ``name``.
        core.decode_budget.DecodeBusy: no room in the budget within ``wait`` seconds.
    """
    info = probe(data, name, max_pixels, max_decode_bytes)
    with _reserved(info, name, 1, budget, wait):
        return cv2.cvtColor(_decode_bgr(data, name, info), cv2.COLOR_BGR2RGB), info


def load_for_model(
    data: bytes,
    size: int,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    budget: decode_budget.DecodeBudget | None = None,
    wait: float | None = None,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode (at reduced size where the JPEG allows) and resize to ``size`` x ``size`` RGB.

    The whole picture is kept (no crop): for tagging, what is near the edge counts too.
    ``budget`` and ``wait`` as for :func:`decode`.
    """
    info = probe(data, name, max_pixels, max_decode_bytes)
    factor = _reduction_for(info, size)
    with _reserved(info, name, factor, budget, wait):
        bgr = _decode_bgr(data, name, info, factor)
        h, w = bgr.shape[:2]
        # INTER_AREA anti-aliases large reductions; below 2x (the usual case after a reduced JPEG
        # decode, which low-passes in the DCT) bilinear is as good and five times cheaper.
        interpolation = cv2.INTER_AREA if min(h, w) >= 2 * size else cv2.INTER_LINEAR
        resized = cv2.resize(bgr, (size, size), interpolation=interpolation)
        del bgr
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), info


def load_to_fit(
    data: bytes,
    size: int,
    name: str = "<bytes>",
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES,
    budget: decode_budget.DecodeBudget | None = None,
    wait: float | None = None,
) -> tuple[np.ndarray, ImageInfo]:
    """Decode and shrink to fit in ``size`` x ``size``, keeping the aspect ratio (thumbnails).

    Large JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg when the longer side still
    reaches ``size``; smaller images are returned at their own size (never enlarged).

    Returns:
        ``(rgb, info)``: an RGB ``uint8`` array whose longer side is at most ``size``, and the
        header information.

    Raises:
        ImageError: a subclass naming the problem and ``name``.
        core.decode_budget.DecodeBusy: no room in the budget within ``wait`` seconds
            (``budget`` and ``wait`` as for :func:`decode`).
    """
    info = probe(data, name, max_pixels, max_decode_bytes)
    # the shorter side that keeps the longer one at ``size`` after a reduced decode
    min_side = -(-size * min(info.width, info.height) // max(info.width, info.height))
    factor = _reduction_for(info, max(min_side, 1))
    with _reserved(info, name, factor, budget, wait):
        bgr = _decode_bgr(data, name, info, factor)
        h, w = bgr.shape[:2]
        scale = size / max(h, w)
        if scale < 1.0:
            target = (max(1, round(w * scale)), max(1, round(h * scale)))
            bgr = cv2.resize(bgr, target, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), info


# ---------------------------------------------------------------------------------------------
# The same EXIF orientation in TensorFlow graph ops: the decode that training, evaluation and the
# exported SavedModel share (core.model.decode_and_resize) reads it from the encoded bytes, since
# TF Serving runs no Python. TensorFlow is imported only when these are called.

# JPEG segments scanned for the EXIF block, and IFD0 entries searched for the orientation: both
# bounded, so a crafted file costs a few hundred small ops at most.
_MAX_JPEG_SEGMENTS = 64
_MAX_IFD_ENTRIES = 100
_EXIF_HEADER = (0x45, 0x78, 0x69, 0x66, 0x00, 0x00)  # b"Exif\0\0"


def exif_orientation(encoded):
    """The EXIF orientation (1..8) of encoded JPEG bytes, an int32 scalar tensor (TensorFlow ops only).

    Walks the JPEG's marker segments (at most 64, up to the start of scan) to the APP1 segment
    that starts with ``Exif\\0\\0``, reads its TIFF header (``II`` little endian, ``MM`` big
    endian) and looks for tag 0x0112 (type SHORT) among the first 100 entries of IFD0.
    Anything else gives 1: not a JPEG, no EXIF block, no orientation tag, a value outside
    1..8, and any malformed or truncated data. It never raises, so a bad EXIF block cannot
    stop the image from decoding. Being graph ops only (no Python at run time), it runs in a
    ``tf.function`` and in the exported SavedModel under TF Serving.
    """
    tf = import_tensorflow()
    read, size = _byte_reader(tf, encoded)
    tiff, end = _exif_segment(tf, read, size)
    value, found = _tiff_orientation(tf, read, tiff, end)
    known = found & (value >= 1) & (value <= 8)
    return tf.cast(tf.where(known, value, tf.constant(1, tf.int64)), tf.int32)


def _byte_reader(tf, encoded):
    """``(read, size)``: ``read(offset, count)`` gives ``count`` bytes of ``encoded`` from
    ``offset`` as int64 (zeros past either end), never failing; ``size`` is its length."""
    size = tf.cast(tf.strings.length(encoded), tf.int64)

    def read(offset, count: int):
        start = tf.clip_by_value(offset, 0, size)
        raw = tf.io.decode_raw(tf.strings.substr(encoded, start, tf.constant(count, tf.int64)), tf.uint8)
        return tf.reshape(tf.pad(tf.cast(raw, tf.int64), [[0, count - tf.shape(raw)[0]]]), [count])

    return read, size


def _exif_segment(tf, read, size):
    """``(tiff, end)``: where the EXIF block's TIFF header starts and its segment ends (both -1
    when there is none), walking the JPEG's segments from just after start-of-image (FF D8)."""

    def int64(value):
        return tf.constant(value, tf.int64)

    soi = read(int64(0), 2)
    not_jpeg = tf.logical_not((soi[0] == 0xFF) & (soi[1] == 0xD8))

    def scan(step, offset, done, tiff, end):
        head = read(offset, 10)  # FF, marker, length (big endian, counts itself), then Exif\0\0?
        marker, length = head[1], head[2] * 256 + head[3]
        fill = marker == 0xFF  # a fill byte before a marker
        standalone = ((marker >= 0xD0) & (marker <= 0xD7)) | (marker == 0x01)  # no length field
        exif = (
            (marker == 0xE1)
            & (length >= 6 + 2 + 8)  # the header, the length field, a TIFF header
            & (offset + 2 + length <= size)
            & tf.reduce_all(tf.equal(head[4:10], tf.constant(_EXIF_HEADER, tf.int64)))
        )
        malformed = (head[0] != 0xFF) | (~fill & ~standalone & (length < 2))
        stop = malformed | exif | (marker == 0xDA) | (marker == 0xD9)  # start of scan, end of image
        advance = tf.where(fill, int64(1), tf.where(standalone, int64(2), 2 + length))
        return (
            step + 1,
            offset + advance,
            stop,
            tf.where(exif, offset + 10, tiff),
            tf.where(exif, offset + 2 + length, end),
        )

    _, _, _, tiff, end = tf.while_loop(
        lambda step, offset, done, tiff, end: (step < _MAX_JPEG_SEGMENTS) & tf.logical_not(done),
        scan,
        (tf.constant(0), int64(2), not_jpeg, int64(-1), int64(-1)),
        maximum_iterations=_MAX_JPEG_SEGMENTS,
    )
    return tiff, end


def _tiff_orientation(tf, read, tiff, end):
    """``(value, found)``: the orientation entry (tag 0x0112, type SHORT) of IFD0 in the TIFF
    block at ``tiff``, and whether the block is valid and has one."""
    # The TIFF header: byte order, the magic number 42, the offset of IFD0 (from the header).
    header = read(tiff, 8)
    little = (header[0] == 0x49) & (header[1] == 0x49)  # "II"
    big = (header[0] == 0x4D) & (header[1] == 0x4D)  # "MM"

    def u16(data, at: int):
        first, second = data[..., at], data[..., at + 1]
        return tf.where(little, first + second * 256, first * 256 + second)

    def u32(data, at: int):
        low, high = u16(data, at), u16(data, at + 2)
        return tf.where(little, low + high * 65536, low * 65536 + high)

    ifd = tiff + u32(header, 4)
    count = u16(read(ifd, 2), 0)
    valid = (
        (tiff >= 0)
        & (little | big)
        & (u16(header, 2) == 42)
        & (ifd >= tiff + 8)
        & (ifd + 2 + 12 * count <= end)  # the whole IFD inside the segment
    )
    # IFD0: a count, then 12-byte entries (tag, type, count, value); searched all at once.
    entries = tf.reshape(read(ifd + 2, 12 * _MAX_IFD_ENTRIES), [_MAX_IFD_ENTRIES, 12])
    present = tf.range(_MAX_IFD_ENTRIES, dtype=tf.int64) < count
    match = present & (u16(entries, 0) == EXIF_ORIENTATION) & (u16(entries, 2) == 3)  # 3: SHORT
    value = tf.gather(u16(entries, 8), tf.argmax(tf.cast(match, tf.int32), output_type=tf.int64))
    return value, valid & tf.reduce_any(match)


def apply_exif_orientation(image, orientation):
    """Turn a decoded ``(H, W, C)`` image tensor upright by its EXIF ``orientation`` (an int32
    scalar tensor from :func:`exif_orientation`), as OpenCV's ``IMREAD_COLOR`` does (TensorFlow ops only)."""
    tf = import_tensorflow()

    def transposed():
        return tf.transpose(image, [1, 0, 2])

    return tf.switch_case(
        tf.clip_by_value(orientation, 1, 8) - 1,
        [
            lambda: image,  # 1: upright
            lambda: tf.reverse(image, [1]),  # 2: mirrored horizontally
            lambda: tf.reverse(image, [0, 1]),  # 3: rotated 180
            lambda: tf.reverse(image, [0]),  # 4: mirrored vertically
            transposed,  # 5: transpose
            lambda: tf.reverse(transposed(), [1]),  # 6: rotate 90 clockwise
            lambda: tf.reverse(transposed(), [0, 1]),  # 7: transverse
            lambda: tf.reverse(transposed(), [0]),  # 8: rotate 90 counter-clockwise
        ],
    )
