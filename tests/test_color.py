"""Luma, colour and line-art detection, luminance/chroma merging."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mangacolor.color import is_color, is_line_art, luma, merge_luminance
from mangacolor.data import make_lines
from tests.conftest import drawing


def test_luma_bt601():
    img = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    assert luma(img).tolist() == [[76, 150, 29]]
    with pytest.raises(ValueError, match="Got"):
        luma(np.zeros((2, 2, 4), np.uint8))


def test_is_color_detects_colour_not_grey_or_tinted_scans():
    assert is_color(drawing(120, 160))
    gray = luma(drawing(120, 160))
    assert not is_color(gray)
    assert not is_color(np.repeat(gray[..., None], 3, axis=2))
    sepia = np.stack([gray, (gray * 0.9).astype(np.uint8), (gray * 0.7).astype(np.uint8)], -1)
    sepia[gray > 250] = (250, 240, 215)  # yellowed paper
    assert not is_color(sepia)
    speck = np.full((100, 100, 3), 255, np.uint8)
    speck[0, 0] = (255, 0, 0)  # one coloured pixel is noise, not a colour page
    assert not is_color(speck)


def test_merge_keeps_full_resolution_luminance():
    gray = np.tile(np.linspace(0, 255, 200).astype(np.uint8), (100, 1))  # (100, 200)
    small = np.zeros((10, 20, 3), np.uint8)
    small[...] = (200, 60, 60)  # reddish prediction
    out = merge_luminance(gray, small)
    assert out.shape == (100, 200, 3)
    assert np.abs(luma(out).astype(int) - gray).max() <= 1  # luminance is the input's
    assert (out[:, 0] == 0).all()  # black lines stay black, no clipped tint
    assert (out[:, -1] == 255).all()  # white paper stays white
    mid = out[:, 90:110].reshape(-1, 3).mean(0)
    assert mid[0] > mid[1] + 20 and mid[0] > mid[2] + 20  # hue follows the prediction
    with pytest.raises(ValueError, match="Got"):
        merge_luminance(small, small)


def _outlines(h: int, w: int, thickness: int) -> np.ndarray:
    """Circles and a rectangle drawn as dark strokes on white paper: line art. uint8 (H, W)."""
    page = np.full((h, w), 255, np.uint8)
    for i in range(4):
        center = (w // 5 * (i + 1), h // 2 + (i % 2) * h // 8)
        cv2.circle(page, center, min(h, w) // 6, 20, thickness)
    cv2.rectangle(page, (w // 10, h // 10), (w - w // 10, h - h // 10), 0, thickness)
    return page


def test_is_line_art_tells_strokes_from_shaded_pages():
    assert is_line_art(_outlines(200, 300, 2))
    assert is_line_art(_outlines(1800, 1200, 12))  # a full page: judged at 256 px, where strokes are thin
    assert is_line_art(make_lines(drawing(240, 320), "sketch"))
    assert not is_line_art(luma(drawing(240, 320)))  # filled shapes
    inked = _outlines(1800, 1200, 12)
    inked[200:1000, 300:900] = 0  # a solid black fill (hair, a shadow), 22 % of the page: still line art
    assert is_line_art(inked)
    shaded = _outlines(1800, 1200, 12)
    shaded[300:900, 200:700] = 150  # one flat grey region, 14 % of the page
    assert not is_line_art(shaded)
    tone = np.full((1600, 1600), 255, np.uint8)
    tone[::6, ::6] = 0  # screentone dots: grey once shrunk, so a toned page is not line art
    tone[1::6, ::6] = tone[::6, 1::6] = tone[1::6, 1::6] = 0
    assert not is_line_art(tone)
    assert not is_line_art(np.full((100, 100), 255, np.uint8))  # blank paper has no lines
    with pytest.raises(ValueError, match="Got"):
        is_line_art(np.zeros((4, 4, 3), np.uint8))
