"""Datasets: paired folders matched by name (both sides reported), unpaired crops with augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from mangacolor.color import luma
from mangacolor.data import (
    AlignedSource,
    AugmentConfig,
    ColorizationDataset,
    PairedFolderSource,
    UnpairedDataset,
    split_files,
)
from mangacolor.errors import MangacolorError
from mangacolor.imageio import write_image
from tests.conftest import drawing


def test_paired_folders_report_unmatched_files_on_both_sides(tmp_path, caplog):
    bw, color = tmp_path / "bw", tmp_path / "color"
    for name in ("p1", "p2", "only_bw"):
        write_image(bw / f"{name}.png", luma(drawing(seed=1)))
    write_image(bw / "dup.png", luma(drawing(seed=2)))
    write_image(bw / "dup.jpg", luma(drawing(seed=2)))
    for name in ("p1", "p2", "only_color", "dup"):
        write_image(color / f"{name}.webp", drawing(seed=3))
    with caplog.at_level(logging.WARNING, logger="mangacolor"):
        source = PairedFolderSource(bw, color)
    assert [(a.name, b.name) for a, b in source.pairs] == [("p1.png", "p1.webp"), ("p2.png", "p2.webp")]
    assert "1 input image(s) have no colour partner" in caplog.text
    assert "1 colour image(s) have no input partner" in caplog.text
    assert "1 name(s) have several files" in caplog.text
    write_image(tmp_path / "other" / "x.png", drawing(seed=4))
    with pytest.raises(MangacolorError, match="no file names in common"):
        PairedFolderSource(bw, tmp_path / "other")


def test_unpaired_augmented_crops_are_deterministic_and_keep_their_kind(tmp_path):
    scans, colors = tmp_path / "scans", tmp_path / "colors"
    for i in range(3):
        write_image(scans / f"s{i}.png", luma(drawing(64, 80, seed=10 + i)))
        write_image(colors / f"c{i}.png", drawing(64, 80, seed=i))
    strong = AugmentConfig(rotate_p=1.0, perspective_p=1.0, blur_p=1.0, saturation_p=1.0, erase_p=1.0)
    ds = UnpairedDataset(scans, colors, size=32, epoch_length=4, seed=3, augment=strong)
    plain = UnpairedDataset(scans, colors, size=32, epoch_length=4, seed=3)
    a, b, c = ds[(0, 1)], ds[(0, 1)], plain[(0, 1)]
    assert a["scan"].shape == (1, 32, 32) and a["color"].shape == (3, 32, 32)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)  # the same key gives the same item
    assert not np.array_equal(a["color"].numpy(), c["color"].numpy())  # augmentation changed the crop
    assert float(a["scan"].min()) >= -1.0 and float(a["color"].max()) <= 1.0


@pytest.mark.parametrize("augment", [None, AugmentConfig()])
def test_paired_inputs_mix_with_line_art_of_the_target(tmp_path, augment):
    """``mix`` over a paired source: about half the items take the paired input, the rest line art."""
    bw, color = tmp_path / "bw", tmp_path / "color"
    for i in range(4):
        write_image(bw / f"p{i}.png", np.full((64, 64), 100, np.uint8))  # flat grey: mean -0.22 in [-1, 1]
        write_image(color / f"p{i}.png", drawing(64, 64, seed=i))  # line art of it: mostly white paper
    source = PairedFolderSource(bw, color)
    assert source.paired

    def paired_share(kind: str) -> float:
        ds = ColorizationDataset(source, 32, seed=5, input_kind=kind, augment=augment)
        means = [float(ds[(epoch, i)]["x"].mean()) for epoch in range(10) for i in range(4)]
        assert all(m < 0.0 or m > 0.3 for m in means)  # each item is one input or the other
        return sum(m < 0.0 for m in means) / len(means)

    assert paired_share("luma") == 1.0  # the paired inputs as they are
    assert 0.25 <= paired_share("mix") <= 0.75
    with pytest.raises(MangacolorError, match="--input mix"):
        ColorizationDataset(source, 32, input_kind="lines")


@pytest.mark.parametrize("cache", [True, False])
def test_aligned_images_of_odd_width_are_skipped_like_unreadable_files(tmp_path, caplog, cache):
    folder = tmp_path / "ab"
    write_image(folder / "good.png", np.concatenate([drawing(32, 32, seed=1)] * 2, axis=1))  # (32, 64, 3)
    write_image(folder / "odd.png", drawing(32, 65, seed=2))
    with caplog.at_level(logging.WARNING, logger="mangacolor"):
        ds = ColorizationDataset(AlignedSource(folder), 32, cache=cache)
        items = [ds[(0, i)] for i in range(len(ds))]
    assert all(item["y"].shape == (3, 32, 32) for item in items)
    assert "odd.png: an A|B image has an even width" in caplog.text
    if cache:
        assert len(ds) == 1
    (folder / "good.png").unlink()
    with pytest.raises(MangacolorError, match="none of the 1 training images could be read"):
        ColorizationDataset(AlignedSource(folder), 32)


def test_split_files_keeps_a_test_split_apart_from_training_and_validation():
    files = [Path(f"page{i:03d}.png") for i in range(400)]
    _, test = split_files(files, 0.1)  # the held-out split the benchmarks score on
    _, test_and_val = split_files(files, 0.15)
    train, val = split_files(files, 0.05, skip_fraction=0.1)
    assert test and val and train
    assert not set(test) & set(val) and not set(test) & set(train) and not set(val) & set(train)
    assert set(test) | set(val) | set(train) == set(files)
    assert set(val) == set(test_and_val) - set(test)  # the next 5 % of the hash range
    assert split_files(files, 0.05, skip_fraction=0.0) == split_files(files, 0.05)
    for bad in (-0.1, 1.0, 0.95):
        with pytest.raises(ValueError, match="skip_fraction"):
            split_files(files, 0.05, skip_fraction=bad)


def test_typical_long_side_reads_headers_and_halves_aligned_pairs(tmp_path):
    from mangacolor.data import AlignedSource, ColorFolderSource, typical_long_side

    for i, (h, w) in enumerate([(40, 60), (100, 50), (70, 70), (30, 20), (80, 64)]):
        write_image(tmp_path / "c" / f"{i}.png", np.zeros((h, w, 3), np.uint8))
    (tmp_path / "c" / "9.png").write_bytes(b"not an image")  # skipped: the loader reports it
    assert typical_long_side(ColorFolderSource(tmp_path / "c")) == 70  # median of 60, 100, 70, 30, 80
    assert typical_long_side(ColorFolderSource(tmp_path / "c"), sample=2) in (60, 70, 80, 100)
    write_image(tmp_path / "ab" / "0.png", np.zeros((50, 200, 3), np.uint8))  # two 50 x 100 halves
    assert typical_long_side(AlignedSource(tmp_path / "ab")) == 100
