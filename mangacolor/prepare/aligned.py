"""pix2pix's aligned format: input A and target B side by side in one image (A left, B right).

This module is the only place that knows the A|B layout; ``prepare hconcat`` / ``prepare split``
and :class:`mangacolor.data.AlignedSource` all go through :func:`join_ab` and :func:`split_ab`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mangacolor.errors import ImageReadError
from mangacolor.imageio import convert_mode, read_image, write_image
from mangacolor.prepare.runner import (
    InputGuard,
    Job,
    RunOptions,
    check_output_format,
    check_output_root,
    image_jobs,
    iter_results,
    run_jobs,
)
from mangacolor.report import BatchReport, FileResult

if TYPE_CHECKING:
    from mangacolor.prepare.pair import PairReport


def _as_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)  # (H, W, 3)
    return image


def join_ab(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Put A (left) and B (right) side by side.

    Args:
        a: ``uint8`` (H, W) or (H, W, 3) input (greyscale is repeated into three channels when B
            is colour).
        b: ``uint8`` (H, W) or (H, W, 3) target of the same height and width.

    Returns:
        ``uint8`` (H, 2W, 3), or (H, 2W) when both are greyscale.

    Raises:
        ValueError: the halves differ in size or are not uint8 (H, W[, 3]).
    """
    for name, img in (("A", a), ("B", b)):
        if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
            raise ValueError(f"{name} must be uint8 (H, W) or (H, W, 3). Got {img.dtype} {img.shape}")
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"A and B must have the same height and width. Got {a.shape[:2]} and {b.shape[:2]}")
    if a.ndim == 2 and b.ndim == 2:
        return np.concatenate([a, b], axis=1)  # (H, 2W)
    return np.concatenate([_as_rgb(a), _as_rgb(b)], axis=1)  # (H, 2W, 3)


def split_ab(ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut a side-by-side image into its halves A (left) and B (right).

    Args:
        ab: ``uint8`` (H, 2W) or (H, 2W, C).

    Returns:
        Contiguous ``(a, b)``, each (H, W) or (H, W, C).

    Raises:
        ValueError: the width is odd (not an A|B image) or the array is not an image.
    """
    if ab.ndim not in (2, 3):
        raise ValueError(f"expected (H, 2W) or (H, 2W, C). Got {ab.shape}")
    w2 = ab.shape[1]
    if w2 < 2 or w2 % 2:
        raise ValueError(f"an A|B image has an even width (two equal halves). Got width {w2}")
    w = w2 // 2
    return np.ascontiguousarray(ab[:, :w]), np.ascontiguousarray(ab[:, w:])  # (H, W[, C]) each


def is_gray_rgb(image: np.ndarray) -> bool:
    """Whether a (H, W, 3) image has three identical channels (a greyscale half stored as RGB)."""
    return image.ndim == 2 or (
        np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    )


# ----------------------------------------------------------------------------- folder stages


@dataclass(frozen=True)
class HconcatTask:
    """Read A and B, bring A to B's size, write A|B."""

    quality: int = 95

    def __call__(self, job: Job) -> FileResult:
        from mangacolor.prepare.pair import common_size

        a_path, b_path = job.payload
        a, b = read_image(a_path, mode=None), read_image(b_path, mode=None)
        if a.ndim != b.ndim:
            a, b = convert_mode(a, "RGB"), convert_mode(b, "RGB")
        a, b = common_size(a, b, None)
        write_image(job.outputs[0], join_ab(a, b), quality=self.quality)
        return FileResult(job.source, "done", outputs=list(job.outputs))


@dataclass(frozen=True)
class SplitTask:
    """Read A|B, write A (greyscale when its channels agree) and B."""

    quality: int = 95

    def __call__(self, job: Job) -> FileResult:
        ab = read_image(job.source, mode=None)
        try:
            a, b = split_ab(ab)
        except ValueError as exc:
            raise ImageReadError(job.source, str(exc)) from None
        if a.ndim == 3 and is_gray_rgb(a):
            a = np.ascontiguousarray(a[..., 0])  # (H, W)
        write_image(job.outputs[0], a, quality=self.quality)
        write_image(job.outputs[1], b, quality=self.quality)
        return FileResult(job.source, "done", outputs=list(job.outputs))


def hconcat_folders(
    a_root: str | Path,
    b_root: str | Path,
    output_root: str | Path,
    options: RunOptions | None = None,
    output_format: str = "png",
    quality: int = 95,
    on_result: Callable[[FileResult], None] | None = None,
) -> PairReport:
    """``prepare hconcat``: join images of two folders matched by name into A|B images.

    A is resized to B's size when they differ. Unmatched files are reported and listed in
    ``OUT/unmatched.txt``; a sub-folder that cannot be listed fails and the other pairs are done.

    Raises:
        FileError: ``OUT/unmatched.txt`` cannot be written.
    """
    from mangacolor.prepare.pair import PairReport, match_stems, unlisted_jobs, write_unmatched

    a_root, b_root, output_root = Path(a_root), Path(b_root), Path(output_root)
    check_output_format(output_format)
    for root in (a_root, b_root):
        check_output_root(root, output_root)
    guard = InputGuard.of(output_root, (a_root, b_root))
    matching = match_stems(a_root, b_root)
    suffix_of = (lambda p: p.suffix.lower()) if output_format == "same" else (lambda p: "." + output_format)

    def jobs() -> Iterator[Job]:
        for key, a, b in matching.pairs:
            outputs = (str(output_root / (key + suffix_of(b))),)
            yield Job(str(b), outputs, key, (str(a), str(b)), error=guard.error(outputs))
        yield from unlisted_jobs(matching)

    report = BatchReport()
    for _, result in iter_results(jobs(), HconcatTask(quality), options or RunOptions()):
        report.add(result)
        if on_result is not None:
            on_result(result)
    write_unmatched(matching, output_root / "unmatched.txt", ("A", "B"))
    return PairReport(report, matching)


def split_folder(
    input_root: str | Path,
    output_root: str | Path,
    options: RunOptions | None = None,
    output_format: str = "png",
    quality: int = 95,
    on_result: Callable[[FileResult], None] | None = None,
) -> BatchReport:
    """``prepare split``: cut every A|B image under ``input_root`` into ``OUT/A`` and ``OUT/B``."""
    input_root, output_root = Path(input_root), Path(output_root)
    check_output_root(input_root, output_root)

    def halves(out: Path) -> tuple[Path, ...]:
        rel = out.relative_to(output_root)
        return output_root / "A" / rel, output_root / "B" / rel

    jobs = image_jobs(input_root, output_root, output_format, outputs=halves)
    return run_jobs(jobs, SplitTask(quality), options or RunOptions(), on_result)
