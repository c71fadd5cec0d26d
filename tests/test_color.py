"""Luma, colour and line-art detection, luminance/chroma merging."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mangacolor.color import is_color, is_ink_page, luma, merge_luminance, page_kind
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


def test_merge_in_strips_is_the_merge_of_the_whole_page():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (97, 61), dtype=np.uint8)
    color = rng.integers(0, 256, (13, 9, 3), dtype=np.uint8)
    whole = merge_luminance(gray, color, strip_pixels=97 * 61)
    for strip_pixels in (1, 61 * 5, 61 * 7 + 3):  # one row, strips that do not divide the page
        np.testing.assert_array_equal(merge_luminance(gray, color, strip_pixels=strip_pixels), whole)


def _merge_whole_page(gray: np.ndarray, color: np.ndarray) -> np.ndarray:
    """The merge with page-sized arrays and cv2.resize: what the strip-wise merge must reproduce."""
    h, w = gray.shape
    c = color.astype(np.float32)
    d = c - (c @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
    d_max, d_min = (cv2.resize(x, (w, h), interpolation=cv2.INTER_LINEAR) for x in (d.max(2), d.min(2)))
    d = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
    y = gray.astype(np.float32)
    s = np.minimum(np.minimum((255.0 - y) / np.maximum(d_max, 1e-6), y / np.maximum(-d_min, 1e-6)), 1.0)
    return np.clip(d * s[..., None] + y[..., None] + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("page, prediction", [((301, 203), (32, 24)), ((40, 30), (64, 48)), ((50, 50), (50, 50))])
def test_merge_resamples_the_colour_as_cv2_resize_does(page, prediction):
    """Up, down or the same size: the strip-wise resampling is cv2's INTER_LINEAR, up to float rounding."""
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, page, dtype=np.uint8)
    color = rng.integers(0, 256, (*prediction, 3), dtype=np.uint8)
    diff = np.abs(merge_luminance(gray, color).astype(int) - _merge_whole_page(gray, color))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3


def _outlines(h: int, w: int, thickness: int) -> np.ndarray:
    """Circles and a rectangle drawn as dark strokes on white paper: line art. uint8 (H, W)."""
    page = np.full((h, w), 255, np.uint8)
    for i in range(4):
        center = (w // 5 * (i + 1), h // 2 + (i % 2) * h // 8)
        cv2.circle(page, center, min(h, w) // 6, 20, thickness)
    cv2.rectangle(page, (w // 10, h // 10), (w - w // 10, h - h // 10), 0, thickness)
    return page


def test_is_ink_page_tells_ink_on_paper_from_shaded_pages():
    assert is_ink_page(_outlines(200, 300, 2))
    assert is_ink_page(_outlines(1800, 1200, 12))  # a full page: judged at 256 px, where strokes are thin
    assert is_ink_page(make_lines(drawing(240, 320), "sketch"))  # soft, pencil-like lines
    inked = _outlines(1800, 1200, 12)
    inked[200:1000, 300:900] = 0  # a solid black fill (hair, a shadow), 22 % of the page: still ink
    assert is_ink_page(inked)
    tone = _outlines(1600, 1600, 10)
    dots = np.zeros((1600, 1600), bool)
    for i in range(4):
        for j in range(4):
            dots[i::6, j::6] = True  # 4x4 dots every 6 px: 44 % ink
    tone[400:1200, 400:1200][dots[400:1200, 400:1200]] = 0  # a dense screentone, a quarter of the page
    assert not is_ink_page(tone, min_bilevel=1.01)  # shrunk, the tone is a grey fill...
    assert is_ink_page(tone)  # ...but at full resolution the page is black dots on white

    assert not is_ink_page(luma(drawing(240, 320)))  # filled shapes
    shaded = _outlines(1800, 1200, 12)
    shaded[300:900, 200:700] = 150  # one flat grey region, 14 % of the page
    assert not is_ink_page(shaded)
    gradient = np.tile(np.linspace(0, 255, 400).astype(np.uint8), (300, 1))  # continuous tone
    assert not is_ink_page(gradient)
    assert not is_ink_page(np.full((100, 100), 255, np.uint8))  # blank paper has no ink
    with pytest.raises(ValueError, match="Got"):
        is_ink_page(np.zeros((4, 4, 3), np.uint8))


def test_page_kind_tells_line_art_from_screentone():
    assert page_kind(_outlines(200, 300, 2)) == "lines"
    assert page_kind(make_lines(drawing(240, 320), "sketch")) == "lines"
    inked = _outlines(1800, 1200, 12)
    inked[200:1000, 300:900] = 0  # solid black fills stay line art
    assert page_kind(inked) == "lines"
    tone = _outlines(1600, 1600, 10)
    yy, xx = np.mgrid[:1600, :1600]
    tone[400:1200, 400:1200][((yy % 6 < 4) & (xx % 6 < 4))[400:1200, 400:1200]] = 0  # dense dots, a quarter
    assert page_kind(tone) == "tone"
    assert page_kind(luma(drawing(240, 320))) == "shaded"
    assert page_kind(np.full((100, 100), 255, np.uint8)) == "shaded"  # blank paper
    for page in (inked, tone, luma(drawing(240, 320))):
        assert is_ink_page(page) == (page_kind(page) != "shaded")
