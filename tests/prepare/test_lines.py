"""Line extraction: every method on a synthetic drawing."""

from __future__ import annotations

import numpy as np
import pytest

from mangacolor.prepare.lines import DEFAULTS, METHODS, LinesConfig, extract_lines


def synthetic_drawing() -> np.ndarray:
    """White paper, a flat red square with a black outline, a flat blue disc without outline. (96, 96, 3)."""
    import cv2

    img = np.full((96, 96, 3), 255, np.uint8)
    cv2.rectangle(img, (6, 6), (50, 50), (220, 40, 40), -1)
    cv2.rectangle(img, (6, 6), (50, 50), (0, 0, 0), 1)
    cv2.circle(img, (72, 72), 18, (40, 60, 200), -1)
    return img


@pytest.mark.parametrize("method", METHODS)
def test_lines_on_edges_white_on_flat(method):
    img = synthetic_drawing()
    out = extract_lines(img, method)
    assert out.dtype == np.uint8 and out.shape == (96, 96)
    # The black outline is a line.
    assert out[6, 12:44].mean() < 200 and out[6, 12:44].min() < 128
    # The edge of the un-outlined disc shows up too (darker than paper somewhere on its rim).
    assert out[72, 52:57].min() < 230
    # Flat areas are paper: blank paper, the inside of the square, the inside of the disc.
    assert (out[70:90, 2:20] == 255).all()
    assert out[22:34, 22:34].min() >= 250
    assert out[68:76, 68:76].min() >= 250


@pytest.mark.parametrize("method", (*METHODS, "gray"))
def test_shape_kept_and_flat_image_white(method):
    flat = np.full((33, 47, 3), 255, np.uint8)
    out = extract_lines(flat, method)
    assert out.shape == (33, 47) and (out == 255).all()


def test_gray_is_luma():
    img = synthetic_drawing()
    out = extract_lines(img, "gray")
    assert out[28, 28] == round(0.299 * 220 + 0.587 * 40 + 0.114 * 40)


def test_params_and_errors():
    img = synthetic_drawing()
    binary = extract_lines(img, "xdog", threshold=0.5)
    assert set(np.unique(binary)) <= {0, 255}
    assert not np.array_equal(extract_lines(img, "sketch", sigma=1.0), extract_lines(img, "sketch"))
    with pytest.raises(ValueError, match="method"):
        extract_lines(img, "canny")
    with pytest.raises(ValueError, match="phi"):
        extract_lines(img, "sketch", phi=3)
    with pytest.raises(ValueError, match="uint8"):
        extract_lines(img.astype(np.float32), "sketch")
    with pytest.raises(ValueError):
        LinesConfig("blur", {"sigma": -1})
    for method, params in (("xdog", {"tau": float("nan")}), ("sketch", {"sigma": float("inf")})):
        with pytest.raises(ValueError, match="must be a finite number"):
            LinesConfig(method, params)
    with pytest.raises(ValueError, match="at most 100 px"):
        LinesConfig("blur", {"sigma": 1e9})
    with pytest.raises(ValueError, match="Got 112"):
        LinesConfig("xdog", {"sigma": 70.0})  # the wide Gaussian is k x sigma
    assert set(DEFAULTS) == {*METHODS, "gray"}


def test_data_make_lines_uses_it():
    from mangacolor.data import make_lines

    img = synthetic_drawing()
    assert np.array_equal(make_lines(img, "xdog"), extract_lines(img, "xdog"))
