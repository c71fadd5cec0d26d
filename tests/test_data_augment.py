"""Training-time augmentation: consistency of input and target, determinism, content-aware crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mangacolor.color import luma
from mangacolor.data import (
    AugmentConfig,
    ColorFolderSource,
    ColorizationDataset,
    augment_pair,
    content_aware_crop,
    content_share,
)
from tests.conftest import drawing

ALWAYS = AugmentConfig(hflip=1.0, vflip=1.0, rotate_p=1.0, perspective_p=1.0, erase_p=1.0, saturation_p=1.0, blur_p=0.0)


def test_geometric_ops_move_input_and_target_together():
    y = drawing(48, 48, seed=3)
    x = luma(y)
    ax, ay = augment_pair(x, y, ALWAYS, np.random.default_rng(0))
    assert ax.shape == (48, 48) and ay.shape == (48, 48, 3) and ax.dtype == ay.dtype == np.uint8
    assert not np.array_equal(ax, x)
    # Saturation jitter keeps hue/value; the warped input still matches the warped target's luma.
    diff = np.abs(ax.astype(int) - luma(ay).astype(int))
    assert np.median(diff) <= 2 and diff.mean() < 6


def test_input_made_after_target_augmentation_and_blur_on_input_only():
    y = drawing(48, 48, seed=4)
    cfg = AugmentConfig(hflip=1.0, rotate_p=0.0, perspective_p=0.0, erase_p=0.0, saturation_p=1.0, blur_p=1.0)
    ax, ay = augment_pair(None, y, cfg, np.random.default_rng(1), make_input=luma)
    assert np.array_equal(ay, augment_pair(None, y, cfg, np.random.default_rng(1), make_input=luma)[1])
    sharp = luma(ay)
    assert np.abs(np.diff(ax.astype(int), axis=1)).mean() < np.abs(np.diff(sharp.astype(int), axis=1)).mean()
    with pytest.raises(ValueError):
        augment_pair(None, y, cfg, np.random.default_rng(1))


def test_erasing_paints_paper_in_both():
    y = np.zeros((40, 40, 3), np.uint8)
    x = np.zeros((40, 40), np.uint8)
    cfg = AugmentConfig(hflip=0.0, rotate_p=0.0, perspective_p=0.0, erase_p=1.0, saturation_p=0.0, blur_p=0.0)
    ax, ay = augment_pair(x, y, cfg, np.random.default_rng(2))
    assert (ax == 255).any() and np.array_equal(ax == 255, (ay == 255).all(axis=2))


def test_deterministic_given_the_generator():
    y = drawing(48, 48, seed=5)
    a = augment_pair(luma(y), y, ALWAYS, np.random.default_rng(7))
    b = augment_pair(luma(y), y, ALWAYS, np.random.default_rng(7))
    c = augment_pair(luma(y), y, ALWAYS, np.random.default_rng(8))
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_content_aware_crop_prefers_drawing():
    page = np.full((200, 200, 3), 255, np.uint8)
    page[150:190, 150:190] = 30  # the only drawing, in a corner
    cfg = AugmentConfig(content_tries=64, min_content=0.2)
    hits = 0
    for seed in range(10):
        top, left = content_aware_crop(page, 40, cfg, np.random.default_rng(seed))
        hits += content_share(page[top : top + 40, left : left + 40]) > 0
    blind = AugmentConfig(content_crop=False, content_tries=64)
    blind_hits = sum(
        content_share(page[t : t + 40, lft : lft + 40]) > 0
        for t, lft in (content_aware_crop(page, 40, blind, np.random.default_rng(s)) for s in range(10))
    )
    assert hits == 10 and blind_hits < hits


def test_dataset_default_unchanged_and_augment_deterministic(color_folder):
    source = ColorFolderSource(color_folder)
    plain = ColorizationDataset(source, 32, seed=1)
    again = ColorizationDataset(source, 32, seed=1, augment=None)
    for key in [(0, 0), (1, 3)]:
        assert all(torch.equal(plain[key][k], again[key][k]) for k in ("x", "y"))
    aug = ColorizationDataset(source, 32, seed=1, augment=AugmentConfig(), input_kind="mix", reference=True)
    item = aug[(0, 2)]
    assert item["x"].shape == (1, 32, 32) and item["y"].shape == (3, 32, 32) and item["ref"].shape == (3, 32, 32)
    assert torch.equal(item["y"], aug[(0, 2)]["y"]) and torch.equal(item["x"], aug[(0, 2)]["x"])
    assert item["x"].min() >= -1 and item["x"].max() <= 1


def test_config_validation():
    with pytest.raises(ValueError, match="probability"):
        AugmentConfig(hflip=1.5)
