"""Colorizer trainer: pix2pix (Isola et al. 2017), a conditional GAN with an L1 reconstruction term.

Generator G maps greyscale x to colour G(x); the PatchGAN D judges (x, y) pairs. Losses:

    L_D = GAN(D(x, y), real) + GAN(D(x, G(x)), fake)            (halved, as in pix2pix)
    L_G = GAN(D(x, G(x)), real) + lambda_L1 * |G(x) - y|_1      (lambda_L1 = 100)

Adam, lr 2e-4, betas (0.5, 0.999). Inputs are made on the fly as the luma of each colour crop.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from mangacolor import checkpoint
from mangacolor.data import ColorFolderDataset, split_files
from mangacolor.errors import MangacolorError
from mangacolor.imageio import list_images
from mangacolor.losses import GANLoss
from mangacolor.models import build_config, create_model, get_spec
from mangacolor.training.rundir import RunDir

log = logging.getLogger(__name__)


@dataclass
class ColorTrainConfig:
    """Everything that defines a colorizer training run (stored as the run's ``config.json``).

    Attributes:
        data: folder of colour images.
        run_dir: output folder (checkpoints, metrics, samples).
        arch: registered colorize architecture.
        model: overrides of the architecture's config (e.g. ``{"base_width": 32}``).
        discriminator: overrides of the PatchGAN config.
        steps: optimisation steps.
        batch_size: images per step.
        crop_size: training crop side; must be a multiple of the generator's size multiple.
        load_size: long side images are resized to before cropping (``None``: as stored).
        lr: Adam learning rate (both networks).
        betas: Adam betas.
        l1_weight: lambda_L1.
        gan_weight: weight of the generator's adversarial term (0 trains with L1 only).
        gan_loss: ``bce``, ``lsgan`` or ``hinge``.
        val_fraction: share of files held out (by name hash) for validation L1.
        seed: RNG seed.
        device: ``auto``, ``cpu``, ``cuda``.
        num_workers: DataLoader worker processes.
        cache: keep decoded images in memory (``None``: for folders up to 5000 files).
        log_every: steps between metric lines.
        sample_every: steps between sample grids (0: never).
        save_every: steps between checkpoints (0: only at the end).
        half_checkpoint: store the final checkpoint in float16.
    """

    data: str
    run_dir: str
    arch: str = "unet"
    model: dict[str, Any] = field(default_factory=dict)
    discriminator: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    batch_size: int = 16
    crop_size: int = 256
    load_size: int | None = None
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    l1_weight: float = 100.0
    gan_weight: float = 1.0
    gan_loss: str = "bce"
    val_fraction: float = 0.0
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    cache: bool | None = None
    log_every: int = 50
    sample_every: int = 500
    save_every: int = 1000
    half_checkpoint: bool = False


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU.

    Raises:
        MangacolorError: ``cuda`` was asked for but is not available.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MangacolorError("--device cuda was asked for but no CUDA device is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise MangacolorError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


class Pix2PixStep:
    """One pix2pix optimisation step: update D on (real, fake) pairs, then G on GAN + L1."""

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        opt_g: torch.optim.Optimizer,
        opt_d: torch.optim.Optimizer,
        gan_loss: GANLoss,
        l1_weight: float,
        gan_weight: float,
    ) -> None:
        self.g, self.d = generator, discriminator
        self.opt_g, self.opt_d = opt_g, opt_d
        self.gan_loss = gan_loss
        self.l1_weight = l1_weight
        self.gan_weight = gan_weight

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        fake = self.g(x)[:, :3]  # (B, 3, H, W) first colouring
        losses: dict[str, torch.Tensor] = {}
        if self.gan_weight > 0:
            self.d.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            d_real = self.d(torch.cat([x, y], 1))  # (B, 1, h, w)
            d_fake = self.d(torch.cat([x, fake.detach()], 1))
            loss_d = 0.5 * (self.gan_loss(d_real, True) + self.gan_loss(d_fake, False))
            loss_d.backward()
            self.opt_d.step()
            losses["loss_d"] = loss_d.detach()
            self.d.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        l1 = F.l1_loss(fake, y)
        loss_g = self.l1_weight * l1
        if self.gan_weight > 0:
            g_adv = self.gan_loss(self.d(torch.cat([x, fake], 1)), True, for_discriminator=False)
            loss_g = loss_g + self.gan_weight * g_adv
            losses["loss_g_gan"] = g_adv.detach()
        loss_g.backward()
        self.opt_g.step()
        losses["loss_g_l1"] = l1.detach()
        losses["_fake"] = fake.detach()
        return losses


def _infinite(loader: DataLoader):
    while True:
        yield from loader


@torch.no_grad()
def validation_l1(
    generator: nn.Module, loader: DataLoader, device: torch.device, max_batches: int = 8
) -> float:
    """Mean L1 of the generator's first colouring on up to ``max_batches`` validation batches."""
    was_training = generator.training
    generator.eval()
    total, count = 0.0, 0
    for i, (x, y) in enumerate(loader):
        if i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        total += F.l1_loss(generator(x)[:, :3], y, reduction="sum").item()
        count += y.numel()
    generator.train(was_training)
    return total / max(count, 1)


def train_colorizer(
    config: ColorTrainConfig, on_step: Callable[[int, dict[str, float]], None] | None = None
) -> Path:
    """Train a colorizer and write ``RUN_DIR/model.safetensors``; returns its path.

    Args:
        config: the run's settings.
        on_step: called after every step with (step, scalar losses) for progress display.

    Raises:
        MangacolorError: no images, unknown architecture, bad sizes.
    """
    try:
        spec = get_spec(config.arch)
    except KeyError as exc:
        raise MangacolorError(str(exc.args[0])) from None
    if spec.task != "colorize":
        raise MangacolorError(f"{config.arch} is a {spec.task} architecture, not a colorizer")
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    run = RunDir(config.run_dir)
    run.write_config(config)

    try:
        generator = create_model(config.arch, config.model).to(device)
        disc_cfg = build_config("patchgan", config.discriminator)
        disc_cfg = build_config("patchgan", disc_cfg, in_channels=generator.config.in_channels + 3)
        discriminator = create_model("patchgan", disc_cfg).to(device)
    except ValueError as exc:
        raise MangacolorError(str(exc)) from None
    multiple = generator.size_multiple
    if config.crop_size % multiple:
        raise MangacolorError(
            f"--crop-size {config.crop_size} must be a multiple of {multiple} for this {config.arch} "
            f"(depth {getattr(generator.config, 'depth', '?')})"
        )

    files = list(list_images(config.data))
    train_files, val_files = split_files(files, config.val_fraction)
    common = dict(crop_size=config.crop_size, load_size=config.load_size, cache=config.cache)
    train_set = ColorFolderDataset(config.data, files=train_files, **common)
    for failure in train_set.failures:
        log.warning("skipped unreadable training image: %s", failure)
    loader = DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_set) >= config.batch_size,
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=config.num_workers > 0,
    )
    val_loader = None
    if val_files:
        val_set = ColorFolderDataset(config.data, files=val_files, flip=False, **common)
        val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False)

    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=config.betas)
    step_fn = Pix2PixStep(
        generator, discriminator, opt_g, opt_d, GANLoss(config.gan_loss), config.l1_weight, config.gan_weight
    )
    provenance = {
        "data": Path(config.data).name,
        "data_files": len(train_set),
        "resolution": config.crop_size,
        "load_size": config.load_size,
        # inference default: the scale the network was trained at
        "working_size": config.load_size or config.crop_size,
        "trainer": "pix2pix",
        "l1_weight": config.l1_weight,
        "gan_weight": config.gan_weight,
        "gan_loss": config.gan_loss,
        "batch_size": config.batch_size,
    }

    generator.train()
    discriminator.train()
    batches = _infinite(loader)
    window: dict[str, float] = {}
    t_window, n_window = time.time(), 0
    best = math.inf
    for step in range(1, config.steps + 1):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = step_fn(x, y)
        fake = out.pop("_fake")
        scalars = {k: float(v) for k, v in out.items()}
        for k, v in scalars.items():
            window[k] = window.get(k, 0.0) + v
        n_window += 1
        if on_step is not None:
            on_step(step, scalars)
        if step % config.log_every == 0 or step == config.steps:
            elapsed = time.time() - t_window
            record = {k: v / n_window for k, v in window.items()}
            record["images_per_s"] = n_window * config.batch_size / max(elapsed, 1e-9)
            record["lr"] = opt_g.param_groups[0]["lr"]
            if val_loader is not None:
                record["val_l1"] = validation_l1(generator, val_loader, device)
            run.log_metrics(step, record)
            if val_loader is not None and record["val_l1"] < best:
                best = record["val_l1"]
                checkpoint.save(run.path / "best.safetensors", generator, {**provenance, "steps": step})
            window, t_window, n_window = {}, time.time(), 0
        if config.sample_every and (step % config.sample_every == 0 or step == config.steps):
            run.save_samples(step, [x, fake, y])
        if config.save_every and step % config.save_every == 0 and step != config.steps:
            checkpoint.save(run.path / "latest.safetensors", generator, {**provenance, "steps": step})
    final = run.path / "model.safetensors"
    checkpoint.save(final, generator, {**provenance, "steps": config.steps}, half=config.half_checkpoint)
    return final
