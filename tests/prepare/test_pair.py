"""Pairing by name stem with unmatched files; hconcat / split round trip through files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mangacolor.color import luma
from mangacolor.imageio import read_image, write_image
from mangacolor.prepare.aligned import hconcat_folders, split_folder
from mangacolor.prepare.borders import CropConfig, crop_folder
from mangacolor.prepare.pair import match_stems, pair_folders, parse_size
from mangacolor.prepare.runner import RunOptions
from tests.conftest import drawing


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    bw, color = tmp_path / "bw", tmp_path / "color"
    for name in ("[ch1]_001", "[ch1]_002", "only_bw"):
        write_image(bw / f"{name}.png", luma(drawing(seed=len(name))))
    write_image(bw / "ch2" / "010.jpg", luma(drawing(seed=3)))
    for name in ("[ch1]_001", "[ch1]_002", "only_color"):
        write_image(color / f"{name}.png", drawing(seed=len(name)))
    write_image(color / "ch2" / "010.png", drawing(96, 128, seed=3))  # a bigger colour page
    write_image(color / "dup.png", drawing(seed=1))
    write_image(color / "dup.jpg", drawing(seed=1))
    write_image(bw / "dup.png", luma(drawing(seed=1)))
    return bw, color


def test_match_stems(tmp_path):
    bw, color = _folders(tmp_path)
    m = match_stems(bw, color)
    assert [k for k, _, _ in m.pairs] == ["[ch1]_001", "[ch1]_002", "ch2/010"]
    assert [p.name for p in m.unmatched_a] == ["only_bw.png"]
    assert [p.name for p in m.unmatched_b] == ["only_color.png"]
    assert m.ambiguous == ["dup"]


def test_pair_writes_a_and_b_and_lists_unmatched(tmp_path):
    bw, color = _folders(tmp_path)
    out = tmp_path / "out"
    result = pair_folders(bw, color, out, RunOptions(workers=2))
    assert result.batch.counts["done"] == 3
    a = read_image(out / "A" / "ch2" / "010.png", mode=None)
    b = read_image(out / "B" / "ch2" / "010.png", mode=None)
    assert a.ndim == 2 and b.shape == (96, 128, 3) and a.shape == (96, 128)  # A brought to B's size
    listing = (out / "unmatched.txt").read_text().splitlines()
    assert any(line.startswith("bw\t") and "only_bw" in line for line in listing)
    assert any(line.startswith("color\t") and "only_color" in line for line in listing)
    assert "ambiguous\tdup" in listing
    sized = pair_folders(bw, color, tmp_path / "sized", RunOptions(workers=1), size=parse_size("40x30"))
    assert sized.batch.counts["done"] == 3
    assert read_image(tmp_path / "sized" / "A" / "ch2" / "010.png", mode=None).shape == (30, 40)


def test_hconcat_split_round_trip(tmp_path):
    bw, color = _folders(tmp_path)
    pairs = tmp_path / "pairs"
    pair_folders(bw, color, pairs, RunOptions(workers=1))
    joined = tmp_path / "ab"
    result = hconcat_folders(pairs / "A", pairs / "B", joined, RunOptions(workers=2))
    assert result.batch.counts["done"] == 3 and not result.matching.unmatched_a
    ab = read_image(joined / "ch2" / "010.png", mode=None)
    assert ab.shape == (96, 256, 3)
    back = tmp_path / "back"
    report = split_folder(joined, back, RunOptions(workers=2))
    assert report.counts["done"] == 3
    for side in ("A", "B"):
        for path in sorted((pairs / side).rglob("*.png")):
            rel = path.relative_to(pairs / side)
            original = read_image(path, mode=None)
            restored = read_image(back / side / rel, mode=None)
            assert original.shape == restored.shape and np.array_equal(original, restored), (side, rel)


def test_split_reports_odd_width(tmp_path):
    write_image(tmp_path / "in" / "odd.png", np.zeros((4, 5, 3), np.uint8))
    report = split_folder(tmp_path / "in", tmp_path / "out", RunOptions(workers=1))
    assert report.failed == 1 and "even width" in report.failures[0].reason


def test_pair_and_hconcat_refuse_an_unknown_format(tmp_path):
    import pytest

    from mangacolor.errors import MangacolorError

    write_image(tmp_path / "a" / "x.png", luma(drawing()))
    write_image(tmp_path / "b" / "x.png", drawing())
    with pytest.raises(MangacolorError, match="--format must be one of"):
        pair_folders(tmp_path / "a", tmp_path / "b", tmp_path / "p", output_format="bmp")
    with pytest.raises(MangacolorError, match="--format must be one of"):
        hconcat_folders(tmp_path / "a", tmp_path / "b", tmp_path / "h", output_format="foo")


def test_outputs_never_overwrite_the_inputs(tmp_path):
    # pix2pix-style folders data/A and data/B, and data as the output: A's outputs are the inputs.
    data = tmp_path / "data"
    write_image(data / "A" / "p.png", luma(drawing(seed=1)))
    write_image(data / "B" / "p.png", drawing(seed=1))
    before = (data / "A" / "p.png").read_bytes()
    for overwrite in (False, True):
        report = pair_folders(data / "A", data / "B", data, RunOptions(workers=1, overwrite=overwrite), size=16)
        assert report.batch.failed == 1 and "would overwrite the input" in report.batch.failures[0].reason
        report = hconcat_folders(data / "A", data / "B", data, RunOptions(workers=1, overwrite=overwrite))
        assert report.batch.counts["done"] == 1  # data/p.png: no input there
    assert (data / "A" / "p.png").read_bytes() == before
    # One image and its own folder as the output.
    page = tmp_path / "page.png"
    write_image(page, drawing(seed=2))
    before = page.read_bytes()
    for overwrite in (False, True):
        report = split_folder(page, tmp_path, RunOptions(workers=1, overwrite=overwrite))
        assert report.counts["done"] == 1  # tmp/A/page.png, tmp/B/page.png
        report = crop_folder(page, tmp_path, CropConfig(size=8), RunOptions(workers=1, overwrite=overwrite))
        assert report.failed == 1 and "would overwrite the input" in report.failures[0].reason
    assert page.read_bytes() == before
