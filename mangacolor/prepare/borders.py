"""Border removal: detect and cut uniform black or white padding around an image.

Danbooru's 512px subset letterboxes every non-square image in black to 512x512; scans and
screenshots often carry white or black margins. A row (column) at the edge counts as padding when
at most ``outlier_fraction`` of its pixels differ from pure black (white) by more than ``tolerance``
in any channel, which survives JPEG noise. When the original width and height are known (Danbooru
metadata), the letterbox geometry is computed exactly instead, so dark or white content at the
image's own edge is never eaten.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mangacolor.report import BatchReport, FileResult

if TYPE_CHECKING:
    from mangacolor.prepare.runner import RunOptions

BORDER_COLORS = ("both", "black", "white")


class TooSmall(Exception):
    """The cropped image is smaller than the minimum size (the stage skips it).

    Attributes:
        size: ``(width, height)`` after cropping.
        min_size: the minimum short side it missed.
    """

    def __init__(self, size: tuple[int, int], min_size: int) -> None:
        self.size, self.min_size = size, min_size
        super().__init__(f"{size[0]}x{size[1]} after cropping, below --min-size {min_size}")


def _channel_extremes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel max and min over channels, ``uint8`` (H, W) each."""
    if image.ndim == 2:
        return image, image
    c0, c1, c2 = cv2.split(image)
    return cv2.max(cv2.max(c0, c1), c2), cv2.min(cv2.min(c0, c1), c2)


def _run_length(bad_fraction: np.ndarray, outlier_fraction: float) -> int:
    """How many leading entries are padding (bad fraction <= outlier_fraction)."""
    ok = bad_fraction <= outlier_fraction
    if ok.all():
        return len(ok)
    return int(np.argmin(ok))


def detect_borders(
    image: np.ndarray, color: str = "both", tolerance: int = 24, outlier_fraction: float = 0.01
) -> tuple[int, int, int, int]:
    """Find the content box inside uniform black / white padding.

    Args:
        image: ``uint8`` (H, W) or (H, W, 3).
        color: which padding to remove: ``black``, ``white`` or ``both`` (each side decides by
            its outermost line).
        tolerance: largest per-channel difference from pure black / white still counted as padding.
        outlier_fraction: share of pixels in a padding line allowed to exceed ``tolerance``.

    Returns:
        ``(top, bottom, left, right)`` so that ``image[top:bottom, left:right]`` is the content;
        the whole image when it is all padding.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3). Got {image.dtype} {image.shape}")
    if color not in BORDER_COLORS:
        raise ValueError(f"color must be one of {', '.join(BORDER_COLORS)}. Got {color!r}")
    h, w = image.shape[:2]
    top, bottom, left, right = 0, h, 0, w
    while True:  # peel layers: a black letterbox around white margins takes two rounds with "both"
        inner = _detect_once(image[top:bottom, left:right], color, tolerance, outlier_fraction)
        if inner is None:
            return top, bottom, left, right
        dt, db, dl, dr = inner
        top, bottom, left, right = top + dt, top + db, left + dl, left + dr
        if color != "both":
            return top, bottom, left, right


def _detect_once(
    image: np.ndarray, color: str, tolerance: int, outlier_fraction: float
) -> tuple[int, int, int, int] | None:
    """One round of :func:`detect_borders`; ``None`` when nothing (or everything) is padding."""
    h, w = image.shape[:2]
    hi, lo = _channel_extremes(image)
    masks = []
    if color in ("both", "black"):
        masks.append(hi > tolerance)  # (H, W): not black
    if color in ("both", "white"):
        masks.append(lo < 255 - tolerance)  # (H, W): not white
    best = (0, h, 0, w)
    for not_pad in masks:
        rows = not_pad.mean(axis=1)  # (H,) share of non-padding pixels per row
        cols = not_pad.mean(axis=0)  # (W,)
        box = (
            _run_length(rows, outlier_fraction),
            h - _run_length(rows[::-1], outlier_fraction),
            _run_length(cols, outlier_fraction),
            w - _run_length(cols[::-1], outlier_fraction),
        )
        best = _per_side_max(best, box)
    top, bottom, left, right = best
    if bottom <= top or right <= left or best == (0, h, 0, w):
        return None  # all padding (nothing sensible to cut) or no padding
    return best


def _per_side_max(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The tighter box on every side (each side takes whichever padding colour is wider)."""
    return max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])


def letterbox_box(
    shape: tuple[int, int], original_size: tuple[int, int], enlarge: bool = True
) -> tuple[int, int, int, int] | None:
    """Content box of an image letterboxed to a square from a known original size.

    Danbooru's 512px subset brings the long side to the square's side and centres the image.

    Args:
        shape: ``(H, W)`` of the letterboxed image.
        original_size: ``(width, height)`` of the original post.
        enlarge: an original smaller than the square was scaled up to fill it; ``False``: it was
            only padded (a shrink-only resize), so its box keeps the original size.

    Returns:
        ``(top, bottom, left, right)`` (the whole image when the content fills the square), or
        ``None`` when ``shape`` cannot be such a letterbox (not square, or no original size).
    """
    h, w = shape
    ow, oh = original_size
    if h != w or ow <= 0 or oh <= 0:
        return None
    scale = h / max(ow, oh) if enlarge else min(1.0, h / max(ow, oh))
    cw, ch = min(w, max(1, round(ow * scale))), min(h, max(1, round(oh * scale)))
    top, left = (h - ch) // 2, (w - cw) // 2
    return top, top + ch, left, left + cw


def resize_long_side_area(image: np.ndarray, size: int) -> np.ndarray:
    """Shrink so that the long side is at most ``size`` (area interpolation, aspect kept; never enlarges)."""
    h, w = image.shape[:2]
    if max(h, w) <= size:
        return image
    scale = size / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class CropConfig:
    """Settings of ``prepare crop`` (picklable for worker processes).

    Attributes:
        color: padding colour to remove: ``both``, ``black`` or ``white``.
        tolerance: see :func:`detect_borders`.
        outlier_fraction: see :func:`detect_borders`.
        min_size: images whose short side is below this after cropping are dropped (0: keep all).
        size: shrink the long side to this (area interpolation); ``None`` keeps the size.
    """

    color: str = "both"
    tolerance: int = 24
    outlier_fraction: float = 0.01
    min_size: int = 0
    size: int | None = None

    def __post_init__(self) -> None:
        if self.color not in BORDER_COLORS:
            raise ValueError(f"color must be one of {', '.join(BORDER_COLORS)}. Got {self.color!r}")
        if not 0 <= self.tolerance < 255:
            raise ValueError(f"tolerance must be in [0, 255). Got {self.tolerance}")
        if self.size is not None and self.size < 1:
            raise ValueError(f"size must be >= 1. Got {self.size}")


def _metadata_box(
    image: np.ndarray, original_size: tuple[int, int], tolerance: int
) -> tuple[int, int, int, int] | None:
    """The letterbox box for a known original size.

    For an original smaller than the square, the image itself says whether it was scaled up to fill
    the square or only padded: when the band between the two candidate boxes is black padding,
    the padded (smaller) box is the content.
    """
    filled = letterbox_box(image.shape[:2], original_size)
    padded = letterbox_box(image.shape[:2], original_size, enlarge=False)
    if filled is None or padded is None or padded == filled:
        return filled
    top, bottom, left, right = filled
    pt, pb, pl, pr = padded
    box = image[top:bottom, left:right]
    brightest = box.max(axis=-1) if box.ndim == 3 else box  # (h, w)
    in_band = np.ones(brightest.shape, bool)
    in_band[pt - top : pb - top, pl - left : pr - left] = False  # the band: filled box minus padded box
    lit = np.count_nonzero((brightest > tolerance) & in_band)
    return padded if lit <= 0.01 * np.count_nonzero(in_band) else filled


def crop_image(
    image: np.ndarray, config: CropConfig = CropConfig(), original_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Remove padding, check the minimum size, optionally shrink.

    Args:
        image: ``uint8`` (H, W) or (H, W, 3).
        config: crop settings.
        original_size: ``(width, height)`` of the un-letterboxed original, when known: the
            letterbox geometry is then used instead of detection.

    Returns:
        The cropped (and possibly shrunk) image; a view of ``image`` when nothing was resized.

    Raises:
        TooSmall: the short side after cropping is below ``config.min_size``.
    """
    box = _metadata_box(image, original_size, config.tolerance) if original_size else None
    if box is None:
        box = detect_borders(image, config.color, config.tolerance, config.outlier_fraction)
    top, bottom, left, right = box
    out = image[top:bottom, left:right]
    h, w = out.shape[:2]
    if min(h, w) < config.min_size:
        raise TooSmall((w, h), config.min_size)
    if config.size is not None:
        out = resize_long_side_area(out, config.size)
    return out


# ----------------------------------------------------------------------------- folder stage


@dataclass(frozen=True)
class _CropTransform:
    config: CropConfig

    def __call__(self, image: np.ndarray, original_size: tuple[int, int] | None) -> np.ndarray:
        from mangacolor.prepare.runner import SkipImage

        try:
            return crop_image(image, self.config, original_size)
        except TooSmall as exc:
            # One reason for every size, so the summary's skip reasons stay one line.
            raise SkipImage(f"below --min-size {exc.min_size} after cropping") from None


def load_original_sizes(
    metadata: list[Path],
    wanted: set[int] | None = None,
    on_error: Callable[[Path, str], None] | None = None,
) -> dict[int, tuple[int, int]]:
    """Post id -> original ``(width, height)`` from Danbooru metadata or a ``prepare filter`` manifest.

    Lines without an id or a size are ignored. Memory: one small entry per post, and with ``wanted``
    only for those ids (the images of the folder being cropped, not the whole dump's posts).

    Args:
        metadata: metadata files or folders.
        wanted: keep only these post ids (``None``: all).
        on_error: called with a metadata file or folder that could not be read (to its end) and
            the reason; the sizes read from the others are returned.

    Raises:
        MangacolorError: a path does not exist, or no metadata file was found.
    """
    from mangacolor.prepare.danbooru import read_metadata

    sizes: dict[int, tuple[int, int]] = {}
    for line in read_metadata(metadata):
        if line.whole_file and on_error is not None:
            on_error(line.file, line.error)
        post = line.post
        if post is not None and post.width and post.height and (wanted is None or post.id in wanted):
            sizes[post.id] = (post.width, post.height)
    return sizes


def _post_id(path: Path) -> int | None:
    """The Danbooru post id of an image named ``<id>.<ext>``, else ``None``."""
    stem = path.stem
    return int(stem) if stem.isascii() and stem.isdigit() else None


def crop_folder(
    input_root: str | Path,
    output_root: str | Path,
    config: CropConfig = CropConfig(),
    options: RunOptions | None = None,
    output_format: str = "same",
    quality: int = 95,
    metadata: list[Path] | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> BatchReport:
    """``prepare crop``: remove borders from every image under ``input_root`` into ``output_root``.

    A metadata file or folder that cannot be read (to its end) is a failure of its own; the images
    are still cropped, those without a known original size by border detection.

    Args:
        input_root: folder (searched recursively) or one image.
        output_root: output folder; the input tree is mirrored.
        config: crop settings.
        options: workers, shard, overwrite.
        output_format: ``same``, ``png``, ``jpg`` or ``webp``.
        quality: JPEG / WebP quality.
        metadata: Danbooru metadata or a ``prepare filter`` manifest: images named ``<id>.<ext>``
            use the post's original size to undo the letterbox exactly.
        on_result: called with each file's outcome.
    """
    from mangacolor.imageio import list_images, record_quality
    from mangacolor.prepare.runner import ImageTask, RunOptions, close_record, image_jobs, open_output, run_jobs

    options = options or RunOptions()
    settings = {
        **asdict(config),
        "format": output_format,
        "quality": record_quality(output_format, quality),
        "metadata": bool(metadata),
    }
    sizes: dict[int, tuple[int, int]] = {}
    unread: list[FileResult] = []  # metadata files or folders that could not be read
    if metadata:
        listed = (_post_id(p) for p in list_images(input_root, on_error=lambda *_: None))  # image_jobs reports
        sizes = load_original_sizes(  # one int per image
            metadata,
            {i for i in listed if i is not None},
            on_error=lambda path, reason: unread.append(FileResult(str(path), "failed", reason)),
        )

    # the record after the metadata: metadata that cannot be used at all must not bind the folder
    recorded = open_output(input_root, output_root, "crop", settings, options.overwrite)

    def original_size(path: Path) -> tuple[int, int] | None:
        post_id = _post_id(path)
        return sizes.get(post_id) if post_id is not None else None

    jobs = image_jobs(input_root, output_root, output_format, payload=original_size if sizes else None)
    task = ImageTask(_CropTransform(config), read_mode=None, quality=quality, pass_payload=True)
    report = run_jobs(jobs, task, options, on_result)
    close_record(recorded, report, output_root, lambda: image_jobs(input_root, output_root, output_format))
    for failure in unread:
        report.add(failure)
        if on_result is not None:
            on_result(failure)
    return report
