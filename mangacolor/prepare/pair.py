"""Pair greyscale and colour pages that share a name (``prepare pair``) and the matching it shares
with ``prepare hconcat``.

Pages match by their path relative to each folder without the ending, so
``bw/ch01/003.png`` pairs with ``color/ch01/003.jpg``. Matched pairs are written as ``OUT/A``
(greyscale, luma) and ``OUT/B`` (colour) under the same relative names; files without a partner
are reported for both sides and listed in ``OUT/unmatched.txt``. A sub-folder that cannot be
listed fails (its files take no part in the matching) and the other pairs are done.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mangacolor.errors import FileError, MangacolorError
from mangacolor.imageio import atomic_write_bytes, list_images, read_image, record_quality, write_image
from mangacolor.prepare.runner import (
    InputGuard,
    Job,
    RunOptions,
    check_output_format,
    check_output_root,
    close_record,
    iter_results,
    record_settings,
)
from mangacolor.report import BatchReport, FileResult


@dataclass
class Matching:
    """Files of two folders matched by relative name stem.

    Attributes:
        pairs: ``(key, a_path, b_path)`` sorted by key.
        unmatched_a: files of the first folder without a partner.
        unmatched_b: files of the second folder without a partner.
        ambiguous: keys with several files on one side (``x.png`` and ``x.jpg``), left out.
        unlisted: ``(folder, reason)`` of the sub-folders of either side that could not be listed.
    """

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    unmatched_a: list[Path] = field(default_factory=list)
    unmatched_b: list[Path] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    unlisted: list[tuple[Path, str]] = field(default_factory=list)


def _index(root: Path, on_error: Callable[[Path, str], None]) -> tuple[dict[str, Path], set[str]]:
    found: dict[str, Path] = {}
    duplicate: set[str] = set()
    for path in list_images(root, on_error=on_error):
        key = path.relative_to(root).with_suffix("").as_posix() if root.is_dir() else path.stem
        if key in found:
            duplicate.add(key)
        found[key] = path
    return found, duplicate


def match_stems(a_root: str | Path, b_root: str | Path) -> Matching:
    """Match the images of two folders by relative path without ending.

    Memory holds one name per file (the matching needs both sides). A sub-folder that cannot be
    listed is recorded in :attr:`Matching.unlisted` and the walk goes on.

    Raises:
        ImageReadError: a folder does not exist or cannot be listed itself.
    """
    unlisted: list[tuple[Path, str]] = []

    def on_error(folder: Path, reason: str) -> None:
        unlisted.append((folder, reason))

    a, dup_a = _index(Path(a_root), on_error)
    b, dup_b = _index(Path(b_root), on_error)
    ambiguous = dup_a | dup_b
    result = Matching(ambiguous=sorted(ambiguous), unlisted=unlisted)
    for key in sorted(a.keys() & b.keys() - ambiguous):
        result.pairs.append((key, a[key], b[key]))
    result.unmatched_a = [a[k] for k in sorted(a.keys() - b.keys() - ambiguous)]
    result.unmatched_b = [b[k] for k in sorted(b.keys() - a.keys() - ambiguous)]
    return result


MAX_SIDE = 16384
"""Largest side ``--resize`` accepts: a 16384x16384 RGB page is already 768 MiB in memory."""

RESIZE_FORMAT = f"WxH or a long side N, each side 1 to {MAX_SIDE} (e.g. 512x768 or 512)"
"""What ``--resize`` takes, for messages."""


def parse_size(text: str | None) -> tuple[int, int] | int | None:
    """``--resize``: ``WxH`` (exact size), ``N`` (long side N) or ``None``; sides 1 to :data:`MAX_SIDE`.

    Raises:
        MangacolorError: anything else.
    """
    if text is None or text == "":
        return None
    try:
        sides = tuple(int(v) for v in text.lower().split("x"))
        if len(sides) not in (1, 2) or not all(1 <= v <= MAX_SIDE for v in sides):
            raise ValueError
    except ValueError:
        raise MangacolorError(f"--resize must be {RESIZE_FORMAT}. Got {text!r}") from None
    return sides if len(sides) == 2 else sides[0]  # type: ignore[return-value]


def common_size(a: np.ndarray, b: np.ndarray, size: tuple[int, int] | int | None) -> tuple[np.ndarray, np.ndarray]:
    """Bring a pair to one size.

    Args:
        a: ``uint8`` (H, W[, C]) input page.
        b: ``uint8`` (H', W'[, C]) target page.
        size: ``(W, H)``: both to exactly that; ``N``: B to long side N and A to B's size;
            ``None``: A to B's size when they differ.
    """

    def fit(img: np.ndarray, w: int, h: int) -> np.ndarray:
        if img.shape[:2] == (h, w):
            return img
        shrink = w * h < img.shape[0] * img.shape[1]
        return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)

    if isinstance(size, tuple):
        w, h = size
    elif isinstance(size, int):
        bh, bw = b.shape[:2]
        scale = size / max(bh, bw)
        w, h = max(1, round(bw * scale)), max(1, round(bh * scale))
    else:
        h, w = b.shape[:2]
    return fit(a, w, h), fit(b, w, h)


@dataclass(frozen=True)
class PairTask:
    """Read a matched pair, bring it to a common size and write A (luma) and B (colour)."""

    size: tuple[int, int] | int | None = None
    quality: int = 95

    def __call__(self, job: Job) -> FileResult:
        a_path, b_path = job.payload
        a = read_image(a_path, mode="L")
        b = read_image(b_path, mode="RGB")
        a, b = common_size(a, b, self.size)
        write_image(job.outputs[0], a, quality=self.quality)
        write_image(job.outputs[1], b, quality=self.quality)
        return FileResult(job.source, "done", outputs=list(job.outputs))


def _suffix(path: Path, output_format: str) -> str:
    return path.suffix.lower() if output_format == "same" else "." + output_format


@dataclass
class PairReport:
    """Outcome of ``prepare pair`` / ``prepare hconcat``: the batch plus the files left unpaired."""

    batch: BatchReport
    matching: Matching


def write_unmatched(matching: Matching, path: Path, labels: tuple[str, str]) -> None:
    """List the unmatched and ambiguous files, one per line (``<side>\\t<path>``), in ``path``.

    Names are written as the file system stores them (a name that is not UTF-8 keeps its bytes).
    The file is written through a temporary file and a rename; when nothing is unmatched, no file
    is written and one left by an earlier run is removed.

    Raises:
        FileError: ``path`` cannot be written (a folder in the way, a full disk) or removed.
    """
    lines = [labels[0].encode() + b"\t" + os.fsencode(p) for p in matching.unmatched_a]
    lines += [labels[1].encode() + b"\t" + os.fsencode(p) for p in matching.unmatched_b]
    lines += [b"ambiguous\t" + os.fsencode(k) for k in matching.ambiguous]
    try:
        if lines:
            atomic_write_bytes(path, b"\n".join(lines) + b"\n")
        elif path.is_file() or path.is_symlink():  # a stale listing: every page has its partner now
            path.unlink()
    except OSError as exc:
        action = "write" if lines else "remove the stale listing"
        raise FileError(path, f"cannot {action}: {exc.strerror or exc}") from None


def unlisted_jobs(matching: Matching) -> Iterator[Job]:
    """A failing job per sub-folder that could not be listed (reported as a failure of that folder)."""
    for folder, reason in matching.unlisted:
        yield Job(str(folder), (), folder.as_posix(), error=reason)


def pair_folders(
    bw_root: str | Path,
    color_root: str | Path,
    output_root: str | Path,
    options: RunOptions | None = None,
    size: tuple[int, int] | int | None = None,
    output_format: str = "png",
    quality: int = 95,
    on_result: Callable[[FileResult], None] | None = None,
) -> PairReport:
    """``prepare pair``: write matched greyscale / colour pages to ``OUT/A`` and ``OUT/B``.

    A sub-folder that cannot be listed is a failed result of its own; the other pairs are done.

    Args:
        bw_root: folder of greyscale pages.
        color_root: folder of colour pages.
        output_root: gets ``A/``, ``B/`` and ``unmatched.txt``.
        options: workers, shard, overwrite.
        size: see :func:`common_size`.
        output_format: ``png`` (default), ``jpg``, ``webp`` or ``same``.
        quality: JPEG / WebP quality.
        on_result: called with each pair's outcome.

    Raises:
        MangacolorError: an input folder is missing or cannot be listed, or the output folder is unusable.
        FileError: ``OUT/unmatched.txt`` cannot be written.
    """
    bw_root, color_root, output_root = Path(bw_root), Path(color_root), Path(output_root)
    check_output_format(output_format)
    for root in (bw_root, color_root):
        check_output_root(root, output_root)
    options = options or RunOptions()
    settings = {"resize": size, "format": output_format, "quality": record_quality(output_format, quality)}
    recorded = record_settings(output_root, "pair", settings, options.overwrite)
    guard = InputGuard.of(output_root, (bw_root, color_root))
    matching = match_stems(bw_root, color_root)

    def jobs() -> Iterator[Job]:
        for key, a, b in matching.pairs:
            out_a = output_root / "A" / (key + _suffix(a, output_format))
            out_b = output_root / "B" / (key + _suffix(b, output_format))
            outputs = (str(out_a), str(out_b))
            yield Job(str(b), outputs, key, (str(a), str(b)), error=guard.error(outputs))
        yield from unlisted_jobs(matching)

    report = BatchReport()
    for _, result in iter_results(jobs(), PairTask(size, quality), options):
        report.add(result)
        if on_result is not None:
            on_result(result)
    close_record(recorded, report, output_root, jobs)
    write_unmatched(matching, output_root / "unmatched.txt", ("bw", "color"))
    return PairReport(report, matching)
