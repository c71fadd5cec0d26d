"""Make a folder of scan-like greyscale pages from colour images (development data only).

There are no real manga scans in the demo corpus, and a scan is *not* the luma of a colour
image, so ``train-scan`` needs a stand-in "scan" domain that differs from luma the way real
scans do. Procedure, per image:

1. line art: ``prepare lines``'s ``sketch`` method (dark lines on white);
2. tone: the image's luma is quantised into flat bands — paper (light), a sparse dot screen
   (mid tones), a dense dot screen (dark tones) and solid black (very dark) — the way a manga
   artist lays screentone over regions instead of shading them continuously;
3. the scan is the darker of the two at every pixel.

Screentone dots lie on a 45-degree grid (period ``--period`` pixels), as printed halftones do.
Users bring real scans; this only makes the pipeline runnable on the demo corpus. Usage::

    python examples/make_fake_scans.py COLOUR_DIR SCAN_DIR [--method sketch] [--period 6]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mangacolor.color import luma
from mangacolor.errors import ImageReadError, ImageWriteError
from mangacolor.imageio import list_images, read_image, write_image
from mangacolor.prepare.lines import METHODS, extract_lines

# luma thresholds of the tone bands and the dot radius (fraction of the period) of each
BANDS = ((40, None), (110, 0.42), (170, 0.25))  # (upper luma, dot radius); None = solid black


def dot_screen(shape: tuple[int, int], period: float, radius: float) -> np.ndarray:
    """Boolean (H, W) mask of round dots on a 45-degree grid; ``radius`` is a fraction of ``period``."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx + yy) / np.sqrt(2.0)
    v = (xx - yy) / np.sqrt(2.0)
    du = np.mod(u, period) - period / 2
    dv = np.mod(v, period) - period / 2
    return du * du + dv * dv < (radius * period) ** 2


def fake_scan(rgb: np.ndarray, method: str = "sketch", period: float = 6.0) -> np.ndarray:
    """A scan-like page from a colour image: lines plus flat screentone in dark regions.

    Args:
        rgb: ``uint8`` (H, W, 3) colour image.
        method: ``prepare lines`` method for the line layer.
        period: screentone dot spacing in pixels.

    Returns:
        ``uint8`` (H, W): black ink (0) on white paper (255).
    """
    lines = extract_lines(rgb, method=method)  # (H, W), dark lines on white
    y = luma(rgb)
    tone = np.full(y.shape, 255, np.uint8)
    lower = -1
    for upper, radius in BANDS:
        band = (y > lower) & (y <= upper)
        if radius is None:
            tone[band] = 0
        else:
            tone[band & dot_screen(y.shape, period, radius)] = 0
        lower = upper
    return np.minimum(lines, tone)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("colors", type=Path, help="folder of colour images (searched recursively)")
    parser.add_argument("scans", type=Path, help="output folder (PNG, same relative names)")
    parser.add_argument("--method", default="sketch", choices=METHODS, help="prepare lines method")
    parser.add_argument("--period", type=float, default=6.0, help="screentone dot spacing in pixels (>= 2)")
    args = parser.parse_args()
    if not args.period >= 2:  # also refuses nan
        parser.error(f"--period must be at least 2 pixels. Got {args.period}")
    if not args.colors.exists():
        parser.error(f"{args.colors}: no such file or directory")
    single = args.colors.is_file()
    failed = done = 0
    for src in list_images(args.colors):
        dst = (
            args.scans
            if single and args.scans.suffix
            else args.scans / src.relative_to(args.colors.parent if single else args.colors)
        )
        dst = dst.with_suffix(".png")
        try:
            write_image(dst, fake_scan(read_image(src, mode="RGB"), args.method, args.period))
            done += 1
        except (ImageReadError, ImageWriteError) as exc:
            print(f"failed: {exc}", file=sys.stderr)
            failed += 1
    where = dst if single and done else args.scans
    print(f"{done} scan(s) written to {where}, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
