"""Finding TrueType fonts that can draw the digits 0-9, and caching their glyphs.

matplotlib ships about 40 fonts, so the digit renderer needs no font download.
About half of them cannot draw digits: the STIX size/non-Unicode variants and
the ``*Display`` fonts have no digit code points, LastResort draws the same
placeholder box for every character, and the TeX fonts ``cmex10``/``cmsy10``
map the ASCII digit code points to brackets and maths symbols. The checks here
reject all of those, so a user's own font folder is filtered the same way.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path

import matplotlib
from matplotlib.ft2font import FT2Font
from PIL import Image, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "DIGITS",
    "FONT_SUFFIXES",
    "available_digit_fonts",
    "has_digit_glyphs",
    "resolve_fonts",
    "glyph_mask",
]

DIGITS = "0123456789"
FONT_SUFFIXES = (".ttf", ".otf")
_INDEX_NAME = re.compile(r"(glyph|gid|g|index)\d+")
_UNICODE_NAME = re.compile(r"(?:uni|u)([0-9A-Fa-f]{4,6})")
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _font_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in FONT_SUFFIXES)


def _glyph_name_is_digit(name: str, digit: int) -> bool:
    # Fonts without glyph names give "" or an index name; only a name of another
    # glyph (cmsy10's "infinity" at U+0031) proves the code point holds no digit.
    if not name or _INDEX_NAME.fullmatch(name):
        return True
    if match := _UNICODE_NAME.fullmatch(name):
        return int(match[1], 16) == ord(DIGITS[digit])
    return name.lower().startswith(_DIGIT_NAMES[digit])  # also "zerooldstyle", "zero.slash"


@lru_cache(maxsize=512)
def has_digit_glyphs(path: str) -> bool:
    """Whether the font at ``path`` draws ten distinct, non-empty digits 0-9.

    Args:
        path: a ``.ttf`` or ``.otf`` file.
    """
    try:
        face = FT2Font(path)
        charmap = face.get_charmap()
        font = ImageFont.truetype(path, 32)
    except (OSError, RuntimeError, ValueError):  # not a font FreeType can read
        return False
    for digit, char in enumerate(DIGITS):
        if ord(char) not in charmap:
            return False
        if not _glyph_name_is_digit(face.get_glyph_name(charmap[ord(char)]), digit):
            return False
    # Placeholder fonts map every code point to the same box: the bitmaps tell.
    bitmaps = set()
    for char in DIGITS:
        canvas = Image.new("L", (48, 48))
        ImageDraw.Draw(canvas).text((4, 4), char, font=font, fill=255)
        if canvas.getbbox() is None:
            return False
        bitmaps.add(canvas.tobytes())
    return len(bitmaps) == len(DIGITS)


@lru_cache(maxsize=8)
def _usable_fonts(directory: str) -> tuple[str, ...]:
    return tuple(str(p) for p in _font_files(Path(directory)) if has_digit_glyphs(str(p)))


def available_digit_fonts(directory: str | None = None) -> list[str]:
    """The font files in ``directory`` that can draw the digits 0-9, sorted by path.

    Args:
        directory: folder to search; ``None`` means the fonts bundled with matplotlib
            (22 usable out of about 40 in matplotlib 3.x).
    """
    if directory is None:
        directory = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    return list(_usable_fonts(str(Path(directory).resolve())))


def resolve_fonts(fonts: list[str] | None) -> tuple[str, ...]:
    """Expands and checks the ``fonts`` argument of a renderer.

    Args:
        fonts: font files and/or folders of font files; ``None`` means matplotlib's.

    Raises:
        ValueError: a path does not exist, a file cannot draw digits, or nothing usable is left.
    """
    if fonts is None:
        found = available_digit_fonts()
        if not found:
            raise ValueError(
                "fonts: matplotlib's bundled fonts were not found; pass fonts=[...] with "
                "paths to .ttf/.otf files or folders"
            )
        return tuple(found)
    if isinstance(fonts, (str, os.PathLike)):
        fonts = [fonts]  # a lone path is a common slip; treat it as a list of one
    resolved: list[str] = []
    for entry in fonts:
        path = Path(entry).expanduser()
        if path.is_dir():
            usable = available_digit_fonts(str(path))
            if not usable:
                raise ValueError(
                    f"fonts: folder {str(entry)!r} holds no .ttf/.otf font that can draw the "
                    "digits 0-9; pass a folder with such fonts or font file paths"
                )
            resolved.extend(usable)
        elif not path.is_file():
            raise ValueError(
                f"fonts: {str(entry)!r} does not exist; pass paths to .ttf/.otf files or "
                "folders, e.g. from available_digit_fonts()"
            )
        elif not has_digit_glyphs(str(path)):
            raise ValueError(
                f"fonts: {str(entry)!r} cannot draw the ten digits 0-9 (not a font, or its "
                "digit code points hold other symbols); pick one from available_digit_fonts()"
            )
        else:
            resolved.append(str(path.resolve()))
    if not resolved:
        raise ValueError("fonts: the list is empty; pass None for matplotlib's fonts")
    return tuple(dict.fromkeys(resolved))  # drop duplicates, keep order for determinism


@lru_cache(maxsize=64)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size)


@lru_cache(maxsize=1024)
def _digit_box(path: str, size: int) -> tuple[int, int]:
    """Top and bottom of the union of the ten digits' ink, so all digits share one scale."""
    font = _truetype(path, size)
    boxes = [font.getbbox(char) for char in DIGITS]
    return min(b[1] for b in boxes), max(b[3] for b in boxes)


@lru_cache(maxsize=16384)
def glyph_mask(path: str, digit: int, size: int, weight: int) -> tuple[Image.Image, int, int]:
    """One digit's anti-aliased coverage mask, rasterised once per process and reused.

    Rasterising with FreeType is the slowest step of rendering, while a font, a digit,
    a reference size and a stroke weight take few values: caching turns it into a lookup.

    Args:
        path: font file.
        digit: 0-9.
        size: font size in pixels.
        weight: stroke change in pixels at ``size``: positive thickens (PIL stroke),
            negative thins (grey-level erosion).

    Returns:
        ``(mask, top, band)``: an ``L`` image cropped to the ink (treat it as read-only:
        it is shared), the ink's top below the top of the font's digit band, and the
        band's height (tallest digit top to lowest digit bottom), which sets the scale.
    """
    font = _truetype(path, size)
    pad = max(weight, 0) + 2
    x0, y0, x1, y1 = font.getbbox(DIGITS[digit], stroke_width=max(weight, 0))
    canvas = Image.new("L", (x1 - x0 + 2 * pad, y1 - y0 + 2 * pad))
    ImageDraw.Draw(canvas).text(
        (pad - x0, pad - y0),
        DIGITS[digit],
        font=font,
        fill=255,
        stroke_width=max(weight, 0),
        stroke_fill=255,
    )
    if weight < 0:
        thinned = canvas.filter(ImageFilter.MinFilter(2 * -weight + 1))
        # Hairline fonts (cmr10, STIX) would break into specks: keep them as they are.
        if _ink(thinned) >= 0.5 * _ink(canvas):
            canvas = thinned
    box = canvas.getbbox() or (0, 0, 1, 1)
    top, bottom = _digit_box(path, size)
    return canvas.crop(box), y0 - pad + box[1] - top, bottom - top


def _ink(mask: Image.Image) -> int:
    return sum(level * count for level, count in enumerate(mask.histogram()))
