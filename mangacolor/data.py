"""Training datasets.

:class:`ColorFolderDataset` serves a folder of colour images as (input, target) pairs for the
colorizer, making the input on the fly as the greyscale (ITU-R BT.601 luma) of each random crop,
the pix2pix recipe for unpaired colour art.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mangacolor.color import luma
from mangacolor.errors import ImageReadError, MangacolorError
from mangacolor.imageio import list_images, read_image, to_tensor

log = logging.getLogger(__name__)

AUTO_CACHE_MAX_FILES = 5000
"""Folders up to this many files are decoded once and kept in memory by default."""


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize ``uint8`` (H, W[, C]) so that max(H, W) == ``long_side`` (area filter when shrinking)."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale == 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def ensure_min_side(image: np.ndarray, min_side: int) -> np.ndarray:
    """Pad ``uint8`` (H, W, C) with white so that both sides are at least ``min_side``."""
    h, w = image.shape[:2]
    if h >= min_side and w >= min_side:
        return image
    top = max(0, min_side - h) // 2
    left = max(0, min_side - w) // 2
    bottom = max(0, min_side - h) - top
    right = max(0, min_side - w) - left
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))


class ColorFolderDataset(Dataset):
    """Colour images under a folder as (luma input, RGB target) training pairs.

    Each item is a random ``crop_size`` crop (after resizing the image so its long side is
    ``load_size``, and padding with white if it is then smaller than the crop), randomly flipped.

    Args:
        root: folder of colour images (searched recursively).
        crop_size: side of the square training crops.
        load_size: long side images are resized to before cropping (``None``: keep their size).
        flip: random horizontal flips.
        cache: decode every image once and keep it in memory (``None``: only for small folders).
        files: explicit file list (overrides the folder walk; used for train/validation splits).

    Items are ``(input, target)``: float (1, S, S) and (3, S, S) in [-1, 1].
    """

    def __init__(
        self,
        root: str | Path,
        crop_size: int = 256,
        load_size: int | None = None,
        flip: bool = True,
        cache: bool | None = None,
        files: list[Path] | None = None,
    ) -> None:
        self.root = Path(root)
        self.files = list(files) if files is not None else list(list_images(self.root))
        if not self.files:
            raise MangacolorError(f"{self.root}: no images found (.png, .jpg, .webp, .bmp, .tif)")
        self.crop_size = crop_size
        self.load_size = load_size
        self.flip = flip
        self.failures: list[str] = []
        self._cache: list[np.ndarray] | None = None
        if cache is None:
            cache = len(self.files) <= AUTO_CACHE_MAX_FILES
        if cache:
            images, kept = [], []
            for path in self.files:
                try:
                    images.append(self._decode(path))
                    kept.append(path)
                except ImageReadError as exc:
                    self.failures.append(str(exc))
            if not images:
                raise MangacolorError(f"{self.root}: none of the {len(self.files)} images could be read")
            self.files, self._cache = kept, images

    def _decode(self, path: Path) -> np.ndarray:
        image = read_image(path, mode="RGB")
        if self.load_size:
            image = resize_long_side(image, self.load_size)
        return ensure_min_side(image, self.crop_size)

    def __len__(self) -> int:
        return len(self.files)

    def _image(self, index: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[index]
        for attempt in range(len(self.files)):  # an unreadable file is logged and replaced
            path = self.files[(index + attempt) % len(self.files)]
            try:
                return self._decode(path)
            except ImageReadError as exc:
                log.warning("skipping unreadable training image: %s", exc)
        raise MangacolorError(f"{self.root}: no readable images")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self._image(index)
        h, w = image.shape[:2]
        s = self.crop_size
        top = int(torch.randint(0, h - s + 1, ()).item())
        left = int(torch.randint(0, w - s + 1, ()).item())
        crop = image[top : top + s, left : left + s]
        if self.flip and torch.rand(()).item() < 0.5:
            crop = crop[:, ::-1]
        crop = np.ascontiguousarray(crop)
        return to_tensor(luma(crop))[0], to_tensor(crop)[0]  # (1, S, S), (3, S, S)


def split_files(files: list[Path], val_fraction: float, seed_key: str = "") -> tuple[list[Path], list[Path]]:
    """Split files into train / validation by a stable hash of their names (never changes between runs)."""
    import hashlib

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1). Got {val_fraction}")
    train, val = [], []
    for path in files:
        digest = hashlib.sha1((seed_key + path.name).encode("utf-8")).digest()
        bucket = int.from_bytes(digest[:8], "big") / 2**64
        (val if bucket < val_fraction else train).append(path)
    if val_fraction > 0 and not val and len(train) > 1:
        val.append(train.pop(math.floor(len(train) / 2)))
    return train, val
