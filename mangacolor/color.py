"""Colour-space helpers: luma, "is this page already in colour?", and luminance/chroma merging.

Merging follows DeOldify's post-processing idea: the network's colour is predicted at a small
working size, but only its chroma is kept; the luminance comes from the full-resolution input, so
lines and lettering stay exactly as sharp as the scan. We merge in CIELAB (a*, b* from the
prediction, L* from the input) because L* is perceptually uniform and a*, b* carry hue and
saturation independently of it.
"""

from __future__ import annotations

import cv2
import numpy as np


def luma(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of a ``uint8`` (H, W, 3) RGB image as ``uint8`` (H, W); (H, W) passes through."""
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected (H, W) or (H, W, 3). Got {image.shape}")
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def is_color(image: np.ndarray, chroma_threshold: float = 15.0, min_fraction: float = 0.01) -> bool:
    """Whether an image is already in colour (rather than a greyscale page, possibly tinted).

    A uniform paper tint (sepia, yellowed scans) is removed first by measuring chroma relative to
    the image's median a*, b*; the image counts as colour when more than ``min_fraction`` of its
    pixels lie more than ``chroma_threshold`` from that median.

    Args:
        image: ``uint8`` (H, W) or (H, W, 3) RGB.
    """
    if image.ndim == 2:
        return False
    h, w = image.shape[:2]
    scale = min(1.0, 256 / max(h, w))
    small = image if scale == 1.0 else cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA
    )
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab).astype(np.float32)
    a, b = lab[..., 1], lab[..., 2]
    dev = np.hypot(a - np.median(a), b - np.median(b))
    return float((dev > chroma_threshold).mean()) > min_fraction


_GRAY_TO_L = cv2.cvtColor(np.arange(256, dtype=np.uint8).reshape(1, 256, 1).repeat(3, axis=2), cv2.COLOR_RGB2Lab)[
    0, :, 0
].copy()
"""8-bit CIELAB L* of each grey level (R = G = B = v)."""


def merge_luminance(gray: np.ndarray, color: np.ndarray) -> np.ndarray:
    """Combine a full-resolution greyscale page with a (smaller) colour prediction.

    Args:
        gray: ``uint8`` (H, W) page luminance at full resolution.
        color: ``uint8`` (h, w, 3) RGB prediction, any size; it is resized to (H, W).

    Returns:
        ``uint8`` (H, W, 3): L* from ``gray``, a* and b* from ``color``.
    """
    if gray.ndim != 2:
        raise ValueError(f"gray must be (H, W). Got {gray.shape}")
    if color.ndim != 3 or color.shape[2] != 3:
        raise ValueError(f"color must be (h, w, 3). Got {color.shape}")
    h, w = gray.shape
    if color.shape[:2] != (h, w):
        color = cv2.resize(color, (w, h), interpolation=cv2.INTER_LINEAR)
    lab = cv2.cvtColor(color, cv2.COLOR_RGB2Lab)  # (H, W, 3) uint8
    lab[..., 0] = _GRAY_TO_L[gray]
    return cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
