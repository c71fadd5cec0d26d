"""Benchmark `colorize` on A4 pages at 200 dpi (1654 x 2339 px): seconds per page and peak RSS.

Each page count runs in a fresh process so peak RSS is measured per run; RSS should not grow
with the number of pages. Usage::

    python benchmarks/colorize_bench.py                      # default model, CPU, 4 and 16 pages
    python benchmarks/colorize_bench.py --pages 4 16 --device cuda --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from machine import describe

A4_200DPI = (2339, 1654)  # (H, W)


def a4(dpi: int) -> tuple[int, int]:
    """An A4 page's (H, W) in pixels at ``dpi`` (200 dpi: 2339 x 1654)."""
    return round(297 / 25.4 * dpi), round(210 / 25.4 * dpi)


def make_page(seed: int, shape: tuple[int, int] = A4_200DPI) -> np.ndarray:
    """A synthetic greyscale manga page: panels, shapes with outlines, screentone, text-like strokes."""
    rng = np.random.default_rng(seed)
    h, w = shape
    page = np.full((h, w), 255, np.uint8)
    yy, xx = np.ogrid[0:h, 0:w]  # broadcast: no page-sized index arrays in the measured process
    tone = ((yy % 8 < 3) & (xx % 8 < 3)).astype(np.uint8) * 255  # dot screentone
    for top in range(80, h - 400, 560):
        for left in (80, w // 2 + 20):
            x1, y1 = left + w // 2 - 140, top + 520
            cv2.rectangle(page, (left, top), (x1, y1), 0, 6)
            for _ in range(4):
                c = (int(rng.integers(left + 40, x1 - 40)), int(rng.integers(top + 40, y1 - 40)))
                r = int(rng.integers(20, 120))
                mask = np.zeros_like(page)
                cv2.circle(mask, c, r, 255, -1)
                page[mask > 0] = np.minimum(page[mask > 0], 255 - tone[mask > 0] // 2)
                cv2.circle(page, c, r, 0, 3)
            for k in range(3):
                y = top + 60 + 30 * k
                cv2.line(page, (left + 40, y), (left + 200, y), 40, 4)
    return page


def check_model(model: str | None) -> None:
    """Refuse a checkpoint that is missing, unreadable or not a colorizer (a scan generator, say).

    Raises:
        MangacolorError: naming the file and what is wrong with it.
    """
    from mangacolor.checkpoint import read_info
    from mangacolor.errors import MangacolorError
    from mangacolor.inference import default_model_path

    path = Path(model) if model else default_model_path()
    if (task := read_info(path).task) != "colorize":
        raise MangacolorError(f"{path}: a {task} model, not a colorizer")


def child(pages: int, args: argparse.Namespace) -> dict:
    from mangacolor.inference import FolderOptions, Translator, default_model_path, run_folder

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        for i in range(pages):
            cv2.imwrite(str(src / f"page_{i:03d}.png"), make_page(i, a4(args.dpi)))
        model = Path(args.model) if args.model else default_model_path()
        translator = Translator.from_checkpoint(model, device=args.device, size=args.size)
        translator(make_page(999)[:512, :512])  # warm-up (allocator, kernels)
        t0 = time.perf_counter()
        report = run_folder(translator, src, dst, FolderOptions(batch_size=args.batch_size))
        elapsed = time.perf_counter() - t0
        assert report.counts["done"] == pages, report.to_json()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "pages": pages,
        "device": str(translator.device) + (" fp16" if translator.half else ""),
        "working_size": translator.size,
        "batch_size": args.batch_size,
        "seconds_per_page": round(elapsed / pages, 3),
        "pages_per_second": round(pages / elapsed, 2),
        "peak_rss_mib": round(peak_kib / 1024, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--model", default=None, help="checkpoint (default: the model in assets/)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=None, help="working size (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--dpi", type=int, default=200, help="A4 pages scanned at this resolution (200: 1654 x 2339)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if min(args.pages) < 1 or args.batch_size < 1 or (args.size is not None and args.size < 0):
        parser.error("--pages and --batch-size must be at least 1, --size at least 0")
    if not 50 <= args.dpi <= 1200:
        parser.error("--dpi must be between 50 and 1200")
    from mangacolor.errors import MangacolorError

    try:
        check_model(args.model)
        if args.child is not None:
            print(json.dumps(child(args.child, args)))
            return 0
    except MangacolorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(describe(args.device))
    h, w = a4(args.dpi)
    print(f"A4 pages at {args.dpi} dpi: {w} x {h} px")
    header = ("pages", "device", "size", "batch", "s/page", "pages/s", "peak RSS MiB")
    print("{:>6} {:>10} {:>5} {:>5} {:>7} {:>8} {:>13}".format(*header))
    for n in args.pages:
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            "--device",
            args.device,
            "--batch-size",
            str(args.batch_size),
            "--dpi",
            str(args.dpi),
        ]
        cmd += ["--model", args.model] if args.model else []
        cmd += ["--size", str(args.size)] if args.size is not None else []
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:  # the child's own error (or a traceback's last line), not a CalledProcessError
            reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            print(reason if reason.startswith("error: ") else f"error: {reason}", file=sys.stderr)
            return 1
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"{r['pages']:>6} {r['device']:>10} {r['working_size']:>5} {r['batch_size']:>5} "
            f"{r['seconds_per_page']:>7.3f} {r['pages_per_second']:>8.2f} {r['peak_rss_mib']:>13.1f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
