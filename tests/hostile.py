"""Hostile image files made on the fly by the tests (never committed): small on disk, huge to decode.

:func:`tiff` writes a baseline TIFF of any size, depth and strip or tile layout with its pixel
data deflated once per band and repeated, so a 10000x10000 RGB image at 16 bits a sample (572 MiB
of pixels) takes about 3 MB on disk and a second and a few MB of memory to make.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

# TIFF tags
_WIDTH, _HEIGHT, _BITS, _COMPRESSION, _PHOTOMETRIC = 256, 257, 258, 259, 262
_STRIP_OFFSETS, _SAMPLES, _ROWS_PER_STRIP, _STRIP_BYTES = 273, 277, 278, 279
_PLANAR, _TILE_WIDTH, _TILE_LENGTH, _TILE_OFFSETS, _TILE_BYTES = 284, 322, 323, 324, 325
_EXTRA_SAMPLES, _SAMPLE_FORMAT = 338, 339
_SHORT, _LONG = 3, 4
DEFLATE = 8


def _raw_block(data: bytes) -> bytes:
    """``data`` as deflate blocks ending on a byte boundary (a full flush), without the zlib header:
    blocks that refer to nothing before them, so the same bytes can be repeated in a stream."""
    packer = zlib.compressobj(1)
    return (packer.compress(data) + packer.flush(zlib.Z_FULL_FLUSH))[2:]


def _deflated(length: int, seed: int, band: int = 1 << 20) -> bytes:
    """A zlib stream of ``length`` bytes: one band (a gentle gradient with a little noise,
    different for each seed) repeated. The band is deflated once and its blocks repeated, so
    600 MB of pixels take a fraction of a second and a few MB of memory to make."""
    rng = np.random.default_rng(seed)
    pattern = (np.arange(band, dtype=np.uint32) // 4099 % 251).astype(np.uint8)
    pattern[rng.integers(0, band, 256)] ^= 0x5A
    pattern = pattern.tobytes()
    whole, rest = divmod(length, band)
    block = _raw_block(pattern)
    checksum = 1
    for _ in range(whole):
        checksum = zlib.adler32(pattern, checksum)
    checksum = zlib.adler32(pattern[:rest], checksum)
    stream = b"\x78\x01" + block * whole + (_raw_block(pattern[:rest]) if rest else b"")
    return stream + b"\x03\x00" + struct.pack(">I", checksum)  # an empty final block, then Adler-32


def tiff(
    width: int,
    height: int,
    *,
    samples: int = 3,
    bits: int = 16,
    rows_per_strip: int | None = None,
    tile: int | None = None,
    seed: int = 0,
) -> bytes:
    """A little-endian TIFF, deflate-compressed, RGB (3 samples), RGBA (4) or gray (1).

    Args:
        rows_per_strip: rows in each strip (default: the whole image in one strip).
        tile: square tiles of this side instead of strips (a multiple of 16).
    """
    row_bytes = width * samples * bits // 8
    if tile:
        across, down = -(-width // tile), -(-height // tile)
        chunk_bytes = [tile * tile * samples * bits // 8] * (across * down)
    else:
        rows = rows_per_strip or height
        chunk_bytes = [min(rows, height - top) * row_bytes for top in range(0, height, rows)]
    chunks = [_deflated(n, seed + i) for i, n in enumerate(chunk_bytes)]

    entries = [
        (_WIDTH, _LONG, [width]),
        (_HEIGHT, _LONG, [height]),
        (_BITS, _SHORT, [bits] * samples),
        (_COMPRESSION, _SHORT, [DEFLATE]),
        (_PHOTOMETRIC, _SHORT, [2 if samples >= 3 else 1]),
        (_SAMPLES, _SHORT, [samples]),
        (_PLANAR, _SHORT, [1]),
        (_SAMPLE_FORMAT, _SHORT, [1] * samples),
    ]
    if samples in (2, 4):
        entries.append((_EXTRA_SAMPLES, _SHORT, [2]))  # unassociated alpha
    if tile:
        entries += [(_TILE_WIDTH, _LONG, [tile]), (_TILE_LENGTH, _LONG, [tile])]
        offsets_tag, counts_tag = _TILE_OFFSETS, _TILE_BYTES
    else:
        entries.append((_ROWS_PER_STRIP, _LONG, [rows_per_strip or height]))
        offsets_tag, counts_tag = _STRIP_OFFSETS, _STRIP_BYTES
    entries += [(offsets_tag, _LONG, [0] * len(chunks)), (counts_tag, _LONG, [len(c) for c in chunks])]
    entries.sort()

    ifd_offset = 8
    ifd_size = 2 + 12 * len(entries) + 4
    extra = ifd_offset + ifd_size  # values that do not fit in 4 bytes go here
    sizes = {_SHORT: 2, _LONG: 4}
    blobs, layout = [], []
    for tag, kind, values in entries:
        size = sizes[kind] * len(values)
        if size > 4:
            layout.append((tag, kind, values, extra))
            extra += size
        else:
            layout.append((tag, kind, values, None))
    data_start = extra
    offsets, position = [], data_start
    for c in chunks:
        offsets.append(position)
        position += len(c)

    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_offset))
    out += struct.pack("<H", len(layout))
    for tag, kind, values, where in layout:
        if tag == offsets_tag:
            values = offsets
        fmt = "<" + ("H" if kind == _SHORT else "I") * len(values)
        packed = struct.pack(fmt, *values)
        if where is None:
            out += struct.pack("<HHI", tag, kind, len(values)) + packed.ljust(4, b"\x00")
        else:
            out += struct.pack("<HHII", tag, kind, len(values), where)
            blobs.append(packed)
    out += struct.pack("<I", 0)
    for blob in blobs:
        out += blob
    assert len(out) == data_start
    for c in chunks:
        out += c
    return bytes(out)
