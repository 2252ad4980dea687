"""Pictures that are not photos of things, drawn for training: documents, screenshots, graphics, textures.

A DAM library holds scans, slides, screenshots, charts, logos and texture swatches beside its
photos, and a tagger trained on photos alone gives them confident nonsense (a page of text
became ``person``, gravel ``food``). The starter model learns four tags for them
(:data:`KINDS`) from pictures this module draws, so no image has to be committed or downloaded:

- ``document``: pages of text (paragraphs, headings, columns, lists, tables, forms, receipts),
  sometimes scanned (tilted, blurred, noisy, shadowed);
- ``screenshot``: application windows, web pages, code editors and terminals;
- ``graphic``: charts (matplotlib), logos, diagrams, flat illustrations, line drawings, icons;
- ``texture``: surfaces filling the picture (noise, wood, marble, stone, grass, brick, fabric,
  sand, patterns).

Every picture comes from a seeded :class:`random.Random`, so a build is reproducible. Text uses
the DejaVu fonts matplotlib ships (:data:`TRAINING_FONTS`); the quality benchmark draws its
held-out pictures with the other fonts matplotlib ships (STIX, Computer Modern) and other chart
styles, so it measures pictures unlike the training ones.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DOCUMENT, SCREENSHOT, GRAPHIC, TEXTURE = "document", "screenshot", "graphic", "texture"
KINDS = (DOCUMENT, SCREENSHOT, GRAPHIC, TEXTURE)
TRAINING_FONTS = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
)
HELD_OUT_FONTS = (
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmtt10.ttf",
    "cmb10.ttf",
)
TRAINING_CHART_STYLES = ("default", "ggplot", "bmh", "fivethirtyeight", "grayscale", "classic")
HELD_OUT_CHART_STYLES = (
    "seaborn-v0_8-whitegrid",
    "dark_background",
    "Solarize_Light2",
    "tableau-colorblind10",
)

_WORDS = (
    "the of and to in is for on with as by at from that this are be or an it not can all new more "
    "report total page year data value market plan team order number results project service update "
    "account price customer summary section figure table note item date amount review status design "
    "policy system model process quality manager contract invoice delivery annual budget meeting "
    "agenda minutes product release version user settings search profile message about contact home "
    "help login download upload gallery library asset image archive export import share details "
    "north south river garden station library museum energy network growth revenue region client"
).split()


def font_files(names: Sequence[str]) -> list[Path]:
    """The font files matplotlib ships with these names (matplotlib is a training dependency)."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [folder / n for n in names if (folder / n).is_file()]


class Fonts:
    """Loads fonts by file and size, once each."""

    def __init__(self, files: Sequence[Path]):
        if not files:
            raise FileNotFoundError("no font files found: is matplotlib installed?")
        self.files = list(files)
        self._cache: dict[tuple[Path, int], ImageFont.FreeTypeFont] = {}

    def get(self, rng: random.Random, size: int, mono: bool | None = None) -> ImageFont.FreeTypeFont:
        files = self.files
        if mono is not None:
            chosen = [f for f in files if ("Mono" in f.name or "cmtt" in f.name) == mono]
            files = chosen or files
        path = rng.choice(files)
        key = (path, size)
        if key not in self._cache:
            self._cache[key] = ImageFont.truetype(str(path), size)
        return self._cache[key]


def _words(rng: random.Random, n: int, capital: bool = True) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(n))
    return text[:1].upper() + text[1:] if capital else text


def _number(rng: random.Random) -> str:
    return rng.choice(["{:,}", "{:.2f}", "{}%", "${:,.2f}", "{}"]).format(
        rng.randint(1, 99999) / rng.choice([1, 1, 100])
    )


def _colour(rng: random.Random, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return tuple(rng.randint(lo, hi) for _ in range(3))


def _size(rng: random.Random, portrait: bool | None = None) -> tuple[int, int]:
    long, short = rng.randint(420, 900), 0
    short = int(long / rng.uniform(1.2, 1.8))
    if portrait is None:
        portrait = rng.random() < 0.5
    return (short, long) if portrait else (long, short)


def _text_block(draw, rng, fonts, box, colour, size, mono=None, ragged=True) -> None:
    """Lines of words filling ``box`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    font = fonts.get(rng, size, mono)
    line = int(size * rng.uniform(1.2, 1.6))
    y = y0
    while y + line <= y1:
        words, text = rng.randint(3, 14), ""
        text = _words(rng, words)
        while draw.textlength(text, font=font) > x1 - x0 and " " in text:
            text = text.rsplit(" ", 1)[0]
        if ragged and rng.random() < 0.15:
            text = text[: max(3, len(text) // 2)]
        draw.text((x0, y), text, fill=colour, font=font)
        y += line
        if rng.random() < 0.12:
            y += line  # a paragraph break


def _scanned(image: Image.Image, rng: random.Random) -> Image.Image:
    """Tilt, blur, noise and a shadow, as a scanner or a phone photo of a page leaves them."""
    if rng.random() < 0.5:
        image = image.rotate(
            rng.uniform(-4, 4), resample=Image.BICUBIC, expand=True, fillcolor=_colour(rng, 150, 255)
        )
    if rng.random() < 0.5:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.4)))
    pixels = np.asarray(image, np.float32)
    if rng.random() < 0.6:
        pixels += np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(2, 14), pixels.shape)
    if rng.random() < 0.4:
        h, w = pixels.shape[:2]
        ramp = np.linspace(rng.uniform(0.55, 0.9), 1.0, w)[None, :, None]
        pixels *= ramp if rng.random() < 0.5 else ramp[:, ::-1]
    if rng.random() < 0.3:
        pixels = pixels.mean(axis=2, keepdims=True).repeat(3, axis=2)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def document(rng: random.Random, fonts: Fonts) -> Image.Image:
    """A page: title, paragraphs in one or two columns, and sometimes a list, a table or a form.

    Long because it is one list of drawing instructions that share a random stream: split into
    steps, it would only pass the stream and the layout around, and reordering a call would
    change every drawn picture (and the starter model built on them).
    """
    width, height = _size(rng, portrait=rng.random() < 0.75)
    paper = rng.choice(
        [(255, 255, 255), (250, 248, 240), (245, 245, 245), (255, 253, 231), _colour(rng, 215, 255)]
    )
    image = Image.new("RGB", (width, height), paper)
    draw = ImageDraw.Draw(image)
    ink = rng.choice([(0, 0, 0), (30, 30, 30), (60, 60, 60), (20, 30, 90)])
    margin = int(width * rng.uniform(0.06, 0.14))
    y = margin
    style = rng.choice(["article", "article", "list", "table", "form", "receipt", "slide"])
    if style == "receipt":
        width_inner = width - 2 * margin
        font = fonts.get(rng, rng.randint(11, 18), mono=True)
        line = int(font.size * 1.4)
        while y + line < height - margin:
            left, right = _words(rng, rng.randint(1, 3)), _number(rng)
            draw.text((margin, y), left, fill=ink, font=font)
            draw.text(
                (margin + width_inner - draw.textlength(right, font=font), y), right, fill=ink, font=font
            )
            y += line
        return _scanned(image, rng) if rng.random() < 0.7 else image
    title = fonts.get(rng, rng.randint(18, 40))
    draw.text(
        (margin, y), _words(rng, rng.randint(2, 6)), fill=rng.choice([ink, _colour(rng, 0, 150)]), font=title
    )
    y += int(title.size * 1.8)
    size = rng.randint(10, 20)
    if style == "slide":
        for _ in range(rng.randint(3, 6)):
            font = fonts.get(rng, size + 6)
            draw.ellipse(
                (margin, y + font.size // 3, margin + font.size // 3, y + 2 * font.size // 3), fill=ink
            )
            draw.text((margin + font.size, y), _words(rng, rng.randint(3, 8)), fill=ink, font=font)
            y += int(font.size * 2)
    elif style == "table":
        _text_block(draw, rng, fonts, (margin, y, width - margin, y + (height - y) // 3), ink, size)
        y += (height - y) // 3 + size
        rows, cols = rng.randint(4, 12), rng.randint(2, 6)
        cell_h = min(int(size * 2), (height - margin - y) // max(rows, 1))
        cell_w = (width - 2 * margin) // cols
        font = fonts.get(rng, size)
        for r in range(rows):
            for c in range(cols):
                box = (margin + c * cell_w, y + r * cell_h, margin + (c + 1) * cell_w, y + (r + 1) * cell_h)
                if rng.random() < 0.7:
                    draw.rectangle(box, outline=ink)
                text = _words(rng, 1) if c == 0 or r == 0 else _number(rng)
                draw.text((box[0] + 4, box[1] + 2), text, fill=ink, font=font)
    elif style == "form":
        font = fonts.get(rng, size)
        while y + size * 3 < height - margin:
            draw.text((margin, y), _words(rng, rng.randint(1, 3)) + ":", fill=ink, font=font)
            left = margin + int((width - 2 * margin) * 0.35)
            draw.rectangle((left, y - 2, width - margin, y + size + 4), outline=ink)
            if rng.random() < 0.5:
                draw.text((left + 4, y), _words(rng, rng.randint(1, 4), False), fill=(20, 20, 120), font=font)
            y += size * 3
    else:
        columns = 2 if width > 500 and rng.random() < 0.4 else 1
        gap = margin // 2
        col_w = (width - 2 * margin - gap * (columns - 1)) // columns
        for c in range(columns):
            x0 = margin + c * (col_w + gap)
            _text_block(draw, rng, fonts, (x0, y, x0 + col_w, height - margin), ink, size)
        if style == "list":
            for k in range(rng.randint(2, 6)):
                draw.text((margin, y + k * size * 2), f"{k + 1}.", fill=ink, font=fonts.get(rng, size))
    return _scanned(image, rng) if rng.random() < 0.5 else image


def screenshot(rng: random.Random, fonts: Fonts) -> Image.Image:
    """An application window, a web page, a code editor or a terminal.

    Long because it is one list of drawing instructions that share a random stream and a layout
    (title bar, sidebar, content): split into steps, it would only pass them around, and
    reordering a call would change every drawn picture (and the starter model built on them).
    """
    width, height = _size(rng, portrait=rng.random() < 0.2)
    dark = rng.random() < 0.35
    background = _colour(rng, 15, 50) if dark else _colour(rng, 225, 255)
    fg = _colour(rng, 190, 240) if dark else _colour(rng, 10, 70)
    accent = _colour(rng, 30, 220)
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    kind = rng.choice(["app", "web", "code", "terminal", "app", "web"])
    size = rng.randint(10, 16)
    font = fonts.get(rng, size)
    bar = rng.randint(22, 40)
    if kind in ("code", "terminal"):
        image.paste(_colour(rng, 5, 40), (0, 0, width, height))
        draw.rectangle((0, 0, width, bar), fill=_colour(rng, 40, 90))
        for k, c in enumerate([(237, 106, 94), (245, 191, 79), (98, 197, 84)]):
            draw.ellipse((10 + k * 20, bar // 2 - 6, 22 + k * 20, bar // 2 + 6), fill=c)
        mono = fonts.get(rng, size, mono=True)
        y, line = bar + 8, int(size * 1.45)
        number = 1
        while y + line < height:
            x = 8
            if kind == "code":
                draw.text((x, y), f"{number:>3}", fill=(110, 110, 110), font=mono)
                x += int(draw.textlength("0000", font=mono))
                x += int(draw.textlength(" ", font=mono)) * rng.choice([0, 0, 2, 4, 8])
            for _ in range(rng.randint(1, 6)):
                token = rng.choice(_WORDS) + rng.choice(["", "(", ")", " =", ".", ":", ",", "()"])
                colour = rng.choice(
                    [(86, 156, 214), (206, 145, 120), (220, 220, 170), (181, 206, 168), (212, 212, 212)]
                )
                if kind == "terminal":
                    colour = rng.choice([(200, 200, 200), (80, 250, 123), (240, 240, 240)])
                draw.text((x, y), token, fill=colour, font=mono)
                x += int(draw.textlength(token + " ", font=mono))
                if x > width - 40:
                    break
            y += line
            number += 1
        return image
    # title bar and menu
    draw.rectangle((0, 0, width, bar), fill=accent if rng.random() < 0.5 else _colour(rng, 60, 200))
    draw.text((12, bar // 2 - size // 2), _words(rng, rng.randint(1, 4)), fill=(255, 255, 255), font=font)
    x = width - 12
    for _ in range(rng.randint(0, 5)):
        label = rng.choice(_WORDS).capitalize()
        x -= int(draw.textlength(label, font=font)) + 18
        if x < width // 3:
            break
        draw.text((x, bar // 2 - size // 2), label, fill=(255, 255, 255), font=font)
    top, left = bar, 0
    if kind == "app" and rng.random() < 0.8:  # a sidebar with a list
        left = int(width * rng.uniform(0.15, 0.3))
        draw.rectangle((0, top, left, height), fill=_colour(rng, 30, 70) if dark else _colour(rng, 200, 240))
        y = top + 10
        while y + size * 2 < height:
            if rng.random() < 0.2:
                draw.rectangle((4, y - 3, left - 4, y + size + 5), fill=accent)
            draw.rectangle((10, y + 2, 10 + size, y + size), fill=_colour(rng, 60, 230))
            draw.text((14 + size, y), _words(rng, rng.randint(1, 2)), fill=fg, font=font)
            y += size * 2
    x0, y = left + 16, top + 14
    while y < height - 30:
        widget = rng.choice(["text", "text", "button", "field", "cards", "table", "heading", "check"])
        if widget == "heading":
            big = fonts.get(rng, size + rng.randint(6, 14))
            draw.text((x0, y), _words(rng, rng.randint(2, 5)), fill=fg, font=big)
            y += int(big.size * 1.8)
        elif widget == "text":
            lines = rng.randint(1, 4)
            _text_block(draw, rng, fonts, (x0, y, width - 16, y + lines * size * 1.5), fg, size)
            y += int(lines * size * 1.6)
        elif widget == "button":
            x = x0
            for _ in range(rng.randint(1, 4)):
                label = rng.choice(_WORDS).capitalize()
                w = int(draw.textlength(label, font=font)) + 24
                fill = (
                    accent
                    if rng.random() < 0.5
                    else (_colour(rng, 60, 90) if dark else _colour(rng, 200, 235))
                )
                draw.rounded_rectangle((x, y, x + w, y + size + 14), radius=rng.randint(0, 10), fill=fill)
                draw.text((x + 12, y + 7), label, fill=(255, 255, 255) if fill == accent else fg, font=font)
                x += w + 10
            y += size + 26
        elif widget == "field":
            draw.text((x0, y), rng.choice(_WORDS).capitalize(), fill=fg, font=font)
            draw.rectangle(
                (x0, y + size + 6, min(width - 16, x0 + rng.randint(150, 420)), y + 2 * size + 16), outline=fg
            )
            y += 2 * size + 28
        elif widget == "check":
            for _ in range(rng.randint(2, 4)):
                draw.rectangle(
                    (x0, y, x0 + size, y + size), outline=fg, fill=accent if rng.random() < 0.5 else None
                )
                draw.text((x0 + size + 8, y), _words(rng, rng.randint(2, 5)), fill=fg, font=font)
                y += int(size * 1.8)
        elif widget == "cards":
            count = rng.randint(2, 4)
            w = (width - 16 - x0 - 12 * (count - 1)) // count
            h = rng.randint(60, 140)
            for k in range(count):
                cx = x0 + k * (w + 12)
                draw.rounded_rectangle(
                    (cx, y, cx + w, y + h),
                    radius=6,
                    outline=_colour(rng, 120, 200),
                    fill=_colour(rng, 40, 70) if dark else _colour(rng, 235, 255),
                )
                draw.rectangle((cx + 8, y + 8, cx + w - 8, y + h // 2), fill=_colour(rng, 80, 230))
                draw.text((cx + 8, y + h // 2 + 6), _words(rng, 2), fill=fg, font=font)
            y += h + 16
        else:  # table
            cols = rng.randint(3, 6)
            w = (width - 16 - x0) // cols
            for r in range(rng.randint(3, 8)):
                if r % 2:
                    draw.rectangle(
                        (x0, y, width - 16, y + size + 10),
                        fill=_colour(rng, 35, 60) if dark else _colour(rng, 235, 248),
                    )
                for c in range(cols):
                    text = rng.choice(_WORDS) if c == 0 or r == 0 else _number(rng)
                    draw.text((x0 + c * w + 4, y + 4), text, fill=fg, font=font)
                y += size + 10
            y += 10
    return image


def _chart(rng: random.Random, styles: Sequence[str], width: int, height: int) -> Image.Image:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = np.random.default_rng(rng.randint(0, 2**31))
    with plt.style.context(rng.choice(list(styles))):
        fig, axes = plt.subplots(figsize=(width / 100, height / 100), dpi=100)
        kind = rng.choice(["bar", "line", "pie", "scatter", "hist", "area", "barh"])
        n = rng.randint(3, 12)
        labels = [rng.choice(_WORDS) for _ in range(n)]
        if kind == "bar":
            axes.bar(range(n), data.uniform(1, 100, n), tick_label=labels)
        elif kind == "barh":
            axes.barh(range(n), data.uniform(1, 100, n), tick_label=labels)
        elif kind == "line":
            for _ in range(rng.randint(1, 4)):
                axes.plot(np.cumsum(data.normal(0, 1, 40)), marker=rng.choice(["", "o", "s", "."]))
        elif kind == "pie":
            axes.pie(
                data.uniform(1, 10, min(n, 7)),
                labels=labels[: min(n, 7)],
                autopct=rng.choice([None, "%1.0f%%"]),
            )
        elif kind == "scatter":
            axes.scatter(
                data.normal(0, 1, 200), data.normal(0, 1, 200), s=data.uniform(5, 60, 200), alpha=0.7
            )
        elif kind == "hist":
            axes.hist(data.normal(0, 1, 500), bins=rng.randint(10, 40))
        else:
            axes.stackplot(range(20), *[data.uniform(1, 5, 20) for _ in range(3)])
        axes.set_title(_words(rng, rng.randint(2, 5)))
        if kind != "pie":
            axes.set_xlabel(rng.choice(_WORDS))
            axes.set_ylabel(rng.choice(_WORDS))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _shape(draw, rng, cx, cy, r, fill, outline=None, width=0) -> None:
    kind = rng.choice(["circle", "square", "triangle", "polygon", "star", "ring"])
    if kind == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
    elif kind == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=fill, width=max(3, r // 4))
    elif kind == "square":
        draw.rounded_rectangle(
            (cx - r, cy - r, cx + r, cy + r),
            radius=rng.randint(0, r // 2),
            fill=fill,
            outline=outline,
            width=width,
        )
    else:
        points = {"triangle": 3, "polygon": rng.randint(5, 8), "star": 10}[kind]
        pts = []
        for k in range(points):
            angle = 2 * math.pi * k / points + rng.uniform(0, 0.2)
            rr = r * (0.45 if kind == "star" and k % 2 else 1.0)
            pts.append((cx + rr * math.cos(angle), cy + rr * math.sin(angle)))
        draw.polygon(pts, fill=fill, outline=outline)


def graphic(
    rng: random.Random, fonts: Fonts, chart_styles: Sequence[str] = TRAINING_CHART_STYLES
) -> Image.Image:
    """A chart, a logo, a diagram, a flat illustration, a line drawing or a sheet of icons.

    Long because it is one list of drawing instructions that share a random stream: reordering
    a call would change every drawn picture (and the starter model built on them).
    """
    width, height = _size(rng)
    kind = rng.choice(["chart", "chart", "logo", "diagram", "illustration", "drawing", "icons"])
    if kind == "chart":
        return _chart(rng, chart_styles, width, height)
    background = rng.choice([(255, 255, 255), _colour(rng, 200, 255), _colour(rng, 0, 255)])
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    if kind == "logo":
        r = rng.randint(min(width, height) // 8, min(width, height) // 3)
        cx, cy = width // 2 + rng.randint(-width // 6, width // 6), height // 2 - rng.randint(0, height // 6)
        for _ in range(rng.randint(1, 3)):
            _shape(
                draw,
                rng,
                cx + rng.randint(-r // 2, r // 2),
                cy + rng.randint(-r // 2, r // 2),
                r,
                _colour(rng),
            )
            r = int(r * rng.uniform(0.4, 0.8))
        font = fonts.get(rng, rng.randint(24, 60))
        text = rng.choice(_WORDS).upper() if rng.random() < 0.5 else _words(rng, rng.randint(1, 2))
        tw = draw.textlength(text, font=font)
        draw.text(
            ((width - tw) / 2, min(height - font.size - 10, cy + r + 20)),
            text,
            fill=_colour(rng, 0, 120),
            font=font,
        )
    elif kind == "diagram":
        font = fonts.get(rng, rng.randint(11, 16))
        boxes = []
        for _ in range(rng.randint(3, 8)):
            w, h = rng.randint(70, 160), rng.randint(34, 70)
            x, y = rng.randint(10, max(11, width - w - 10)), rng.randint(10, max(11, height - h - 10))
            boxes.append((x, y, x + w, y + h))
        for a, b in zip(boxes, boxes[1:], strict=False):
            start, end = ((a[0] + a[2]) // 2, (a[1] + a[3]) // 2), ((b[0] + b[2]) // 2, (b[1] + b[3]) // 2)
            draw.line((start, end), fill=(40, 40, 40), width=2)
            angle = math.atan2(end[1] - start[1], end[0] - start[0])
            tip = (end[0] - 30 * math.cos(angle), end[1] - 30 * math.sin(angle))
            draw.polygon(
                [
                    tip,
                    (tip[0] - 10 * math.cos(angle - 0.4), tip[1] - 10 * math.sin(angle - 0.4)),
                    (tip[0] - 10 * math.cos(angle + 0.4), tip[1] - 10 * math.sin(angle + 0.4)),
                ],
                fill=(40, 40, 40),
            )
        for box in boxes:
            shape = rng.choice(["rect", "round", "ellipse"])
            fill = _colour(rng, 150, 255)
            if shape == "ellipse":
                draw.ellipse(box, fill=fill, outline=(30, 30, 30), width=2)
            else:
                draw.rounded_rectangle(
                    box, radius=0 if shape == "rect" else 10, fill=fill, outline=(30, 30, 30), width=2
                )
            draw.text(
                (box[0] + 8, (box[1] + box[3]) // 2 - 8),
                _words(rng, rng.randint(1, 2)),
                fill=(0, 0, 0),
                font=font,
            )
    elif kind == "illustration":
        outline = rng.choice([None, (0, 0, 0), (40, 40, 40)])
        for _ in range(rng.randint(4, 25)):
            r = rng.randint(10, min(width, height) // 3)
            _shape(
                draw,
                rng,
                rng.randint(0, width),
                rng.randint(0, height),
                r,
                _colour(rng),
                outline,
                rng.randint(1, 4),
            )
    elif kind == "drawing":
        image.paste(rng.choice([(255, 255, 255), (250, 247, 235)]), (0, 0, width, height))
        for _ in range(rng.randint(5, 40)):
            pts = [(rng.randint(0, width), rng.randint(0, height))]
            for _ in range(rng.randint(2, 12)):
                pts.append((pts[-1][0] + rng.randint(-80, 80), pts[-1][1] + rng.randint(-80, 80)))
            draw.line(
                pts,
                fill=rng.choice([(0, 0, 0), (60, 60, 60), _colour(rng, 0, 120)]),
                width=rng.randint(1, 5),
                joint="curve",
            )
    else:  # icons
        cell = rng.randint(40, 90)
        for y in range(10, height - cell, cell + 10):
            for x in range(10, width - cell, cell + 10):
                _shape(draw, rng, x + cell // 2, y + cell // 2, cell // 2 - 4, _colour(rng))
    return image


def _noise(rng: random.Random, shape: tuple[int, int], octaves: int = 5) -> np.ndarray:
    """Fractal value noise in [0, 1]."""
    import cv2

    data = np.random.default_rng(rng.randint(0, 2**31))
    h, w = shape
    out = np.zeros(shape, np.float32)
    amplitude, total = 1.0, 0.0
    for k in range(octaves):
        cells = 2 ** (k + rng.randint(1, 3))
        small = data.random((cells, cells)).astype(np.float32)
        out += amplitude * cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amplitude
        amplitude *= rng.uniform(0.4, 0.7)
    out /= total
    return (out - out.min()) / (out.max() - out.min() + 1e-6)


def _palette(rng: random.Random, values: np.ndarray) -> np.ndarray:
    """Map [0, 1] values through 2-3 random colours."""
    stops = np.array([_colour(rng) for _ in range(rng.randint(2, 3))], np.float32)
    if rng.random() < 0.5:  # earthy, low saturation
        grey = stops.mean(axis=1, keepdims=True)
        stops = grey + (stops - grey) * rng.uniform(0.1, 0.5)
    positions = np.linspace(0, 1, len(stops))
    return np.stack([np.interp(values, positions, stops[:, c]) for c in range(3)], axis=-1)


def texture(rng: random.Random) -> Image.Image:
    """A surface filling the picture.

    Long because it is one table of surface recipes (noise, wood, marble, brick ...) drawn from one
    random stream: reordering them would change every drawn picture (and the starter model).
    """
    import cv2

    width, height = _size(rng)
    data = np.random.default_rng(rng.randint(0, 2**31))
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = rng.choice(
        ["noise", "wood", "marble", "stone", "grass", "brick", "fabric", "sand", "pattern", "bark"]
    )
    if kind == "noise":
        rgb = _palette(rng, _noise(rng, (height, width), rng.randint(3, 7)))
    elif kind == "wood":
        scale = rng.uniform(0.02, 0.08)
        rings = np.sin((x * scale + _noise(rng, (height, width)) * rng.uniform(4, 12)) * math.pi * 2)
        rgb = _palette(rng, (rings + 1) / 2 * 0.6 + _noise(rng, (height, width), 7) * 0.4)
    elif kind == "marble":
        turbulence = _noise(rng, (height, width), 6) * rng.uniform(5, 15)
        veins = np.abs(np.sin((x + y) * rng.uniform(0.01, 0.04) + turbulence))
        rgb = _palette(rng, veins ** rng.uniform(0.3, 1.0))
    elif kind == "stone":
        from scipy.spatial import cKDTree

        count = rng.randint(40, 600)
        seeds = np.column_stack([data.uniform(0, width, count), data.uniform(0, height, count)])
        distance, owner = cKDTree(seeds).query(np.column_stack([x.ravel(), y.ravel()]), k=2)
        shade = data.uniform(0.2, 1.0, count)[owner[:, 0]].reshape(height, width)
        edge = np.clip((distance[:, 1] - distance[:, 0]).reshape(height, width) / rng.uniform(2, 8), 0, 1)
        rgb = _palette(rng, shade * edge * 0.85 + _noise(rng, (height, width), 7) * 0.15)
    elif kind == "grass":
        canvas = Image.new(
            "RGB",
            (width, height),
            tuple(int(v) for v in (data.uniform(10, 60), data.uniform(40, 100), data.uniform(5, 40))),
        )
        draw = ImageDraw.Draw(canvas)
        for _ in range(rng.randint(1500, 5000)):
            x0, y0 = rng.randint(0, width), rng.randint(0, height)
            length, lean = rng.randint(8, 45), rng.uniform(-0.5, 0.5)
            green = (rng.randint(20, 120), rng.randint(80, 200), rng.randint(10, 70))
            draw.line((x0, y0, x0 + lean * length, y0 - length), fill=green, width=rng.randint(1, 3))
        rgb = np.asarray(canvas, np.float32)
    elif kind == "brick":
        bh, bw = rng.randint(18, 50), rng.randint(40, 110)
        mortar = rng.randint(2, 6)
        row = (y // bh).astype(int)
        offset = np.where(row % 2 == 1, bw // 2, 0)
        in_mortar = ((y % bh) < mortar) | (((x + offset) % bw) < mortar)
        brick_id = row * 1000 + ((x + offset) // bw).astype(int)
        shade = (np.sin(brick_id * 12.9898) * 43758.5453) % 1.0
        values = (
            np.where(in_mortar, rng.uniform(0.8, 1.0), 0.2 + 0.5 * shade) * 0.8
            + _noise(rng, (height, width), 7) * 0.2
        )
        rgb = _palette(rng, values)
    elif kind == "fabric":
        period = rng.uniform(3, 10)
        weave = (np.sin(x / period * math.pi) * np.sin(y / period * math.pi) + 1) / 2
        rgb = _palette(rng, weave * 0.7 + _noise(rng, (height, width), 7) * 0.3)
    elif kind == "sand":
        grain = data.random((height, width)).astype(np.float32)
        grain = cv2.GaussianBlur(grain, (0, 0), rng.uniform(0.5, 1.5))
        rgb = _palette(rng, grain * 0.6 + _noise(rng, (height, width), 4) * 0.4)
    elif kind == "bark":
        stretched = cv2.resize(_noise(rng, (height // 8 + 1, width), 6), (width, height))
        rgb = _palette(rng, stretched ** rng.uniform(0.5, 2.0))
    else:  # a repeating pattern: stripes, checks or dots
        period = rng.randint(8, 60)
        which = rng.choice(["stripes", "checks", "dots"])
        if which == "stripes":
            values = (
                (x * math.cos(rng.uniform(0, math.pi)) + y * math.sin(rng.uniform(0, math.pi))) // period
            ) % 2
        elif which == "checks":
            values = ((x // period) + (y // period)) % 2
        else:
            values = (
                ((x % period) - period / 2) ** 2 + ((y % period) - period / 2) ** 2 < (period / 3) ** 2
            ).astype(np.float32)
        rgb = _palette(rng, values * 0.85 + _noise(rng, (height, width), 7) * 0.15)
    if rng.random() < 0.5:  # light falling across the surface
        rgb = rgb * np.linspace(rng.uniform(0.6, 1.0), rng.uniform(0.8, 1.2), width)[None, :, None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def draw(
    kind: str, rng: random.Random, fonts: Fonts, chart_styles: Sequence[str] = TRAINING_CHART_STYLES
) -> Image.Image:
    """One picture of ``kind`` (one of :data:`KINDS`)."""
    if kind == DOCUMENT:
        return document(rng, fonts)
    if kind == SCREENSHOT:
        return screenshot(rng, fonts)
    if kind == GRAPHIC:
        return graphic(rng, fonts, chart_styles)
    if kind == TEXTURE:
        return texture(rng)
    raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")


def pictures(
    count: int,
    seed: int,
    fonts: Sequence[Path] | None = None,
    chart_styles: Sequence[str] = TRAINING_CHART_STYLES,
) -> Iterator[tuple[str, str, Image.Image]]:
    """``count`` pictures of each kind: ``(kind, name, image)``, reproducible from ``seed``."""
    loaded = Fonts(fonts if fonts is not None else font_files(TRAINING_FONTS))
    for kind in KINDS:
        for k in range(count):
            rng = random.Random(f"{seed}:{kind}:{k}")
            yield kind, f"{kind}-{seed}-{k:04d}", draw(kind, rng, loaded, chart_styles)


def write(out: Path, count: int, seed: int = 0, progress: bool = False) -> Path:
    """Draw ``count`` pictures of each kind into ``out`` (JPEG, as uploads usually are) and write
    ``out/manifest.csv`` (``path,tags``) for ``imgtag ingest``. Returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for number, (kind, name, image) in enumerate(pictures(count, seed), start=1):
        path = out / kind / f"{name}.jpg"
        path.parent.mkdir(exist_ok=True)
        quality = random.Random(name).randint(70, 95)
        image.save(path, quality=quality)
        rows.append((str(path), kind))
        if progress and number % 200 == 0:
            print(f"drew {number}/{count * len(KINDS)} non-photo pictures", flush=True)
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["path", "tags"])
        writer.writerows(rows)
    return manifest
