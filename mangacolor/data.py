"""Training data: where (input, target) pairs come from, and how each training item is cut.

Sources (each yields a greyscale input, or ``None`` when the input is made from the target, and
an RGB target):

* :class:`ColorFolderSource` — a folder of colour images; inputs are made on the fly as the luma
  of each crop (pix2pix's recipe), line art (any ``prepare lines`` method) or a random mix;
* :class:`PairedFolderSource` — two folders matched by file name stem, e.g. synthetic scans made by
  ``mangacolor scan`` or lines made by ``prepare lines`` beside the colour originals;
* :class:`AlignedSource` — pix2pix's side-by-side A|B images (``prepare hconcat``).

The input kind ``mix`` also applies to the two paired sources: half the items then take line art
of the target instead of the paired input (synthetic scans and line art in one training).

:class:`ColorizationDataset` cuts one item per key ``(epoch, index)``, drawing every random choice
from a generator seeded by ``(seed, epoch, index)``, so the data of a step never depends on the
number of loader workers or ranks, or on whether the run was resumed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from mangacolor.color import luma
from mangacolor.errors import ImageReadError, MangacolorError
from mangacolor.imageio import list_images, read_image, to_tensor

log = logging.getLogger(__name__)

AUTO_CACHE_MAX_FILES = 5000
"""Sources up to this many files are decoded once and kept in memory by default."""

INPUT_KINDS = ("luma", "lines", "mix")


def resize_long_side(image: np.ndarray, long_side: int) -> np.ndarray:
    """Resize ``uint8`` (H, W[, C]) so that max(H, W) == ``long_side`` (area filter when shrinking)."""
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale == 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def ensure_min_side(image: np.ndarray, min_side: int) -> np.ndarray:
    """Pad ``uint8`` (H, W[, C]) with white so that both sides are at least ``min_side``."""
    h, w = image.shape[:2]
    if h >= min_side and w >= min_side:
        return image
    top, left = max(0, min_side - h) // 2, max(0, min_side - w) // 2
    bottom, right = max(0, min_side - h) - top, max(0, min_side - w) - left
    white = (255,) * (image.shape[2] if image.ndim == 3 else 1)
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=white)


def split_files(
    files: list[Path], val_fraction: float, seed_key: str = "", skip_fraction: float = 0.0
) -> tuple[list[Path], list[Path]]:
    """Split files into train / validation by a stable hash of their names (never changes between runs).

    Each name hashes to a number in [0, 1). Names below ``skip_fraction`` are in neither list (a test
    split kept apart from training and validation alike); the next ``val_fraction`` of the range is
    the validation list, the rest the training list. ``split_files(files, f)`` is therefore the
    held-out split that ``split_files(files, v, skip_fraction=f)`` leaves out.
    """
    import hashlib

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1). Got {val_fraction}")
    if not 0.0 <= skip_fraction < 1.0 or skip_fraction + val_fraction >= 1.0:
        raise ValueError(f"skip_fraction must be in [0, 1 - val_fraction). Got {skip_fraction}")
    train, val = [], []
    for path in files:
        digest = hashlib.sha1((seed_key + path.name).encode("utf-8")).digest()
        bucket = int.from_bytes(digest[:8], "big") / 2**64
        if bucket >= skip_fraction:
            (val if bucket < skip_fraction + val_fraction else train).append(path)
    if val_fraction > 0 and not val and len(train) > 1:
        val.append(train.pop(math.floor(len(train) / 2)))
    return train, val


# ----------------------------------------------------------------------------- sources


class PairSource(Protocol):
    """Indexable (input, target) images at full size.

    Attributes:
        paired: the source has its own inputs (``load`` never returns ``None`` for the input).
    """

    paired: bool

    def __len__(self) -> int: ...

    def key(self, index: int) -> Path:
        """The file that names item ``index`` (for splits and messages)."""

    def load(self, index: int) -> tuple[np.ndarray | None, np.ndarray]:
        """``uint8`` (H, W) input or ``None``, and ``uint8`` (H, W, 3) target.

        Raises:
            ImageReadError: a file could not be read.
        """


class ColorFolderSource:
    """Colour images under a folder; the input is made from each target."""

    paired = False

    def __init__(self, root: str | Path, files: list[Path] | None = None) -> None:
        self.root = Path(root)
        self.files = list(files) if files is not None else list(list_images(self.root))
        if not self.files:
            raise MangacolorError(f"{self.root}: no images found (.png, .jpg, .webp, .bmp, .tif)")

    def __len__(self) -> int:
        return len(self.files)

    def key(self, index: int) -> Path:
        return self.files[index]

    def subset(self, files: list[Path]) -> ColorFolderSource:
        """The same source over some of its files."""
        return ColorFolderSource(self.root, files)

    def load(self, index: int) -> tuple[None, np.ndarray]:
        return None, read_image(self.files[index], mode="RGB")


class PairedFolderSource:
    """Greyscale inputs and colour targets in two folders, matched by relative path without ending."""

    paired = True

    def __init__(self, input_root: str | Path, color_root: str | Path, pairs: list[tuple[Path, Path]] | None = None):
        self.input_root, self.color_root = Path(input_root), Path(color_root)
        if pairs is None:
            from mangacolor.prepare.pair import match_stems  # the one place that matches names

            matching = match_stems(self.input_root, self.color_root)
            pairs = [(a, b) for _, a, b in matching.pairs]
            if not pairs:
                raise MangacolorError(
                    f"{self.input_root} and {self.color_root}: no file names in common (pairs match by name stem)"
                )
            for count, what, root in (
                (len(matching.unmatched_a), "input image(s) have no colour partner", self.input_root),
                (len(matching.unmatched_b), "colour image(s) have no input partner", self.color_root),
                (len(matching.ambiguous), "name(s) have several files (e.g. x.png and x.jpg), left out", None),
            ):
                if count:
                    log.warning("%d %s%s", count, what, f" in {root}" if root else "")
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def key(self, index: int) -> Path:
        return self.pairs[index][1]

    def subset(self, files: list[Path]) -> PairedFolderSource:
        keep = set(files)
        return PairedFolderSource(self.input_root, self.color_root, [p for p in self.pairs if p[1] in keep])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.pairs[index]
        x, y = read_image(a, mode="L"), read_image(b, mode="RGB")
        if x.shape[:2] != y.shape[:2]:
            x = cv2.resize(x, (y.shape[1], y.shape[0]), interpolation=cv2.INTER_AREA)
        return x, y


def typical_long_side(source: PairSource, sample: int = 256) -> int | None:
    """The median long side of a source's target images, from the headers of up to ``sample`` files
    spread over it (nothing decoded; an A|B image counts half its width); ``None`` if none is read.

    A colorizer trained on crops of images at their own size saw pages at about this scale, which is
    therefore its working size at inference (not the crop's).
    """
    from PIL import Image

    n = len(source)
    k = min(n, sample)
    picks = sorted({round(i * (n - 1) / max(1, k - 1)) for i in range(k)})  # evenly spread, ends included
    halves = isinstance(source, AlignedSource)
    sides = []
    for i in picks:
        try:
            with Image.open(source.key(i)) as img:
                w, h = img.size
        except Exception:  # noqa: BLE001 - an unreadable file is the loader's to report
            continue
        sides.append(max(w // 2 if halves else w, h))
    return int(np.median(sides)) if sides else None


class AlignedSource(ColorFolderSource):
    """pix2pix's side-by-side A|B images: A (left) is the input, B (right) the colour target."""

    paired = True

    def subset(self, files: list[Path]) -> AlignedSource:
        return AlignedSource(self.root, files)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from mangacolor.prepare.aligned import split_ab

        try:
            a, b = split_ab(read_image(self.files[index], mode="RGB"))
        except ValueError as exc:  # an odd width: not an A|B image; skipped like an unreadable file
            raise ImageReadError(self.files[index], str(exc)) from None
        return luma(a), b


def check_input_kind(source: PairSource, input_kind: str) -> None:
    """Refuse an unknown ``--input``, and ``lines`` over a paired source (it would ignore the inputs)."""
    if input_kind not in INPUT_KINDS:
        raise MangacolorError(f"--input must be one of {INPUT_KINDS}. Got {input_kind!r}")
    if input_kind == "lines" and source.paired:
        raise MangacolorError(
            "--input lines would ignore the paired inputs (--input-dir, --aligned): "
            "give --input mix for half paired inputs, half line art"
        )


def make_source(data: str | Path, input_dir: str | Path | None = None, aligned: bool = False) -> PairSource:
    """Pick the source for ``train-color``'s DATA (+ ``--input-dir`` / ``--aligned``).

    Raises:
        MangacolorError: DATA or ``--input-dir`` is a file, not a folder, or the options exclude each other.
    """
    for folder, name in ((data, "DATA"), (input_dir, "--input-dir")):
        if folder is not None and Path(folder).is_file():
            raise MangacolorError(f"{folder}: {name} must be a folder of images, not a file")
    if aligned and input_dir is not None:
        raise MangacolorError("--aligned and --input-dir exclude each other")
    if aligned:
        return AlignedSource(data)
    if input_dir is not None:
        return PairedFolderSource(input_dir, data)
    return ColorFolderSource(data)


# ----------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation of (input, target) pairs; probabilities are per item.

    Geometric operations (flips, rotation, perspective, random erasing to paper) move input and
    target identically; saturation jitter changes only the colour target (an input made from the
    target is made afterwards); Gaussian blur softens only the input (like a soft scan).

    Attributes:
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip (off: pages have an up).
        rotate_p: probability of a small rotation.
        rotate_degrees: largest rotation angle either way.
        perspective_p: probability of a perspective warp.
        perspective: largest corner displacement as a share of the crop side.
        blur_p: probability of blurring the input.
        blur_sigma: range of the blur's sigma in pixels.
        erase_p: probability of erasing one rectangle (to white paper) in both images.
        erase_area: range of the erased rectangle's share of the crop.
        saturation_p: probability of saturation jitter of the target.
        saturation: the target's saturation is scaled by a factor in ``1 ± saturation``.
        content_crop: prefer crops with drawing content over blank paper.
        content_tries: candidate crop positions tried.
        min_content: a candidate with at least this share of non-paper pixels is taken at once;
            otherwise the candidate with the most content wins.
        paper_level: pixels whose darkest channel is at or above this count as paper.
    """

    hflip: float = 0.5
    vflip: float = 0.0
    rotate_p: float = 0.3
    rotate_degrees: float = 5.0
    perspective_p: float = 0.2
    perspective: float = 0.05
    blur_p: float = 0.1
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    erase_p: float = 0.1
    erase_area: tuple[float, float] = (0.02, 0.1)
    saturation_p: float = 0.5
    saturation: float = 0.2
    content_crop: bool = True
    content_tries: int = 4
    min_content: float = 0.1
    paper_level: int = 235

    def __post_init__(self) -> None:
        for name in ("hflip", "vflip", "rotate_p", "perspective_p", "blur_p", "erase_p", "saturation_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]. Got {getattr(self, name)}")
        if self.content_tries < 1:
            raise ValueError(f"content_tries must be >= 1. Got {self.content_tries}")
        if not 0.0 <= self.saturation < 1.0 or not 0.0 <= self.perspective < 0.5:
            raise ValueError("saturation must be in [0, 1) and perspective in [0, 0.5)")


def content_share(image: np.ndarray, paper_level: int = 235) -> float:
    """Share of pixels that are not blank paper (darkest channel below ``paper_level``)."""
    darkest = image if image.ndim == 2 else image.min(axis=2)  # (H, W)
    return float((darkest < paper_level).mean())


def content_aware_crop(
    image: np.ndarray, size: int, config: AugmentConfig, rng: np.random.Generator
) -> tuple[int, int]:
    """Top-left corner of a ``size`` x ``size`` crop of ``image`` that prefers drawing over paper.

    Always draws ``config.content_tries`` positions from ``rng`` (the stream does not depend on
    the image), takes the first with at least ``config.min_content`` content, else the richest.
    """
    h, w = image.shape[:2]
    tops = rng.integers(0, h - size + 1, config.content_tries)
    lefts = rng.integers(0, w - size + 1, config.content_tries)
    if not config.content_crop:
        return int(tops[0]), int(lefts[0])
    step = max(1, size // 64)  # score on a subsampled grid: the choice needs no full-resolution count
    best, best_score = (int(tops[0]), int(lefts[0])), -1.0
    for top, left in zip(tops.tolist(), lefts.tolist(), strict=True):
        score = content_share(image[top : top + size : step, left : left + size : step], config.paper_level)
        if score >= config.min_content:
            return top, left
        if score > best_score:
            best, best_score = (top, left), score
    return best


def _warp_both(images: list[np.ndarray | None], matrix: np.ndarray, perspective: bool) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for img in images:
        if img is None:
            out.append(None)
            continue
        h, w = img.shape[:2]
        warp = cv2.warpPerspective if perspective else cv2.warpAffine
        out.append(warp(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101))
    return out


def augment_pair(
    x: np.ndarray | None,
    y: np.ndarray,
    config: AugmentConfig,
    rng: np.random.Generator,
    make_input: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augment one training crop pair consistently.

    Every random number is drawn whether or not its operation fires, so the stream (and thus
    the rest of the item) does not depend on which operations happened.

    Args:
        x: ``uint8`` (S, S) input crop, or ``None`` to make it from the augmented target.
        y: ``uint8`` (S, S, 3) target crop.
        config: which augmentations, how strong.
        rng: the item's generator.
        make_input: target -> input (luma, lines) when ``x`` is ``None``.

    Returns:
        Contiguous ``(x, y)``: (S, S) and (S, S, 3).
    """
    if x is None and make_input is None:
        raise ValueError("give an input crop or make_input")
    h, w = y.shape[:2]
    u = rng.random(7)  # one draw per operation: hflip, vflip, rotate, perspective, erase, saturation, blur
    angle = float(rng.uniform(-config.rotate_degrees, config.rotate_degrees))
    corners = rng.uniform(-config.perspective, config.perspective, (4, 2)) * (w, h)
    erase_area = float(rng.uniform(*config.erase_area))
    erase_aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    erase_pos = rng.random(2)
    sat_factor = float(rng.uniform(1.0 - config.saturation, 1.0 + config.saturation))
    sigma = float(rng.uniform(*config.blur_sigma))

    pair: list[np.ndarray | None] = [x, y]
    if u[0] < config.hflip:
        pair = [None if p is None else p[:, ::-1] for p in pair]
    if u[1] < config.vflip:
        pair = [None if p is None else p[::-1] for p in pair]
    pair = [None if p is None else np.ascontiguousarray(p) for p in pair]
    if u[2] < config.rotate_p and angle != 0.0:
        pair = _warp_both(pair, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), perspective=False)
    if u[3] < config.perspective_p and config.perspective > 0:
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        pair = _warp_both(pair, cv2.getPerspectiveTransform(src, (src + corners).astype(np.float32)), True)
    x, y = pair
    assert y is not None
    if u[4] < config.erase_p:
        eh = min(h, max(1, round(np.sqrt(erase_area * h * w / erase_aspect))))
        ew = min(w, max(1, round(np.sqrt(erase_area * h * w * erase_aspect))))
        top, left = int(erase_pos[0] * (h - eh + 1)), int(erase_pos[1] * (w - ew + 1))
        y = y.copy()
        y[top : top + eh, left : left + ew] = 255
        if x is not None:
            x = x.copy()
            x[top : top + eh, left : left + ew] = 255
    if u[5] < config.saturation_p and sat_factor != 1.0:
        hsv = cv2.cvtColor(y, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = np.clip(hsv[..., 1].astype(np.float32) * sat_factor, 0, 255).astype(np.uint8)
        y = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if x is None:
        assert make_input is not None
        x = make_input(y)
    if u[6] < config.blur_p:
        x = cv2.GaussianBlur(x, (0, 0), sigma)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# ----------------------------------------------------------------------------- items


def make_lines(rgb: np.ndarray, method: str) -> np.ndarray:
    """Line art (dark lines on white, ``uint8`` (H, W)) from a colour crop, by a ``prepare lines`` method."""
    from mangacolor.prepare.lines import extract_lines

    return extract_lines(rgb, method=method)


class ColorizationDataset(Dataset):
    """Training items for a colorizer.

    Args:
        source: where images come from.
        size: side of the square crops.
        seed: seeds every item's random choices with (seed, epoch, index).
        load_size: long side images are resized to before cropping (``None``: as stored).
        input_kind: for sources without inputs: ``luma``, ``lines`` or ``mix`` (half each). For
            paired sources: ``luma`` uses the paired inputs, ``mix`` half those and half line art;
            ``lines`` is refused (it would ignore the paired inputs).
        lines_method: ``prepare lines`` method for line inputs.
        flip: random horizontal flips.
        reference: also return a reference image (the target, spatially augmented so its pixels
            cannot be copied: random resized crop, flip and rotation; colours untouched).
        cache: keep decoded images in memory (``None``: for sources up to 5000 files).
        augment: training-time augmentation (:class:`AugmentConfig`: content-aware crops, flips,
            rotation, perspective, erasing, saturation, blur); replaces ``flip``. ``None``: plain
            random crops and ``flip``.
        role: what the images are for (``training``, ``validation``), in messages.

    Items are dicts with ``x`` float (1, S, S), ``y`` float (3, S, S) (and ``ref`` (3, S, S)),
    all in [-1, 1].
    """

    def __init__(
        self,
        source: PairSource,
        size: int,
        seed: int = 0,
        load_size: int | None = None,
        input_kind: str = "luma",
        lines_method: str = "sketch",
        flip: bool = True,
        reference: bool = False,
        cache: bool | None = None,
        augment: AugmentConfig | None = None,
        role: str = "training",
    ) -> None:
        check_input_kind(source, input_kind)
        self.source, self.size, self.seed = source, size, seed
        self.load_size, self.input_kind, self.lines_method = load_size, input_kind, lines_method
        self.flip, self.reference = flip, reference
        self.augment = augment
        self.role = role
        self.failures: list[str] = []
        self._cache: list[tuple[np.ndarray | None, np.ndarray]] | None = None
        if cache is None:
            cache = len(source) <= AUTO_CACHE_MAX_FILES
        if cache:
            self._cache = []
            keep = []
            for i in range(len(source)):
                try:
                    self._cache.append(self._decode(i))
                    keep.append(i)
                except ImageReadError as exc:
                    self.failures.append(str(exc))
            for failure in self.failures:
                log.warning("skipped unreadable %s image: %s", role, failure)
            if not self._cache:
                more = f" (and {len(self.failures) - 1} more)" if len(self.failures) > 1 else ""
                raise MangacolorError(
                    f"none of the {len(source)} {role} images could be read: {self.failures[0]}{more}"
                )

    def _decode(self, index: int) -> tuple[np.ndarray | None, np.ndarray]:
        x, y = self.source.load(index)
        if self.load_size:
            y = resize_long_side(y, self.load_size)
            x = None if x is None else cv2.resize(x, (y.shape[1], y.shape[0]), interpolation=cv2.INTER_AREA)
        return x, y

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else len(self.source)

    def _pair(self, index: int) -> tuple[np.ndarray | None, np.ndarray]:
        if self._cache is not None:
            return self._cache[index]
        n = len(self.source)
        for attempt in range(n):  # an unreadable file is logged and replaced by the next one
            try:
                return self._decode((index + attempt) % n)
            except ImageReadError as exc:
                log.warning("skipping unreadable %s image: %s", self.role, exc)
        raise MangacolorError(f"no readable {self.role} images")

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        from mangacolor.training.loop import item_rng

        rng = item_rng(self.seed, key)
        index = key[1] if isinstance(key, tuple) else key
        x, y = self._pair(index)
        if self.augment is not None:
            return self._augmented_item(x, y, rng)
        s = self.size
        y_full = ensure_min_side(y, s)
        x_full = None if x is None else ensure_min_side(x, s)
        h, w = y_full.shape[:2]
        top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        y_crop = y_full[top : top + s, left : left + s]
        x_crop = None if x_full is None else x_full[top : top + s, left : left + s]
        if self.flip and rng.random() < 0.5:
            y_crop = y_crop[:, ::-1]
            x_crop = None if x_crop is None else x_crop[:, ::-1]
        y_crop = np.ascontiguousarray(y_crop)
        kind = self._draw_kind(x_crop is not None, rng)
        if kind != "paired":
            x_crop = make_lines(y_crop, self.lines_method) if kind == "lines" else luma(y_crop)
        item = {"x": to_tensor(np.ascontiguousarray(x_crop))[0], "y": to_tensor(y_crop)[0]}  # (1, S, S), (3, S, S)
        if self.reference:
            item["ref"] = to_tensor(self._reference(y, rng))[0]  # (3, S, S)
        return item

    def _draw_kind(self, paired: bool, rng: np.random.Generator) -> str:
        """This item's input: ``paired`` (the source's own input), ``lines`` or ``luma``.

        A paired source's input is used as it is, except under ``mix``, where half the items take
        line art of the target instead: scans and line art in one training.
        """
        kind = self.input_kind
        if kind == "mix":
            kind = "lines" if rng.random() < 0.5 else ("paired" if paired else "luma")
        elif paired:
            kind = "paired"
        return kind

    def _augmented_item(self, x: np.ndarray | None, y: np.ndarray, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """An item cut with :func:`content_aware_crop` and augmented by :func:`augment_pair`."""
        assert self.augment is not None
        s = self.size
        y_full = ensure_min_side(y, s)
        x_full = None if x is None else ensure_min_side(x, s)
        top, left = content_aware_crop(y_full, s, self.augment, rng)
        y_crop = y_full[top : top + s, left : left + s]
        x_crop = None if x_full is None else x_full[top : top + s, left : left + s]
        kind = self._draw_kind(x_crop is not None, rng)
        if kind != "paired":
            x_crop = None  # made from the augmented target below

        def make_input(target: np.ndarray) -> np.ndarray:
            return make_lines(target, self.lines_method) if kind == "lines" else luma(target)

        x_crop, y_crop = augment_pair(x_crop, y_crop, self.augment, rng, make_input)
        item = {"x": to_tensor(x_crop)[0], "y": to_tensor(y_crop)[0]}  # (1, S, S), (3, S, S)
        if self.reference:
            item["ref"] = to_tensor(self._reference(y, rng))[0]  # (3, S, S)
        return item

    def _reference(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A spatially scrambled view of the whole target: random resized crop, flip, 90-degree turns."""
        h, w = image.shape[:2]
        frac = float(rng.uniform(0.5, 1.0))
        ch, cw = max(1, int(h * frac)), max(1, int(w * frac))
        top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        ref = image[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            ref = ref[::-1]
        ref = np.rot90(ref, int(rng.integers(0, 4)))
        return cv2.resize(np.ascontiguousarray(ref), (self.size, self.size), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- unpaired (scan generator)


class _ImageFolder:
    """The readable images of one folder, decoded once (``cache``) or on every access."""

    def __init__(self, root: str | Path, mode: str, load_size: int | None, cache: bool | None) -> None:
        self.root, self.mode, self.load_size = Path(root), mode, load_size
        if not self.root.exists():
            raise MangacolorError(f"{self.root}: no such file or directory")
        self.files = list(list_images(self.root))
        if not self.files:
            raise MangacolorError(f"{self.root}: no images found (.png, .jpg, .webp, .bmp, .tif)")
        self._cache: list[np.ndarray] | None = None
        if cache if cache is not None else len(self.files) <= AUTO_CACHE_MAX_FILES:
            self._cache = []
            for path in self.files:
                try:
                    self._cache.append(self._decode(path))
                except ImageReadError as exc:
                    log.warning("skipped unreadable training image: %s", exc)
            if not self._cache:
                raise MangacolorError(f"{self.root}: none of the {len(self.files)} images could be read")

    def _decode(self, path: Path) -> np.ndarray:
        image = read_image(path, mode=self.mode)
        return resize_long_side(image, self.load_size) if self.load_size else image

    def __len__(self) -> int:
        return len(self._cache) if self._cache is not None else len(self.files)

    def get(self, index: int) -> np.ndarray:
        if self._cache is not None:
            return self._cache[index]
        n = len(self.files)
        for attempt in range(n):  # an unreadable file is logged and replaced by the next one
            try:
                return self._decode(self.files[(index + attempt) % n])
            except ImageReadError as exc:
                log.warning("skipping unreadable training image: %s", exc)
        raise MangacolorError(f"{self.root}: no readable training images")


class UnpairedDataset(Dataset):
    """Unpaired training items for the scan generator (CycleGAN): a scan crop and a colour crop.

    The two folders are not matched in any way: item ``(epoch, index)`` draws one scan and one
    colour image independently and uniformly (with replacement) from a generator seeded by
    ``(seed, epoch, index)``, then a random square crop (and flip) of each. The epoch length is
    given explicitly rather than taken as the larger folder's size (the reference CycleGAN's
    ``max(len(A), len(B))``), so the schedule does not change when one folder grows.

    Args:
        scans: folder of greyscale scans (colour files are read as their luma).
        colors: folder of colour images.
        size: side of the square crops.
        epoch_length: items per epoch.
        seed: seeds every item's random choices with (seed, epoch, index).
        load_size: long side images are resized to before cropping (``None``: as stored).
        flip: random horizontal flips (independent for the two crops).
        cache: keep decoded images in memory (``None``: for folders up to 5000 files).
        augment: augment each crop on its own (``None``: plain crop and flip): content-aware crops,
            then :func:`augment_pair`'s geometric operations and erasing on both kinds, saturation
            jitter on colour crops and Gaussian blur on scan crops.

    Items are dicts with ``scan`` float (1, S, S) and ``color`` float (3, S, S), in [-1, 1].
    """

    def __init__(
        self,
        scans: str | Path,
        colors: str | Path,
        size: int,
        epoch_length: int = 1000,
        seed: int = 0,
        load_size: int | None = None,
        flip: bool = True,
        cache: bool | None = None,
        augment: AugmentConfig | None = None,
    ) -> None:
        if epoch_length < 1:
            raise MangacolorError(f"epoch length must be at least 1. Got {epoch_length}")
        self.scans = _ImageFolder(scans, "L", load_size, cache)
        self.colors = _ImageFolder(colors, "RGB", load_size, cache)
        self.size, self.epoch_length, self.seed, self.flip = size, epoch_length, seed, flip
        self.augment = augment

    def __len__(self) -> int:
        return self.epoch_length

    def _crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        image = ensure_min_side(image, s)
        if self.augment is not None:
            return self._augmented_crop(image, rng)
        h, w = image.shape[:2]
        top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        crop = image[top : top + s, left : left + s]
        if self.flip and rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop)

    def _augmented_crop(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A content-aware crop augmented alone: (S, S) scan or (S, S, 3) colour."""
        assert self.augment is not None
        s = self.size
        top, left = content_aware_crop(image, s, self.augment, rng)
        crop = image[top : top + s, left : left + s]
        if crop.ndim == 2:  # a scan is the "input" of augment_pair: it gets the blur, not the saturation
            x, _ = augment_pair(crop, np.repeat(crop[..., None], 3, axis=-1), self.augment, rng)  # (S, S)
            return x
        _, y = augment_pair(None, crop, self.augment, rng, make_input=luma)  # (S, S, 3)
        return y

    def __getitem__(self, key: tuple[int, int] | int) -> dict[str, torch.Tensor]:
        from mangacolor.training.loop import item_rng

        rng = item_rng(self.seed, key)
        scan = self.scans.get(int(rng.integers(len(self.scans))))
        color = self.colors.get(int(rng.integers(len(self.colors))))
        return {
            "scan": to_tensor(self._crop(scan, rng))[0],  # (1, S, S)
            "color": to_tensor(self._crop(color, rng))[0],  # (3, S, S)
        }
