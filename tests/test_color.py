"""Luma, colour detection and luminance/chroma merging."""

from __future__ import annotations

import numpy as np
import pytest

from mangacolor.color import is_color, luma, merge_luminance
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
