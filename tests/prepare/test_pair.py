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


def _one_pair(tmp_path: Path) -> tuple[Path, Path]:
    """bw/1.png + color/1.png (a pair), color/locked/2.png (below a sub-folder), bw/lonely.png (no partner)."""
    bw, color = tmp_path / "bw", tmp_path / "color"
    write_image(bw / "1.png", luma(drawing(24, 24)))
    write_image(bw / "lonely.png", luma(drawing(24, 24)))
    write_image(color / "1.png", drawing(24, 24))
    write_image(color / "locked" / "2.png", drawing(24, 24))
    return bw, color


def test_an_unlistable_sub_folder_fails_and_the_other_pairs_are_done(tmp_path, monkeypatch):
    from tests.conftest import deny_listing

    bw, color = _one_pair(tmp_path)
    deny_listing(monkeypatch, "locked")
    for name, stage in (("pair", pair_folders), ("hconcat", hconcat_folders)):
        result = stage(bw, color, tmp_path / name, RunOptions(workers=1))
        assert result.batch.counts["done"] == 1 and result.batch.failed == 1, name
        failure = result.batch.failures[0]
        assert failure.path == str(color / "locked") and "cannot list folder" in failure.reason
    assert (tmp_path / "pair" / "B" / "1.png").is_file() and (tmp_path / "hconcat" / "1.png").is_file()


def test_unmatched_names_are_written_as_the_file_system_stores_them(tmp_path):
    import os

    bw, color = _one_pair(tmp_path)
    odd = os.fsdecode(b"caf\xe9.png")  # Latin-1, not UTF-8: a surrogate in the str
    write_image(bw / odd, luma(drawing(24, 24)))
    for name, stage in (("pair", pair_folders), ("hconcat", hconcat_folders)):
        result = stage(bw, color, tmp_path / name, RunOptions(workers=1))
        assert result.batch.counts["done"] == 1, name
        listing = (tmp_path / name / "unmatched.txt").read_bytes().splitlines()
        assert os.fsencode(bw) + b"/caf\xe9.png" in [line.split(b"\t")[1] for line in listing]


def test_a_stale_unmatched_listing_is_removed(tmp_path):
    bw, color = _one_pair(tmp_path)
    out = tmp_path / "out"
    pair_folders(bw, color, out, RunOptions(workers=1))
    assert b"lonely" in (out / "unmatched.txt").read_bytes()
    (bw / "lonely.png").unlink()
    (color / "locked" / "2.png").unlink()
    pair_folders(bw, color, out, RunOptions(workers=1))
    assert not (out / "unmatched.txt").exists()  # every page has its partner now: no listing


def test_the_unmatched_listing_that_cannot_be_written_is_one_error(tmp_path, monkeypatch):
    import errno

    import pytest

    from mangacolor.errors import FileError
    from mangacolor.prepare import pair

    bw, color = _one_pair(tmp_path)
    (tmp_path / "dir" / "unmatched.txt").mkdir(parents=True)  # a folder in the way
    with pytest.raises(FileError, match=r"unmatched\.txt: cannot write: Is a directory$"):
        pair_folders(bw, color, tmp_path / "dir", RunOptions(workers=1))
    with pytest.raises(FileError, match=r"unmatched\.txt: cannot write: Is a directory$"):
        hconcat_folders(bw, color, tmp_path / "dir", RunOptions(workers=1))

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "unmatched.txt").write_text("bw\tearlier\n")
    monkeypatch.setattr(pair, "atomic_write_bytes", full_disk)
    with pytest.raises(FileError, match=r"unmatched\.txt: cannot write: No space left on device$"):
        pair_folders(bw, color, tmp_path / "full", RunOptions(workers=1))
    assert (tmp_path / "full" / "unmatched.txt").read_text() == "bw\tearlier\n"  # the earlier listing is kept


def test_resize_has_a_largest_side():
    import pytest

    from mangacolor.errors import MangacolorError
    from mangacolor.prepare.pair import MAX_SIDE

    assert parse_size(str(MAX_SIDE)) == MAX_SIDE and parse_size(f"{MAX_SIDE}x1") == (MAX_SIDE, 1)
    for bad in ("99999999999", str(MAX_SIDE + 1), f"40000x{MAX_SIDE}", "0", "1x2x3", "x", "-5"):
        with pytest.raises(MangacolorError, match="--resize must be"):
            parse_size(bad)
