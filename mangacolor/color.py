"""Colour-space helpers: luma, "is this page already in colour?", and luminance/chroma merging.

Merging follows DeOldify's post-processing idea: the network's colour is predicted at a small
working size, but only its chroma is kept; the luminance comes from the full-resolution input, so
lines and lettering stay exactly as sharp as the scan. We keep BT.601 luma (the Y of YCbCr)
because that is exactly the greyscale the colorizer was trained to invert: the training input is
the luma of the colour target.
"""

from __future__ import annotations

import cv2
import numpy as np

MERGE_MODES = ("auto", "luma", "multiply", "none")
"""How a colorizer's output comes back to a page's full resolution (``colorize --merge``)."""


def luma(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of a ``uint8`` (H, W, 3) RGB image as ``uint8`` (H, W); (H, W) passes through."""
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W) or (H, W, 3). Got {image.shape}")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    """``image`` with its long side shrunk to ``long_side`` (area filter); smaller images pass through."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def is_color(image: np.ndarray, chroma_threshold: float = 15.0, min_fraction: float = 0.01) -> bool:
    """Whether an image is already in colour (rather than a greyscale page, possibly tinted).

    A uniform paper tint (sepia, yellowed scans) is removed first by measuring chroma relative to
    the image's median a*, b*; the image counts as colour when more than ``min_fraction`` of its
    pixels lie more than ``chroma_threshold`` from that median.

    Args:
        image: ``uint8`` (H, W) or (H, W, 3) RGB.
    """
    if image.ndim == 2:
        return False
    lab = cv2.cvtColor(_shrink(image, 256), cv2.COLOR_RGB2Lab).astype(np.float32)
    a, b = lab[..., 1], lab[..., 2]
    dev = np.hypot(a - np.median(a), b - np.median(b))
    return float((dev > chroma_threshold).mean()) > min_fraction


INK_PAGE_SIZE = 256
"""Long side at which :func:`is_ink_page` looks for grey fills."""


def page_kind(gray: np.ndarray, max_filled: float = 0.03, min_bilevel: float = 0.95, min_ink: float = 0.005) -> str:
    """Whether a greyscale page is line art, screentone or shaded: ``"lines"``, ``"tone"`` or ``"shaded"``.

    Line art and screentone are ink on paper (black ink or white paper, which the colour must
    replace): a luminance merge cannot colour them, so ``colorize --merge auto`` multiplies them
    onto the colour instead, and ``colorize --line-model`` sends line art to a model of its own.
    A page with under ``min_ink`` of it inked (darker than 200) is ``"shaded"`` (a blank page is
    not ink). Otherwise:

    * ``"lines"`` (**strokes**): at a long side of :data:`INK_PAGE_SIZE` pixels the ink is opened
      with a 7 x 7 square, so strokes thinner than 7 px vanish; what stays filled and is grey (48 or
      lighter) is shading or dense tone. Solid black fills (hair, shadows) do not count. Under
      ``max_filled`` of the page in grey fills: line art, including soft pencil-like lines;
    * ``"tone"`` (**bilevel**): at full resolution at least ``min_bilevel`` of the pixels are black
      (under 48) or white (over 200): screentoned pages, whose dots only turn grey once shrunk;
    * ``"shaded"``: neither.

    On the 139 demo drawings held out by ``benchmarks/compare_inputs.py`` at 128 px, 136 of their
    ``sketch`` line drawings, all 139 of their screentoned versions (drawn at 512 px) and 9 of their
    greyscale versions (clip art of outlines or black shapes on white) are ink pages. On the 78
    held out at 256 px (``--val-fraction 0.05``), all 78 line drawings and 5 greyscale versions are
    ``"lines"``; of the screentoned versions, 51 are ``"tone"`` and 27 (little tone, mostly
    outline) ``"lines"``.

    Args:
        gray: ``uint8`` (H, W) page.
    """
    if gray.ndim != 2:
        raise ValueError(f"gray must be (H, W). Got {gray.shape}")
    if float((gray < 200).mean()) < min_ink:
        return "shaded"
    small = _shrink(gray, INK_PAGE_SIZE)
    ink = small < 200
    filled = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, np.ones((7, 7), np.uint8)).astype(bool)
    if float((filled & (small >= 48)).mean()) < max_filled:
        return "lines"
    if float(((gray < 48) | (gray > 200)).mean()) >= min_bilevel:
        return "tone"
    return "shaded"


def is_ink_page(gray: np.ndarray, max_filled: float = 0.03, min_bilevel: float = 0.95, min_ink: float = 0.005) -> bool:
    """Whether a greyscale page is ink on paper (line art, screentone) rather than shaded: see :func:`page_kind`.

    Args:
        gray: ``uint8`` (H, W) page.
    """
    return page_kind(gray, max_filled, min_bilevel, min_ink) != "shaded"


_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)


MERGE_STRIP_PIXELS = 1 << 22
"""Pixels per strip of rows :func:`merge_luminance` works on, so that its float temporaries stay small
beside a page of 100 megapixels."""


def merge_luminance(gray: np.ndarray, color: np.ndarray, strip_pixels: int = MERGE_STRIP_PIXELS) -> np.ndarray:
    """Combine a full-resolution greyscale page with a (smaller) colour prediction.

    The prediction is split into its luma and its chroma offsets ``d = rgb - luma(rgb)`` (which
    carry no luma). The result is ``gray + s * d`` where ``s`` in [0, 1] is, per pixel, the
    largest factor that keeps every channel inside [0, 255]. So the output's BT.601 luma equals
    the input page exactly (the greyscale of our output *is* the page), black lines and white
    paper stay neutral, and nothing is clipped into a hue shift.

    Args:
        gray: ``uint8`` (H, W) page luma at full resolution.
        color: ``uint8`` (h, w, 3) RGB prediction, any size; it is resized to (H, W).
        strip_pixels: pixels per strip of rows worked on at a time (the result does not depend on it).

    Returns:
        ``uint8`` (H, W, 3).
    """
    if gray.ndim != 2:
        raise ValueError(f"gray must be (H, W). Got {gray.shape}")
    if color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f"color must be (h, w, 3). Got {color.shape}")
    h, w = gray.shape
    c = color.astype(np.float32)  # (h, w, 3)
    d = c - (c @ _LUMA_WEIGHTS)[..., None]  # (h, w, 3) chroma offsets, zero luma
    # with their extremes: (h, w, 5) = d, max(d), min(d); d_max >= 0 >= d_min
    chroma = np.concatenate([d, d.max(axis=2, keepdims=True), d.min(axis=2, keepdims=True)], axis=2)
    # Bilinear resizing, as cv2's INTER_LINEAR does it: across first (a prediction's few rows at
    # the page's width), then down, a strip of page rows at a time, so the page-sized float arrays
    # never exist. Its weights are positive, so the interpolated extremes bound the interpolated
    # channels' extremes: the scale below stays conservative and never clips.
    if chroma.shape[1] != w:
        chroma = np.stack([cv2.resize(chroma[..., k], (w, chroma.shape[0])) for k in range(5)], axis=2)
    above, below, weight = _linear_rows(chroma.shape[0], h)
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, strip_pixels // max(w, 1))
    for top in range(0, h, rows):  # the temporaries below are a strip's, not the page's
        band = slice(top, top + rows)
        f = weight[band, None, None]
        part = chroma[above[band]] * (1.0 - f) + chroma[below[band]] * f  # (rows, W, 5)
        y = gray[band].astype(np.float32)  # (rows, W)
        s = np.minimum((255.0 - y) / np.maximum(part[..., 3], 1e-6), y / np.maximum(-part[..., 4], 1e-6))
        np.minimum(s, 1.0, out=s)
        strip = part[..., :3] * s[..., None]  # (rows, W, 3)
        strip += y[..., None]
        strip += 0.5
        np.clip(strip, 0, 255, out=strip)
        out[band] = strip  # truncates, as astype(np.uint8) does
    return out


def _linear_rows(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear resampling of ``src`` rows to ``dst`` (cv2's INTER_LINEAR mapping: pixel centres
    aligned, edges clamped): for each output row the source rows above and below and the weight
    of the one below (``float32``)."""
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    above = np.floor(pos).astype(np.int64)
    weight = (pos - above).astype(np.float32)
    weight[above < 0] = 0.0
    above = np.clip(above, 0, src - 1)
    weight[above >= src - 1] = 0.0
    below = np.minimum(above + 1, src - 1)
    return above, below, weight
