"""Training throughput of every registered colorizer: images/s for one full training step
(forward + backward of G and D) at 256x256, batch 16, default widths.

Each generator runs with its own reconstruction loss (L1; the SGRU's collection loss over its k
outputs, pixel terms only; the reference U-Net's guide losses) against a 70x70 PatchGAN; one more
row pairs the pix2pix U-Net with the pix2pixHD multi-scale PatchGAN and feature matching.

On CUDA it also compares fp32, bf16 autocast, channels-last and torch.compile, and reports the
achieved TFLOP/s (FLOPs counted by torch's FlopCounterMode) next to the card's peak. Usage::

    python benchmarks/train_bench.py                         # CPU, every architecture
    python benchmarks/train_bench.py --device cuda --peak-tflops 989   # H100 SXM dense bf16
    python benchmarks/train_bench.py --arch unet --disc patchgan-ms --size 256 --batch-size 4 --steps 2
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F
from machine import describe
from torch.utils.flop_counter import FlopCounterMode

from mangacolor.errors import MangacolorError
from mangacolor.losses import FeatureMatchingLoss, GANLoss, collection_loss, guide_loss, predictions
from mangacolor.models import create_model, list_models
from mangacolor.training.loop import resolve_device


def _halves(pred):
    """Split a discriminator output on cat([real, fake]) into (real, fake), single or multi-scale."""
    if isinstance(pred, torch.Tensor):
        return pred.float().chunk(2)
    real = [[t.float().chunk(2)[0] for t in scale] for scale in pred]
    fake = [[t.float().chunk(2)[1] for t in scale] for scale in pred]
    return real, fake


def make_step(arch: str, disc: str, device: torch.device, channels_last: bool, amp: bool, compile_: bool):
    g = create_model(arch).to(device)
    d = create_model(disc, in_channels=g.config.in_channels + 3).to(device)
    if channels_last:
        g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
    train_fwd = g.forward_train if hasattr(g, "forward_train") else None
    g_fwd = torch.compile(train_fwd or g) if compile_ else (train_fwd or g)
    d_fwd = torch.compile(d) if compile_ else d
    opt_g = torch.optim.Adam([p for p in g.parameters() if p.requires_grad], 1e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), 4e-4, betas=(0.5, 0.999))
    gan = GANLoss("bce")
    fm = FeatureMatchingLoss() if disc == "patchgan-ms" else None
    needs_ref = getattr(g, "needs_reference", False)
    k = getattr(g, "num_outputs", 1)

    def step(x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            if train_fwd is not None:
                out = g_fwd(x, y if needs_ref else None)
            else:
                out = {"output": g_fwd(x)}
            fake = out["output"][:, :3]
            pred = d_fwd(torch.cat([torch.cat([x, y], 1), torch.cat([x, fake.detach()], 1)], 0))
        real_pred, fake_pred = _halves(pred)
        loss_d = 0.5 * (gan(real_pred, True) + gan(fake_pred, False))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            pred_fake = d_fwd(torch.cat([x, fake], 1))
        loss_g = gan([p.float() for p in predictions(pred_fake)], True, for_discriminator=False)
        if k > 1:
            loss_g = loss_g + 100 * collection_loss(out["output"], y, x, None)
        else:
            loss_g = loss_g + 100 * F.l1_loss(fake.float(), y)
        if "guide_gray" in out:
            loss_g = loss_g + 100 * guide_loss(out["guide_gray"], out["guide_color"], y)
        if fm is not None:
            loss_g = loss_g + 10 * fm(pred_fake, real_pred)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

    return step


def size_problem(arch: str, disc: str, size: int) -> str:
    """Why ``arch`` against ``disc`` cannot train at ``size`` px ('' when it can): the generator's
    size multiple (one halving per level) or the discriminator's smallest input."""
    g = create_model(arch)
    d = create_model(disc, in_channels=g.config.in_channels + 3)
    multiple, smallest = int(getattr(g, "size_multiple", 1)), int(getattr(d, "min_input_size", 1))
    if size % multiple:
        return f"{arch} needs a multiple of {multiple} (one halving per level)"
    if size < smallest:
        return f"{disc} needs at least {smallest}"
    return ""


def _batch(
    args: argparse.Namespace, device: torch.device, fmt: torch.memory_format
) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(args.batch_size, 1, args.size, args.size, device=device).mul(2).sub(1).contiguous(memory_format=fmt)
    y = torch.rand(args.batch_size, 3, args.size, args.size, device=device).mul(2).sub(1).contiguous(memory_format=fmt)
    return x, y


def count_flops(arch: str, disc: str, args: argparse.Namespace) -> int:
    """FLOPs of one training step, counted on an eager fp32 step (the count is the same for every variant;
    under ``torch.compile`` the counter would not see the compiled kernels)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    step = make_step(arch, disc, device, channels_last=False, amp=False, compile_=False)
    x, y = _batch(args, device, torch.contiguous_format)
    with FlopCounterMode(display=False) as counter:
        step(x, y)
    return counter.get_total_flops()


def bench(
    arch: str, disc: str, args: argparse.Namespace, channels_last: bool, amp: bool, compile_: bool, flops: int = 0
) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    step = make_step(arch, disc, device, channels_last, amp, compile_)
    x, y = _batch(args, device, torch.channels_last if channels_last else torch.contiguous_format)
    for _ in range(args.warmup):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    return {"images_per_s": args.batch_size / dt, "tflops": flops / dt / 1e12 if flops else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", nargs="*", default=None, help="generators (default: every colorizer)")
    parser.add_argument(
        "--disc", default=None, help="discriminator for every row (default: patchgan, plus a unet + patchgan-ms row)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's peak, to print utilisation")
    args = parser.parse_args()
    if min(args.size, args.batch_size, args.steps) < 1 or args.warmup < 0:
        parser.error("--size, --batch-size and --steps must be at least 1, --warmup at least 0")
    colorizers = [s.name for s in list_models("colorize")]
    unknown = [a for a in args.arch or [] if a not in colorizers]
    if unknown:
        parser.error(f"--arch {' '.join(unknown)}: not a colorizer; choose from {', '.join(colorizers)}")
    if args.disc and args.disc not in [s.name for s in list_models("discriminator")]:
        parser.error(f"--disc {args.disc}: not a discriminator")
    try:
        args.device = str(resolve_device(args.device))  # auto: the device it picks
    except MangacolorError as exc:
        parser.error(str(exc))
    if args.arch or args.disc:
        rows = [(a, args.disc or "patchgan") for a in args.arch or [s.name for s in list_models("colorize")]]
    else:
        rows = [(s.name, "patchgan") for s in list_models("colorize")] + [("unet", "patchgan-ms")]
    if problems := [p for arch, disc in rows if (p := size_problem(arch, disc, args.size))]:
        parser.error(f"--size {args.size}: {'; '.join(dict.fromkeys(problems))}")
    variants = [("fp32", False, False, False)]
    if args.device.startswith("cuda"):
        variants += [
            ("bf16", False, True, False),
            ("bf16+cl", True, True, False),
            ("bf16+cl+compile", True, True, True),
        ]
    print(describe(args.device))
    print(f"device {args.device}, {args.size}x{args.size}, batch {args.batch_size}, G+D forward+backward")
    print(f"{'generator':<16} {'discriminator':<13} {'variant':<16} {'images/s':>9} {'TFLOP/s':>8} {'% peak':>7}")
    failed = 0
    for arch, disc in rows:
        flops = count_flops(arch, disc, args) if args.device.startswith("cuda") else 0
        for name, cl, amp, comp in variants:
            try:
                r = bench(arch, disc, args, cl, amp, comp, flops)
            except Exception as exc:  # report and go on: one architecture must not hide the others
                print(f"{arch:<16} {disc:<13} {name:<16} failed: {(str(exc).splitlines() or [repr(exc)])[0][:80]}")
                failed += 1
                continue
            tf = f"{r['tflops']:.1f}" if r["tflops"] else "-"
            pct = f"{100 * r['tflops'] / args.peak_tflops:.0f}%" if r["tflops"] and args.peak_tflops else "-"
            print(f"{arch:<16} {disc:<13} {name:<16} {r['images_per_s']:>9.2f} {tf:>8} {pct:>7}", flush=True)
    if failed:
        print(f"error: {failed} row(s) failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
