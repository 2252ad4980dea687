"""The TensorFlow decode the model runs (:func:`core.model.decode_and_resize`: training,
evaluation, the SavedModel under TF Serving) applies a JPEG's EXIF orientation as the OpenCV
path does, with :mod:`core.imageio`'s EXIF graph ops, which never fail on a bad block."""

import io
import struct

import numpy as np
import pytest
from PIL import Image

from core import imageio
from core import model as tagger_model

# ---------------------------------------------------------------- EXIF orientation in TensorFlow graph ops


class _TensorFlow:
    """TensorFlow, imported when a test first uses it, not when pytest collects this module:
    importing it at collection time installs absl's logging on the stderr that typer's
    CliRunner swaps out in the catalog tests, and pytest then loses its stderr."""

    def __getattr__(self, name):
        if name.startswith("_") or name == "pytestmark":  # pytest looks these up when it collects
            raise AttributeError(name)
        from core.tf_runtime import import_tensorflow

        return getattr(import_tensorflow(), name)


tf = _TensorFlow()

SIZE = 32
# One colour per quadrant: each of the 8 orientations puts them in a different arrangement,
# any two arrangements differ on at least half of the picture, and the colours are far apart
# (opposite corners of the RGB cube: any two differ by 210 in two channels).
QUADRANTS = ((20, 20, 20), (230, 230, 20), (230, 20, 230), (20, 230, 230))
CLOSE = 8.0  # mean absolute difference (0..255) between the two decoders, same orientation
FAR = 40.0  # at least this far from every other orientation's OpenCV picture


def picture(width: int = 64, height: int = 48) -> Image.Image:
    """An RGB picture with a different colour in each quadrant (top-left, top-right, ...)."""
    image = Image.new("RGB", (width, height))
    w, h = width // 2, height // 2
    for colour, (x, y) in zip(QUADRANTS, [(0, 0), (w, 0), (0, h), (w, h)], strict=True):
        image.paste(colour, (x, y, x + w, y + h))
    return image


def exif_block(orientation: int, endian: str = "<") -> bytes:
    """``Exif\\0\\0`` and a TIFF block with orientation tag, as Pillow writes them."""
    exif = Image.Exif()
    exif.endian = endian  # "<": "II" (little endian), ">": "MM" (big endian)
    exif[imageio.EXIF_ORIENTATION] = orientation
    return exif.tobytes()


def jpeg(image: Image.Image | None = None, exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    kwargs = {} if exif is None else {"exif": exif}
    (image or picture()).save(buffer, "JPEG", quality=95, **kwargs)
    return buffer.getvalue()


def segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def insert_after_soi(data: bytes, *segments: bytes) -> bytes:
    """The JPEG with marker segments inserted right after start-of-image (before JFIF APP0)."""
    assert data[:2] == b"\xff\xd8"
    return data[:2] + b"".join(segments) + data[2:]


def tiff_block(entries: list[tuple[int, int, int, bytes]], endian: str, ifd_offset: int = 8) -> bytes:
    """``Exif\\0\\0`` + a TIFF header + IFD0 with ``(tag, type, count, 4 value bytes)`` entries."""
    order = "<" if endian == "II" else ">"
    head = endian.encode() + struct.pack(order + "HI", 42, ifd_offset) + b"\0" * (ifd_offset - 8)
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack(order + "HHI", tag, kind, count) + value
    return b"Exif\0\0" + head + ifd + b"\0\0\0\0"


def short(value: int, endian: str) -> bytes:
    return struct.pack(("<" if endian == "II" else ">") + "HH", value, 0)


def camera_block(orientation: int, endian: str) -> bytes:
    """A camera-like IFD0: make, model, orientation, resolution unit, software."""
    return tiff_block(
        [
            (0x010F, 2, 4, b"Cam\0"),  # Make, ASCII
            (0x0110, 2, 3, b"X1\0\0"),  # Model
            (0x0112, 3, 1, short(orientation, endian)),
            (0x0128, 3, 1, short(2, endian)),  # ResolutionUnit
            (0x0131, 2, 4, b"fw1\0"),  # Software
        ],
        endian,
    )


@pytest.fixture(scope="module")
def graph():
    """``exif_orientation`` and ``decode_and_resize`` as the SavedModel runs them: in a
    ``tf.function`` over a scalar ``tf.string``."""
    spec = [tf.TensorSpec([], tf.string)]

    def decode(encoded):
        return tagger_model.decode_and_resize(encoded, SIZE)

    orientation = tf.function(imageio.exif_orientation, input_signature=spec)
    return orientation, tf.function(decode, input_signature=spec)


def orientation_of(data: bytes, graph) -> int:
    return int(graph[0](tf.constant(data)))


def tf_pixels(data: bytes, graph) -> np.ndarray:
    return graph[1](tf.constant(data)).numpy()


def cv_pixels(data: bytes, size: int = SIZE) -> np.ndarray:
    return imageio.load_for_model(data, size)[0].astype(np.float32)


def mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def assert_same_orientation_as_opencv(pixels: np.ndarray, orientation: int, references: dict) -> None:
    """``pixels`` matches OpenCV's picture of ``orientation``, and is far from every other one
    (so the closeness is not luck: a wrong orientation would fail)."""
    distances = {n: mad(pixels, ref) for n, ref in references.items()}
    assert distances[orientation] < CLOSE, distances
    assert all(d > FAR for n, d in distances.items() if n != orientation), distances


@pytest.fixture(scope="module")
def opencv_references():
    """OpenCV's ``load_for_model`` of the same stored pixels under each orientation tag."""
    refs = {}
    for n in range(1, 9):
        pixels, info = imageio.load_for_model(jpeg(exif=exif_block(n)), SIZE)
        assert info.orientation == n
        refs[n] = pixels.astype(np.float32)
    return refs


def test_references_are_far_apart(opencv_references):
    """The premise of the comparisons: the 8 orientations give 8 clearly different pictures,
    so a picture within CLOSE of one is more than FAR from all the others."""
    for a in range(1, 9):
        for b in range(a + 1, 9):
            assert mad(opencv_references[a], opencv_references[b]) > FAR + CLOSE, (a, b)


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_pillow_exif_is_read_and_applied_like_opencv(orientation, endian, graph, opencv_references):
    data = jpeg(exif=exif_block(orientation, endian))
    # Pillow writes a JFIF APP0 segment first, then the APP1 EXIF segment
    assert data[2:4] == b"\xff\xe0" and b"\xff\xe1" in data[:64]
    assert data.index(b"Exif\0\0") + 6 == data.index(b"II" if endian == "<" else b"MM")
    assert orientation_of(data, graph) == orientation
    assert int(imageio.exif_orientation(tf.constant(data))) == orientation  # eager too
    assert_same_orientation_as_opencv(tf_pixels(data, graph), orientation, opencv_references)


@pytest.mark.parametrize("endian", ["II", "MM"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_camera_exif_first_with_several_tags(orientation, endian, graph, opencv_references):
    """EXIF before JFIF, the tag third in IFD0, a padded IFD offset; written by hand."""
    data = insert_after_soi(jpeg(), segment(0xE1, camera_block(orientation, endian)))
    assert orientation_of(data, graph) == orientation
    assert imageio.probe(data).orientation == orientation  # Pillow reads it the same
    assert_same_orientation_as_opencv(tf_pixels(data, graph), orientation, opencv_references)

    padded = insert_after_soi(
        jpeg(), segment(0xE1, tiff_block([(0x0112, 3, 1, short(orientation, endian))], endian, 16))
    )
    assert orientation_of(padded, graph) == orientation


def test_exif_after_other_segments_is_found(graph, opencv_references):
    xmp = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>")  # an APP1 that is not EXIF
    icc = segment(0xE2, b"ICC_PROFILE\0" + b"\0" * 40)
    comments = [segment(0xFE, b"comment %d" % i) for i in range(20)]
    data = insert_after_soi(jpeg(), xmp, icc, *comments, segment(0xE1, camera_block(6, "MM")))
    assert orientation_of(data, graph) == 6
    assert_same_orientation_as_opencv(tf_pixels(data, graph), 6, opencv_references)


def test_the_segment_scan_is_bounded(graph):
    """EXIF behind more than 64 segments is not looked for (orientation 1), and still decodes."""
    comments = [segment(0xFE, b"c") for _ in range(70)]
    data = insert_after_soi(jpeg(), *comments, segment(0xE1, camera_block(6, "II")))
    assert orientation_of(data, graph) == 1
    assert tf_pixels(data, graph).shape == (SIZE, SIZE, 3)


def test_jpeg_without_exif_and_png_are_unchanged(graph, opencv_references):
    for data in (jpeg(), insert_after_soi(jpeg(), segment(0xE1, b"http://ns.adobe.com/xap/1.0/\0"))):
        assert orientation_of(data, graph) == 1
        assert_same_orientation_as_opencv(tf_pixels(data, graph), 1, opencv_references)

    buffer = io.BytesIO()
    picture().save(buffer, "PNG")
    png = buffer.getvalue()
    assert orientation_of(png, graph) == 1
    assert mad(tf_pixels(png, graph), cv_pixels(png)) < CLOSE
    assert_same_orientation_as_opencv(tf_pixels(png, graph), 1, opencv_references)


def bad_blocks():
    """EXIF blocks that are garbage, truncated or out of range: all read as orientation 1."""
    ok = camera_block(6, "II")
    return {
        "garbage": b"Exif\0\0" + bytes(range(7, 250, 3)),
        "not a byte order": b"Exif\0\0XX" + ok[8:],
        "wrong magic": ok[:8] + b"\x2b\x00" + ok[10:],
        "truncated header": b"Exif\0\0II*\0",
        "truncated ifd": ok[:30],
        "ifd offset past the block": ok[:10] + struct.pack("<I", 4000) + ok[14:],
        "ifd offset huge": ok[:10] + struct.pack("<I", 0xFFFFFFFF) + ok[14:],
        "ifd offset into the header": ok[:10] + struct.pack("<I", 2) + ok[14:],
        "entry count huge": ok[:14] + struct.pack("<H", 0xFFFF) + ok[16:],
        "orientation 0": tiff_block([(0x0112, 3, 1, short(0, "II"))], "II"),
        "orientation 9": tiff_block([(0x0112, 3, 1, short(9, "II"))], "II"),
        "orientation 65535": tiff_block([(0x0112, 3, 1, short(0xFFFF, "MM"))], "MM"),
        "orientation not a SHORT": tiff_block([(0x0112, 7, 2, short(6, "II"))], "II"),  # UNDEFINED
        "no orientation tag": tiff_block([(0x0110, 2, 2, b"X\0\0\0")], "II"),
        "empty ifd": tiff_block([], "MM"),
    }


@pytest.mark.parametrize("name", list(bad_blocks()))
def test_bad_exif_reads_as_orientation_1_and_still_decodes(name, graph, opencv_references):
    data = insert_after_soi(jpeg(), segment(0xE1, bad_blocks()[name]))
    assert orientation_of(data, graph) == 1
    assert int(imageio.exif_orientation(tf.constant(data))) == 1
    assert_same_orientation_as_opencv(tf_pixels(data, graph), 1, opencv_references)


def test_truncated_or_odd_bytes_never_raise(graph):
    """Any prefix of a JPEG with EXIF, and odd inputs, give an orientation in 1..8, no error."""
    data = insert_after_soi(jpeg(), segment(0xE1, camera_block(8, "MM")))
    end_of_exif = data.index(b"\xff\xe0")
    for cut in range(end_of_exif):  # the EXIF segment incomplete
        assert orientation_of(data[:cut], graph) == 1, cut
    assert orientation_of(data[:end_of_exif], graph) == 8
    odd = [b"", b"\xff", b"\xff\xd8", b"\xff\xd8\xff", b"\xff\xd8" + b"\xff" * 200, b"GIF89a" + b"\0" * 20]
    odd.append(b"\xff\xd8" + segment(0xE1, b"Exif\0\0") + b"\xff\xd9")  # EXIF header, no TIFF
    odd.append(b"\xff\xd8\xff\xe1\x00\x00" + b"Exif\0\0II*\0\x08\0\0\0")  # zero segment length
    for blob in odd:
        assert orientation_of(blob, graph) == 1, blob


def test_fill_bytes_before_a_marker_are_skipped(graph):
    data = insert_after_soi(jpeg(), b"\xff\xff" + segment(0xE1, camera_block(3, "II")))
    assert orientation_of(data, graph) == 3


def test_large_photo_uses_the_reduced_decode_then_rotates(monkeypatch):
    """1200x900 landscape-stored, orientation 6: decoded at 1/8 scale (150x112), rotated
    upright, and the same as OpenCV's reduced decode."""
    size = 96
    data = jpeg(picture(1200, 900), exif_block(6))
    references = {}
    for n in range(1, 9):
        pixels, info = imageio.load_for_model(jpeg(picture(1200, 900), exif_block(n)), size)
        assert (info.width, info.height) == ((900, 1200) if n >= 5 else (1200, 900))
        references[n] = pixels.astype(np.float32)

    ratios = []
    decode_jpeg = tf.io.decode_jpeg

    def recording(contents, *args, ratio=1, **kwargs):
        ratios.append(ratio)
        return decode_jpeg(contents, *args, ratio=ratio, **kwargs)

    monkeypatch.setattr(tf.io, "decode_jpeg", recording)
    eager = tagger_model.decode_and_resize(tf.constant(data), size).numpy()
    assert ratios == [8]  # eager: only the branch taken runs
    monkeypatch.undo()

    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def decode(encoded):
        return tagger_model.decode_and_resize(encoded, size)

    in_graph = decode(tf.constant(data)).numpy()
    assert in_graph.shape == (size, size, 3)
    np.testing.assert_allclose(in_graph, eager, atol=1e-3)
    assert_same_orientation_as_opencv(in_graph, 6, references)

    # the upright picture: the stored bottom-left quadrant (blue) is now top-left
    assert np.abs(in_graph[size // 4, size // 4] - QUADRANTS[2]).max() < 20


def test_a_batch_as_the_serving_signature_decodes_it(opencv_references):
    """``tf.map_fn`` over a ``[None]`` string batch, as ``serving.export`` builds ``serve``."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(images):
        return tf.map_fn(
            lambda encoded: tagger_model.decode_and_resize(encoded, SIZE),
            images,
            fn_output_signature=tf.TensorSpec([SIZE, SIZE, 3], tf.float32),
        )

    batch = [jpeg(exif=exif_block(n, "<" if n % 2 else ">")) for n in range(1, 9)]
    pixels = serve(tf.constant(batch)).numpy()
    for n in range(1, 9):
        assert_same_orientation_as_opencv(pixels[n - 1], n, opencv_references)
