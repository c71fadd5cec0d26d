"""Shared fixtures: tiny images and toy checkpoints."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from mangacolor import checkpoint
from mangacolor.models import create_model, get_spec


def drawing(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A small colour drawing: white paper, filled shapes with dark outlines. uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 255, np.uint8)
    for _ in range(3):
        color = tuple(int(c) for c in rng.integers(30, 230, 3))
        center = (int(rng.integers(8, w - 8)), int(rng.integers(8, h - 8)))
        radius = int(rng.integers(5, min(h, w) // 3))
        cv2.circle(img, center, radius, color, -1)
        cv2.circle(img, center, radius, (0, 0, 0), 1)
    return img


@pytest.fixture
def color_folder(tmp_path: Path) -> Path:
    """Eight tiny colour drawings."""
    folder = tmp_path / "color"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"img{i}.png"), drawing(seed=i)[..., ::-1])
    return folder


def _random_checkpoint(factory, name: str, arch: str, working_size: int, **config) -> Path:
    """``arch`` with ``config`` and random weights (seed 0), saved as ``name.safetensors``."""
    torch.manual_seed(0)
    path = factory.mktemp("ckpt") / f"{name}.safetensors"
    checkpoint.save(path, create_model(arch, **config), {"steps": 0, "working_size": working_size})
    return path


@pytest.fixture(scope="session")
def toy_checkpoint(tmp_path_factory) -> Path:
    """A toy U-Net colorizer checkpoint (random weights)."""
    return _random_checkpoint(tmp_path_factory, "toy", "unet", 32, base_width=4, depth=3)


@pytest.fixture(scope="session")
def scan_checkpoint(tmp_path_factory) -> Path:
    """A toy scan generator (random weights); working size 0 = full resolution."""
    return _random_checkpoint(tmp_path_factory, "scan", "cyclegan-resnet", 0, base_width=4, n_blocks=1)


def toy_colorizer(arch: str, folder: Path) -> tuple[torch.nn.Module, Path, np.ndarray | None]:
    """A registered colorizer at toy width (seed 0) saved to ``folder/ARCH.safetensors``.

    Returns the model, the checkpoint and a reference picture when the model needs one (else ``None``).
    """
    spec = get_spec(arch)
    torch.manual_seed(0)
    model = create_model(arch, spec.toy)
    ckpt = checkpoint.save(folder / f"{arch}.safetensors", model, {"working_size": spec.toy_size})
    reference = drawing(40, 40, seed=5) if getattr(model, "needs_reference", False) else None
    return model, ckpt, reference


def deny_listing(monkeypatch: pytest.MonkeyPatch, folder_name: str) -> None:
    """Make ``os.scandir`` of folders called ``folder_name`` fail as an unreadable folder does (tests run as root)."""
    import os

    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == folder_name:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


@pytest.fixture(scope="session")
def random_vgg(tmp_path_factory) -> Path:
    """VGG16's convolution stack with random weights (seed 0), float16 ``.safetensors`` in torchvision's key names."""
    from safetensors.torch import save_file

    from mangacolor.models.blocks import vgg16_features

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16_features_random.safetensors"
    save_file({f"features.{k}": v.half() for k, v in vgg16_features().state_dict().items()}, str(path))
    return path
