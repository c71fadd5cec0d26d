"""The A|B layout: join, split, and how training reads it."""

from __future__ import annotations

import numpy as np
import pytest

from mangacolor.prepare.aligned import join_ab, split_ab


def test_round_trip_color_and_gray():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    b = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    ab = join_ab(a, b)
    assert ab.shape == (20, 60, 3)
    a2, b2 = split_ab(ab)
    assert np.array_equal(a2[..., 0], a) and np.array_equal(a2[..., 2], a) and np.array_equal(b2, b)
    g = join_ab(a, a)
    assert g.shape == (20, 60)
    assert all(np.array_equal(x, a) for x in split_ab(g))


def test_errors():
    with pytest.raises(ValueError, match="same height"):
        join_ab(np.zeros((4, 4), np.uint8), np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="even width"):
        split_ab(np.zeros((4, 5, 3), np.uint8))


def test_aligned_source_reads_it(tmp_path):
    from mangacolor.data import AlignedSource
    from mangacolor.imageio import write_image

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (16, 24), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    write_image(tmp_path / "x.png", join_ab(a, b))
    x, y = AlignedSource(tmp_path).load(0)
    assert np.array_equal(x, a) and np.array_equal(y, b)
