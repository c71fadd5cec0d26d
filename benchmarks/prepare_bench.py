"""Benchmark ``prepare crop`` and ``prepare lines --method sketch`` against a bare decode+encode loop.

Images per second over the same files, at 1 worker and at all workers. The bare loop is
``read_image`` + ``encode_image`` + an atomic write in one process, with the output format each
stage writes (``crop`` keeps JPEG, ``lines`` writes PNG); the stages should reach >= 70 % of it,
and two workers should be >= 1.7x one. The worker pool is started once before timing (its fork
server imports the library once per run, not per file). Usage::

    python benchmarks/prepare_bench.py                         # 300 generated 512 px letterboxed JPEGs
    python benchmarks/prepare_bench.py --source DIR --count 500  # the first 500 images of DIR
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from machine import describe

from mangacolor.errors import MangacolorError
from mangacolor.imageio import atomic_write_bytes, encode_image, list_images, read_image
from mangacolor.prepare.borders import CropConfig, crop_folder
from mangacolor.prepare.lines import LinesConfig, lines_folder
from mangacolor.prepare.runner import RunOptions, default_workers


def make_image(seed: int, side: int = 512) -> np.ndarray:
    """A Danbooru-512px-like image: a colour drawing letterboxed in black to a square."""
    rng = np.random.default_rng(seed)
    h = int(rng.integers(side // 2, side))
    img = np.full((h, side, 3), 255, np.uint8)
    for _ in range(12):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        center = (int(rng.integers(0, side)), int(rng.integers(0, h)))
        axes = (int(rng.integers(10, side // 4)), int(rng.integers(10, side // 4)))
        cv2.ellipse(img, center, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        cv2.ellipse(img, center, axes, 0, 0, 360, (0, 0, 0), 2)
    boxed = np.zeros((side, side, 3), np.uint8)
    top = (side - h) // 2
    boxed[top : top + h] = img
    return boxed


def prepare_inputs(folder: Path, count: int, source: Path | None) -> list[Path]:
    folder.mkdir(parents=True)
    if source is not None:
        files = [p for _, p in zip(range(count), list_images(source), strict=False)]
        for p in files:
            shutil.copy(p, folder / p.name)
    else:
        for i in range(count):
            ok, buf = cv2.imencode(".jpg", make_image(i)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            (folder / f"{i:05d}.jpg").write_bytes(buf.tobytes())
    return sorted(folder.iterdir())


def bare_loop(files: list[Path], out: Path, suffix: str | None) -> float:
    """Images/s of decode + encode + atomic write in one process."""
    out.mkdir(parents=True, exist_ok=True)
    cv2.setNumThreads(1)
    start = time.perf_counter()
    for p in files:
        image = read_image(p, mode=None)
        ext = suffix or p.suffix
        atomic_write_bytes(out / (p.stem + ext), encode_image(image, ext))
    return len(files) / (time.perf_counter() - start)


def timed(run, n: int) -> float:
    start = time.perf_counter()
    report = run()
    elapsed = time.perf_counter() - start
    if report.failed or report.counts["done"] != n:
        first = report.failures[0] if report.failures else None
        why = f"{first.path}: {first.reason}" if first else f"{report.counts['done']} of {n} images done"
        raise MangacolorError(f"{report.failed} of {n} images failed, timing void ({why})")
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="Number of images.")
    parser.add_argument("--source", type=Path, default=None, help="Take images from this folder.")
    parser.add_argument("--workers", type=int, default=default_workers(), help="The 'all workers' count.")
    args = parser.parse_args()
    if args.count < 1 or args.workers < 1:
        parser.error("--count and --workers must be at least 1")
    try:
        if args.source is not None and not any(True for _ in list_images(args.source)):
            parser.error(f"--source {args.source}: no images there")
        run(args)
    except MangacolorError as exc:  # an unreadable --source image, say: one line, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args: argparse.Namespace) -> None:
    """Time the stages and print the table."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        files = prepare_inputs(tmp_path / "in", args.count, args.source)
        n = len(files)
        # Start the worker pool's fork server once (as a long run would amortise it).
        crop_folder(files[0], tmp_path / "warm", options=RunOptions(workers=2))

        rows = []
        bare_same = bare_loop(files, tmp_path / "bare_same", None)
        bare_png = bare_loop(files, tmp_path / "bare_png", ".png")
        rows.append(("bare decode+encode (same format)", 1, bare_same, None))
        rows.append(("bare decode+encode (to PNG)", 1, bare_png, None))
        for workers in sorted({1, 2, args.workers}):  # 2: the target is stated for 1 -> 2 workers
            opts = RunOptions(workers=workers, overwrite=True)
            rate = timed(
                lambda o=opts, w=workers: crop_folder(tmp_path / "in", tmp_path / f"crop{w}", CropConfig(), o), n
            )
            rows.append(("crop", workers, rate, bare_same))
            rate = timed(
                lambda o=opts, w=workers: lines_folder(
                    tmp_path / "in", tmp_path / f"lines{w}", LinesConfig("sketch"), o
                ),
                n,
            )
            rows.append(("lines --method sketch", workers, rate, bare_png))

    print(describe())
    print(f"{n} images ({'from ' + str(args.source) if args.source else 'generated 512x512 letterboxed JPEG'})")
    print(f"{'stage':<34} {'workers':>7} {'images/s':>9} {'vs bare (1 proc)':>17} {'speed-up':>9}")
    one = {name: rate for name, w, rate, _ in rows if w == 1}
    for name, workers, rate, bare in rows:
        ratio = f"{rate / bare:.0%}" if bare else ""
        speedup = f"{rate / one[name]:.2f}x" if bare and workers > 1 else ""
        print(f"{name:<34} {workers:>7} {rate:>9.1f} {ratio:>17} {speedup:>9}")


if __name__ == "__main__":
    sys.exit(main())
