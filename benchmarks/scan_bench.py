"""Benchmarks of the scan generator: training step, `scan` beside `colorize`, and full resolution.

Three parts (``--part``):

* ``step``: one CycleGAN step (G_s, G_c forward + backward with cycle and identity terms, then
  D_s, D_c) in images/s at 256x256, default widths; on CUDA also bf16 autocast.
* ``pages``: `scan` pages/s beside `colorize` pages/s on the same synthetic A4 pages at 200 dpi
  (1654 x 2339, the page generator of ``colorize_bench.py``), both through the shared batch engine.
  `scan` runs at full resolution (its default) and at working size 512.
* ``resolution``: on a folder of colour images (e.g. held-out demo images), compares
  (a) running at a working size and upsampling the result with (b) running at each image's own
  resolution: seconds per image and the distance (mean absolute error on 0..255, PSNR) to a
  reference scan made at full resolution by ``examples/make_fake_scans.py``. ``--model oracle``
  applies that procedure itself in both modes (what a perfect scan generator could reach).

Usage::

    python benchmarks/scan_bench.py --part step                      # CPU (and CUDA when present)
    python benchmarks/scan_bench.py --part pages --pages 4
    python benchmarks/scan_bench.py --part resolution --images heldout/ --model run/model.safetensors
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from machine import describe

ROOT = Path(__file__).resolve().parents[1]


def _load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- step


def bench_step(device: torch.device, amp: bool, size: int, batch: int, steps: int) -> float:
    from mangacolor.training.loop import DistContext
    from mangacolor.training.scan import ScanTask, ScanTrainConfig

    cfg = ScanTrainConfig(scans="", colors="", run_dir="", amp=amp, device=str(device))
    task = ScanTask(cfg)
    task.build(DistContext(device))
    batch_ = {
        "color": torch.rand(batch, 3, size, size) * 2 - 1,  # (B, 3, S, S)
        "scan": torch.rand(batch, 1, size, size) * 2 - 1,  # (B, 1, S, S)
    }
    task.step(batch_, 0)  # warm-up (fills part of the pools, allocator, kernels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        task.step(batch_, i + 1)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def part_step(args: argparse.Namespace) -> None:
    print(f"CycleGAN step (G_s, G_c, D_s, D_c; cycle + identity), {args.size}x{args.size}, batch {args.batch_size}")
    print(f"{'device':<8} {'variant':<8} {'images/s':>9}")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for dev in devices:
        for variant, amp in [("fp32", False)] + ([("bf16", True)] if dev.type == "cuda" else []):
            steps = args.steps if dev.type == "cpu" else max(args.steps, 20)
            ips = bench_step(dev, amp, args.size, args.batch_size, steps)
            print(f"{dev.type:<8} {variant:<8} {ips:>9.2f}", flush=True)


# ----------------------------------------------------------------------------- pages


def _scan_checkpoint(path: str | None, folder: Path) -> Path:
    """The given scan checkpoint, or a default-width G_s with random weights (speed does not depend on them)."""
    if path:
        return Path(path)
    from mangacolor import checkpoint
    from mangacolor.models import create_model

    torch.manual_seed(0)
    return checkpoint.save(folder / "scan.safetensors", create_model("cyclegan-resnet"), {"working_size": 0})


def part_pages(args: argparse.Namespace) -> None:
    from mangacolor.inference import FolderOptions, Translator, default_model_path, run_folder

    bench = _load(ROOT / "benchmarks" / "colorize_bench.py", "colorize_bench")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pages"
        src.mkdir()
        for i in range(args.pages):
            cv2.imwrite(str(src / f"page_{i:03d}.png"), bench.make_page(i))
        scan_ckpt = _scan_checkpoint(args.model, Path(tmp))
        runs = [
            ("colorize", Path(args.color_model) if args.color_model else default_model_path(), None, "luma"),
            ("scan", scan_ckpt, 0, "none"),
            ("scan", scan_ckpt, 512, "none"),
        ]
        print(f"{args.pages} synthetic A4 pages at 200 dpi (1654x2339), device {args.device}, batch 1")
        print(f"{'command':<9} {'working size':>12} {'s/page':>7} {'pages/s':>8}")
        for k, (name, ckpt, size, merge) in enumerate(runs):
            translator = Translator.from_checkpoint(ckpt, device=args.device, size=size, merge=merge)
            translator(bench.make_page(999)[:512, :512])  # warm-up
            options = FolderOptions(copy_color=False, output_format="png")
            t0 = time.perf_counter()
            report = run_folder(translator, src, Path(tmp) / f"out{k}", options)
            elapsed = time.perf_counter() - t0
            assert report.counts["done"] == args.pages, report.to_json()
            shown = "full" if translator.size == 0 else str(translator.size)
            print(f"{name:<9} {shown:>12} {elapsed / args.pages:>7.3f} {args.pages / elapsed:>8.2f}", flush=True)


# ----------------------------------------------------------------------------- resolution


def _psnr(mae_sq: float) -> float:
    return float("inf") if mae_sq == 0 else 10 * np.log10(255.0**2 / mae_sq)


def part_resolution(args: argparse.Namespace) -> None:
    from mangacolor.imageio import list_images, read_image

    fakes = _load(ROOT / "examples" / "make_fake_scans.py", "make_fake_scans")
    files = list(list_images(args.images))[: args.max_images]
    if not files:
        raise SystemExit(f"{args.images}: no images")
    images = [read_image(f, mode="RGB") for f in files]
    refs = [fakes.fake_scan(img) for img in images]  # full-resolution reference scans
    if args.model == "oracle":

        def run(img: np.ndarray, size: int) -> np.ndarray:
            if size == 0:
                return fakes.fake_scan(img)
            h, w = img.shape[:2]
            s = size / max(h, w)
            small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            return cv2.resize(fakes.fake_scan(small), (w, h), interpolation=cv2.INTER_CUBIC)

    else:
        from mangacolor.inference import Translator

        translators = {}

        def run(img: np.ndarray, size: int) -> np.ndarray:
            if size not in translators:
                translators[size] = Translator.from_checkpoint(args.model, device=args.device, size=size, merge="none")
            return translators[size](img)[0]

    sizes = args.sizes
    name = "oracle (make_fake_scans)" if args.model == "oracle" else Path(args.model).name
    long_sides = [max(i.shape[:2]) for i in images]
    print(f"{len(images)} images (long side {min(long_sides)}-{max(long_sides)} px), model {name}, {args.device}")
    print(f"{'mode':<24} {'s/image':>8} {'MAE':>7} {'PSNR dB':>8}")
    for size in sizes:
        run(images[0], size)  # warm-up
        t0 = time.perf_counter()
        outs = [run(img, size) for img in images]
        dt = (time.perf_counter() - t0) / len(images)
        mae = np.mean([np.abs(o.astype(np.float64) - r).mean() for o, r in zip(outs, refs, strict=True)])
        mse = np.mean([((o.astype(np.float64) - r) ** 2).mean() for o, r in zip(outs, refs, strict=True)])
        mode = "(b) full resolution" if size == 0 else f"(a) {size} + upsample"
        print(f"{mode:<24} {dt:>8.3f} {mae:>7.2f} {_psnr(mse):>8.2f}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["step", "pages", "resolution", "all"], default="all")
    parser.add_argument("--device", default="cpu", help="device for pages / resolution")
    parser.add_argument("--size", type=int, default=256, help="step: training size")
    parser.add_argument("--batch-size", type=int, default=1, help="step: images per step (CycleGAN: 1)")
    parser.add_argument("--steps", type=int, default=3, help="step: timed steps on the CPU")
    parser.add_argument("--pages", type=int, default=4, help="pages: number of A4 pages")
    parser.add_argument(
        "--model", default=None, help="scan checkpoint (pages: default random G_s; resolution: required, or 'oracle')"
    )
    parser.add_argument("--color-model", default=None, help="pages: colorizer (default: the model in assets/)")
    parser.add_argument("--images", default=None, help="resolution: folder of colour images")
    parser.add_argument("--max-images", type=int, default=40)
    parser.add_argument("--sizes", default="256,512,0", help="resolution: working sizes to compare (0: full)")
    args = parser.parse_args()
    if min(args.size, args.batch_size, args.steps, args.pages, args.max_images) < 1:
        parser.error("--size, --batch-size, --steps, --pages and --max-images must be at least 1")
    try:
        args.sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes takes working sizes separated by commas, e.g. 256,512,0. Got {args.sizes!r}")
    if min(args.sizes) < 0:
        parser.error("--sizes must be at least 0 (0: full resolution)")
    resolution = args.part == "resolution" or (args.part == "all" and args.images)
    if resolution and (not args.images or not args.model):
        parser.error("--part resolution needs --images DIR and --model CKPT|oracle")
    from mangacolor.checkpoint import read_info
    from mangacolor.errors import MangacolorError

    try:  # before any timing: a colorizer given as the scan model or the reverse, a missing checkpoint
        if args.model and args.model != "oracle" and (task := read_info(args.model).task) != "scan":
            raise MangacolorError(f"{args.model}: a {task} model, not a scan generator (train-scan)")
        if args.part in ("pages", "all"):
            from mangacolor.inference import default_model_path

            color_model = args.color_model or default_model_path()
            if (task := read_info(color_model).task) != "colorize":
                raise MangacolorError(f"{color_model}: a {task} model, not a colorizer (--color-model)")
        torch.set_num_threads(torch.get_num_threads())
        print(describe(args.device), flush=True)
        if args.part in ("step", "all"):
            part_step(args)
        if args.part in ("pages", "all"):
            part_pages(args)
        if resolution:
            part_resolution(args)
    except MangacolorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
