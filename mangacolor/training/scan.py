"""Scan generator trainer: CycleGAN (Zhu et al., ICCV 2017) between colour art and greyscale scans.

Manga pages are not the greyscale of their coloured versions (colouring adds shading, screentone
becomes flat colour), so a colorizer trained on luma inputs sees the wrong domain at inference.
From *unpaired* folders of real scans S and colour art C we learn

    G_s: C -> S  (colour -> 1-channel scan; the only network a user keeps)
    G_c: S -> C  (scan -> colour; closes the cycle, then thrown away)

with PatchGAN discriminators D_s (judges scans) and D_c (judges colour) and, per the reference
implementation (``pytorch-CycleGAN-and-pix2pix``'s ``cycle_gan_model.py``):

    L_G = GAN(D_s(G_s(c)), real) + GAN(D_c(G_c(s)), real)
          + lambda_cyc (|G_c(G_s(c)) - c|_1 + |G_s(G_c(s)) - s|_1)            # cycle, lambda_cyc = 10
          + lambda_idt lambda_cyc (|G_s(rgb(s)) - s|_1 + |G_c(luma(c)) - c|_1)  # identity, lambda_idt = 0.5
    L_D = 1/2 [GAN(D(real), real) + GAN(D(pool(fake)), fake)]               # for each D; LSGAN by default

**Identity loss across channel counts.** CycleGAN's identity term asks a generator to leave an
image that is already in its target domain unchanged (G_A(b) ~ b). Our generators change the
number of channels, so each target-domain image is shown to the generator in its input format:
G_s gets a real scan repeated to three channels and must return that scan; G_c gets the luma of a
real colour image and must return the colour image. Both pin the tone polarity (dark stays dark),
which the cycle terms alone do not (two generators that both invert tones still reconstruct their
inputs).

**History pool.** Each discriminator sees generated images through a pool of the last 50
(Shrivastava et al. 2017): until the pool is full every new image is stored and returned; after
that each new image is, with probability 1/2, swapped for a random stored one (which is returned
instead), else returned as is. The pool's random generator and contents are part of the resume
state, so a resumed run continues exactly.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mangacolor import checkpoint
from mangacolor.data import AugmentConfig, UnpairedDataset
from mangacolor.errors import MangacolorError
from mangacolor.losses import GANLoss
from mangacolor.models import build_config, create_model, get_spec
from mangacolor.training.loop import (
    DistContext,
    EarlyStop,
    LoopConfig,
    check_load_size,
    check_run_folder_free,
    check_stage_sizes,
    check_training_options,
    data_fingerprint,
    parse_stages,
    run_training,
    setup_distributed,
    teardown_distributed,
    warn_if_data_changed,
)
from mangacolor.training.rundir import RunDir

log = logging.getLogger(__name__)

__all__ = [
    "CycleGenerators",
    "ImagePool",
    "ScanTask",
    "ScanTrainConfig",
    "reconstruction_losses",
    "rgb_to_gray",
    "train_scan_generator",
]

SCAN_GAN_LOSSES = ("lsgan", "bce", "hinge")


@dataclass
class ScanTrainConfig:
    """Everything that defines a scan-generator training run (stored as the run's ``config.json``).

    Attributes:
        scans: folder of real greyscale scans (domain S).
        colors: folder of colour art (domain C), unrelated to the scans.
        run_dir: output folder (checkpoints, metrics, samples, resume state).
        arch: registered scan architecture of G_s (G_c uses the same architecture, 1 -> 3 channels).
        generator: overrides of G_s's config (e.g. ``{"base_width": 32, "n_blocks": 6}``).
        color_generator: overrides of G_c's config (channels are set for you).
        discriminator_arch: registered discriminator for D_s and D_c.
        discriminator: overrides of the discriminators' config (default: instance norm, width 32).
        steps: optimisation steps per stage.
        stages: training crop sizes, one stage each; ``None``: ``[crop_size]``.
        crop_size: crop size when ``stages`` is not given.
        batch_size: image pairs per step (per process under torchrun); CycleGAN uses 1.
        epoch_length: items per epoch (explicit; each item draws one scan and one colour image).
        load_size: long side images are resized to before cropping (``None``: native resolution).
        augment: augment the crops of both folders (see :class:`mangacolor.data.UnpairedDataset`).
        lr_g: learning rate of both generators.
        lr_d: learning rate of both discriminators.
        betas: Adam betas.
        decay_start: learning rates decay linearly to zero after this fraction of all steps.
        gan_loss: ``lsgan`` (CycleGAN), ``bce`` or ``hinge``.
        gan_weight: weight of each adversarial term.
        cycle_weight: lambda of the cycle L1 terms (both directions).
        identity_weight: identity terms' weight as a fraction of ``cycle_weight`` (0 turns them off).
        pool_size: generated images kept for each discriminator (0: no pool).
        seed: seeds initialisation, data order, crops and the pools.
        device: ``auto``, ``cpu``, ``cuda``.
        num_workers: DataLoader worker processes.
        amp: bf16 autocast on CUDA (``None``: on when training on CUDA).
        channels_last: channels-last memory format.
        compile: ``torch.compile`` the networks.
        log_every, sample_every, save_every: intervals in steps.
        half_checkpoint: store the shipped checkpoints in float16.
    """

    scans: str
    colors: str
    run_dir: str
    arch: str = "cyclegan-resnet"
    generator: dict[str, Any] = field(default_factory=dict)
    color_generator: dict[str, Any] = field(default_factory=dict)
    discriminator_arch: str = "patchgan"
    discriminator: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    stages: list[int] | None = None
    crop_size: int = 256
    batch_size: int = 1
    epoch_length: int = 1000
    load_size: int | None = None
    augment: bool = False
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    decay_start: float = 0.5
    gan_loss: str = "lsgan"
    gan_weight: float = 1.0
    cycle_weight: float = 10.0
    identity_weight: float = 0.5
    pool_size: int = 50
    seed: int = 0
    device: str = "auto"
    num_workers: int = 0
    amp: bool | None = None
    channels_last: bool = False
    compile: bool = False
    log_every: int = 50
    sample_every: int = 500
    save_every: int = 1000
    half_checkpoint: bool = False


# ----------------------------------------------------------------------------- pieces


class ImagePool:
    """History of generated images for a discriminator (CycleGAN's ``ImagePool``).

    Args:
        capacity: images kept (CycleGAN: 50); 0 returns every batch unchanged.
        seed: seeds the pool's own random generator (never the global one).
    """

    def __init__(self, capacity: int = 50, seed: int = 0) -> None:
        if capacity < 0:
            raise ValueError(f"pool capacity must be >= 0. Got {capacity}")
        self.capacity = capacity
        self.images: list[torch.Tensor] = []  # each (C, H, W)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch for the discriminator and remember the new images.

        Args:
            images: (B, C, H, W) generated images (detached here).

        Returns:
            (B, C, H, W): per image, the image itself while the pool fills; once it is full, with
            probability 1/2 a random stored image (the new one takes its place), else the new one.
            Stored images of another size (from an earlier progressive stage) are dropped first.
        """
        if self.capacity == 0:
            return images.detach()
        if self.images and self.images[0].shape != images.shape[1:]:
            # A new progressive stage changed the image size: old fakes cannot share a batch with new ones.
            self.images.clear()
        out = []
        for image in images.detach():  # (C, H, W)
            if len(self.images) < self.capacity:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand((), generator=self.generator).item() < 0.5:
                idx = int(torch.randint(self.capacity, (), generator=self.generator))
                out.append(self.images[idx])
                self.images[idx] = image.clone()
            else:
                out.append(image)
        return torch.stack(out)  # (B, C, H, W)

    def state_dict(self) -> dict[str, Any]:
        """Stored images (on the CPU) and the random generator's state."""
        return {"images": [t.cpu() for t in self.images], "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        """Restore :meth:`state_dict`; images go to ``device``."""
        self.images = [t.to(device) for t in state["images"]]
        self.generator.set_state(state["rng"])


_LUMA = (0.299, 0.587, 0.114)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of (B, 3, H, W) in [-1, 1] as (B, 1, H, W) (the weights sum to 1, so the range holds)."""
    r, g, b = rgb.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)  # (B, 1, H, W)


class CycleGenerators(nn.Module):
    """Both generators in one module, so one forward (and one DDP reducer) serves the whole cycle."""

    def __init__(self, g_s: nn.Module, g_c: nn.Module) -> None:
        super().__init__()
        self.g_s, self.g_c = g_s, g_c

    def forward(self, real_c: torch.Tensor, real_s: torch.Tensor, identity: bool = True) -> dict[str, torch.Tensor]:
        """Args: real_c (B, 3, H, W) colour, real_s (B, 1, H, W) scan; returns every generated image."""
        out = {}
        out["fake_s"] = self.g_s(real_c)  # G_s(c): (B, 1, H, W)
        out["rec_c"] = self.g_c(out["fake_s"])  # G_c(G_s(c)): (B, 3, H, W)
        out["fake_c"] = self.g_c(real_s)  # G_c(s): (B, 3, H, W)
        out["rec_s"] = self.g_s(out["fake_c"])  # G_s(G_c(s)): (B, 1, H, W)
        if identity:
            out["idt_s"] = self.g_s(real_s.expand(-1, 3, -1, -1))  # G_s(rgb(s)) ~ s: (B, 1, H, W)
            out["idt_c"] = self.g_c(rgb_to_gray(real_c))  # G_c(luma(c)) ~ c: (B, 3, H, W)
        return out


class DiscriminatorPair(nn.Module):
    """D_s and D_c in one module: judges real and (pooled) fake scans and colour images in one call."""

    def __init__(self, d_s: nn.Module, d_c: nn.Module) -> None:
        super().__init__()
        self.d_s, self.d_c = d_s, d_c

    def forward(
        self, real_s: torch.Tensor, fake_s: torch.Tensor, real_c: torch.Tensor, fake_c: torch.Tensor
    ) -> tuple[Any, Any, Any, Any]:
        # separate calls rather than one on cat([real, fake]): works for multi-scale outputs too, and
        # instance norm makes the results identical
        return self.d_s(real_s), self.d_s(fake_s), self.d_c(real_c), self.d_c(fake_c)


def reconstruction_losses(
    out: dict[str, torch.Tensor],
    real_c: torch.Tensor,
    real_s: torch.Tensor,
    cycle_weight: float = 10.0,
    identity_weight: float = 0.5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Cycle and identity terms of the generator objective.

    Args:
        out: :class:`CycleGenerators` outputs.
        real_c: (B, 3, H, W) colour batch.
        real_s: (B, 1, H, W) scan batch.
        cycle_weight: lambda_cyc (both directions).
        identity_weight: fraction of ``cycle_weight`` for the identity terms.

    Returns:
        the weighted sum, and the unweighted L1 parts (``cycle_c``, ``cycle_s``, ``idt_s``, ``idt_c``).
    """
    parts = {
        "cycle_c": F.l1_loss(out["rec_c"].float(), real_c),
        "cycle_s": F.l1_loss(out["rec_s"].float(), real_s),
    }
    total = cycle_weight * (parts["cycle_c"] + parts["cycle_s"])
    if identity_weight > 0 and "idt_s" in out:
        parts["idt_s"] = F.l1_loss(out["idt_s"].float(), real_s)
        parts["idt_c"] = F.l1_loss(out["idt_c"].float(), real_c)
        total = total + cycle_weight * identity_weight * (parts["idt_s"] + parts["idt_c"])
    return total, parts


# ----------------------------------------------------------------------------- the task


class ScanTask:
    """The CycleGAN scan generator as a :class:`~mangacolor.training.loop.TrainTask`."""

    def __init__(self, config: ScanTrainConfig) -> None:
        self.cfg = config
        try:
            spec = get_spec(config.arch)
            d_spec = get_spec(config.discriminator_arch)
        except KeyError as exc:
            raise MangacolorError(str(exc.args[0])) from None
        if spec.task != "scan":
            raise MangacolorError(f"{config.arch} is a {spec.task} architecture, not a scan generator")
        if d_spec.task != "discriminator":
            raise MangacolorError(f"{config.discriminator_arch} is not a discriminator")
        if config.gan_loss not in SCAN_GAN_LOSSES:
            raise MangacolorError(f"--gan-loss must be one of {', '.join(SCAN_GAN_LOSSES)}. Got {config.gan_loss!r}")
        check_training_options(config)  # with the loss weights (finite, >= 0)
        self._last: dict[str, torch.Tensor] | None = None
        self.train_set: UnpairedDataset | None = None
        self._saved_data: dict[str, Any] | None = None  # the resume state's file lists (see load_state_dict)

    # -- building ----------------------------------------------------------------------------------
    def _networks(self) -> tuple[nn.Module, nn.Module, nn.Module, nn.Module]:
        """G_s, G_c, D_s, D_c as the config says, with the training sizes checked against them.

        Raises:
            MangacolorError: a config the architectures refuse, or a training size they cannot take.
        """
        cfg = self.cfg
        try:
            g_s_cfg = build_config(cfg.arch, cfg.generator)
            if g_s_cfg.in_channels != 3 or g_s_cfg.out_channels != 1:
                raise ValueError("the scan generator maps colour (3 channels) to a scan (1 channel)")
            g_s = create_model(cfg.arch, g_s_cfg)
            g_c_overrides = {**asdict(g_s_cfg), **cfg.color_generator, "in_channels": 1, "out_channels": 3}
            g_c = create_model(cfg.arch, g_c_overrides)
            d_overrides = {"norm": "instance", "base_width": 32, **cfg.discriminator}
            d_s = create_model(cfg.discriminator_arch, d_overrides, in_channels=1)
            d_c = create_model(cfg.discriminator_arch, d_overrides, in_channels=3)
        except (TypeError, ValueError) as exc:
            raise MangacolorError(str(exc)) from None
        size_multiple = max(int(getattr(g, "size_multiple", 1)) for g in (g_s, g_c))
        min_size = max(int(getattr(d, "min_input_size", 1)) for d in (d_s, d_c))
        check_stage_sizes(parse_stages(cfg.stages, cfg.crop_size), size_multiple, min_size, cfg.arch)
        return g_s, g_c, d_s, d_c

    def check_networks(self) -> None:
        """:meth:`_networks`'s checks alone, leaving the global random state as it was (before any data is read)."""
        with torch.random.fork_rng(devices=[]):
            self._networks()

    def build(self, ctx: DistContext) -> None:
        cfg = self.cfg
        self.ctx = ctx
        torch.manual_seed(cfg.seed)
        self.g_s, self.g_c, self.d_s, self.d_c = self._networks()
        self.size_multiple = max(int(getattr(g, "size_multiple", 1)) for g in (self.g_s, self.g_c))
        device = ctx.device
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for net in (self.g_s, self.g_c, self.d_s, self.d_c):
            net.to(device, memory_format=self.memory_format)
        self.amp = (device.type == "cuda") if cfg.amp is None else (cfg.amp and device.type == "cuda")
        g_train: nn.Module = CycleGenerators(self.g_s, self.g_c)
        d_train: nn.Module = DiscriminatorPair(self.d_s, self.d_c)
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            g_train, d_train = DDP(g_train, device_ids=ids), DDP(d_train, device_ids=ids)
        if cfg.compile:
            g_train, d_train = torch.compile(g_train), torch.compile(d_train)
        self.g_train, self.d_train = g_train, d_train
        g_params = [*self.g_s.parameters(), *self.g_c.parameters()]
        d_params = [*self.d_s.parameters(), *self.d_c.parameters()]
        self.opt_g = torch.optim.Adam(g_params, lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(d_params, lr=cfg.lr_d, betas=cfg.betas)
        self.gan = GANLoss(cfg.gan_loss)
        pool_seed = cfg.seed * 1_000 + 10 * ctx.rank
        self.pool_s = ImagePool(cfg.pool_size, seed=pool_seed + 1)  # fake scans for D_s
        self.pool_c = ImagePool(cfg.pool_size, seed=pool_seed + 2)  # fake colour for D_c

    # -- data ----------------------------------------------------------------------------------------
    def make_dataset(self, size: int) -> UnpairedDataset:
        """Decode both folders (once) and cut items of side ``size`` (checked by check_stage_sizes in build)."""
        cfg = self.cfg
        if self.train_set is None:
            self.train_set = UnpairedDataset(
                cfg.scans,
                cfg.colors,
                size,
                cfg.epoch_length,
                seed=cfg.seed,
                load_size=cfg.load_size,
                augment=AugmentConfig() if cfg.augment else None,
            )
            self._check_data()
        else:  # a new stage: same decoded images, new crop size
            self.train_set.size = size
        return self.train_set

    def _check_data(self) -> None:
        """On a resume, once both the saved file lists and the folders' are known: warn if they differ."""
        if self._saved_data is None or self.train_set is None or not self.ctx.is_main:
            return
        saved, now, cfg = self._saved_data, self._data_fingerprint, self.cfg
        warn_if_data_changed(saved["scans"], now["scans"], f"the scans of {cfg.scans}")
        warn_if_data_changed(saved["colors"], now["colors"], f"the colour images of {cfg.colors}")
        self._saved_data = None

    @functools.cached_property
    def _data_fingerprint(self) -> dict[str, Any]:
        """The folders' fingerprints (fixed once the dataset is built: computed once, stored at every save)."""
        data = self.train_set
        return {
            "scans": data_fingerprint(data.scans.files, self.cfg.scans),
            "colors": data_fingerprint(data.colors.files, self.cfg.colors),
        }

    # -- one step ------------------------------------------------------------------------------------
    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    def step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        dev, fmt = self.ctx.device, self.memory_format
        real_c = batch["color"].to(dev, non_blocking=True).contiguous(memory_format=fmt)  # (B, 3, S, S)
        real_s = batch["scan"].to(dev, non_blocking=True).contiguous(memory_format=fmt)  # (B, 1, S, S)
        identity = cfg.identity_weight > 0
        logs: dict[str, torch.Tensor] = {}

        # generators: D_s and D_c frozen (called unwrapped, so DDP expects no gradients for them)
        self.d_s.requires_grad_(False)
        self.d_c.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.g_train(real_c, real_s, identity)
            pred_fake_s = self.d_s(out["fake_s"])  # D_s(G_s(c))
            pred_fake_c = self.d_c(out["fake_c"])  # D_c(G_c(s))
        adv_s = self.gan(pred_fake_s, True, for_discriminator=False)
        adv_c = self.gan(pred_fake_c, True, for_discriminator=False)
        rec, parts = reconstruction_losses(out, real_c, real_s, cfg.cycle_weight, cfg.identity_weight)
        loss_g = cfg.gan_weight * (adv_s + adv_c) + rec
        loss_g.backward()
        self.opt_g.step()
        logs.update({"loss_g_gan_s": adv_s.detach(), "loss_g_gan_c": adv_c.detach(), "loss_g": loss_g.detach()})
        logs.update({f"loss_{k}": v.detach() for k, v in parts.items()})

        # discriminators: real vs. generated images drawn through the history pools
        self.d_s.requires_grad_(True)
        self.d_c.requires_grad_(True)
        self.opt_d.zero_grad(set_to_none=True)
        fake_s = self.pool_s.query(out["fake_s"].detach().float())  # (B, 1, S, S)
        fake_c = self.pool_c.query(out["fake_c"].detach().float())  # (B, 3, S, S)
        with self._autocast():
            pr_s, pf_s, pr_c, pf_c = self.d_train(real_s, fake_s, real_c, fake_c)
        loss_d_s = 0.5 * (self.gan(pr_s, True) + self.gan(pf_s, False))
        loss_d_c = 0.5 * (self.gan(pr_c, True) + self.gan(pf_c, False))
        (loss_d_s + loss_d_c).backward()
        self.opt_d.step()
        logs.update({"loss_d_s": loss_d_s.detach(), "loss_d_c": loss_d_c.detach()})
        self._last = {
            "real_c": real_c,
            "real_s": real_s,
            **{k: out[k].detach() for k in ("fake_s", "rec_c", "fake_c", "rec_s")},
        }
        return logs

    # -- schedule, validation, samples, export -----------------------------------------------------
    def set_lr_factor(self, factor: float) -> None:
        for opt, base in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    def current_lr(self) -> dict[str, float]:
        return {"g": self.opt_g.param_groups[0]["lr"], "d": self.opt_d.param_groups[0]["lr"]}

    def validate(self) -> dict[str, float]:
        return {}  # unpaired data has no target to compare with

    def write_samples(self, run: RunDir, step: int) -> None:
        """One grid: top rows real colour | fake scan | reconstructed colour, bottom rows real scan |
        fake colour | reconstructed scan."""
        if self._last is None:
            return
        t = {k: v.float() for k, v in self._last.items()}
        k = min(2, t["real_c"].shape[0])

        def rgb(x: torch.Tensor) -> torch.Tensor:
            return x[:k].expand(-1, 3, -1, -1) if x.shape[1] == 1 else x[:k]  # (k, 3, S, S)

        columns = [
            torch.cat([rgb(t["real_c"]), rgb(t["real_s"])]),  # (2k, 3, S, S)
            torch.cat([rgb(t["fake_s"]), rgb(t["fake_c"])]),
            torch.cat([rgb(t["rec_c"]), rgb(t["rec_s"])]),
        ]
        run.save_samples(step, [c.contiguous() for c in columns], max_rows=2 * k)

    def export(self, path: Path, provenance: dict[str, Any]) -> None:
        """The shipped checkpoint holds G_s only (task ``scan``)."""
        checkpoint.save(path, self.g_s, provenance, half=self.cfg.half_checkpoint)

    def shipped_module(self) -> nn.Module:
        return self.g_s

    def state_dict(self) -> dict[str, Any]:
        return {
            "g_s": self.g_s.state_dict(),
            "g_c": self.g_c.state_dict(),
            "d_s": self.d_s.state_dict(),
            "d_c": self.d_c.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "pool_s": self.pool_s.state_dict(),
            "pool_c": self.pool_c.state_dict(),
            **({"data": self._data_fingerprint} if self.train_set is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("g_s", "g_c", "d_s", "d_c", "opt_g", "opt_d"):
            getattr(self, name).load_state_dict(state[name])
        self.pool_s.load_state_dict(state["pool_s"], self.ctx.device)
        self.pool_c.load_state_dict(state["pool_c"], self.ctx.device)
        self._saved_data = state.get("data")  # compared now or once the folders are listed (make_dataset)
        self._check_data()


def train_scan_generator(
    config: ScanTrainConfig,
    resume: bool = False,
    on_step: Callable[[int, int, dict[str, float] | None], None] | None = None,
    stop: EarlyStop | None = None,
) -> Path:
    """Train the scan generator; write ``RUN_DIR/model.safetensors`` (G_s only) and return its path.

    Args:
        config: the run's settings (on resume: read back from ``RUN_DIR/config.json`` by the CLI).
        resume: continue from ``RUN_DIR/resume.pt`` (all four networks, both optimizers, both pools).
        on_step: progress callback (rank 0 only): (step, total, scalars or ``None``).
        stop: stop early (time limit, SIGINT / SIGTERM) with the run saved for ``resume``.

    Raises:
        TrainingStopped: ``stop`` ended the run early.
        MangacolorError: missing folders or images, unknown architecture, bad sizes or weights.
    """
    check_run_folder_free(config.run_dir, resume, (config.scans, config.colors))
    stages = parse_stages(config.stages, config.crop_size)
    check_load_size(config.load_size, stages)
    task = ScanTask(config)
    task.check_networks()  # a bad size or config is refused before both folders are decoded
    ctx = setup_distributed(config.device)
    try:
        loop = LoopConfig(
            run_dir=config.run_dir,
            steps=config.steps,
            stages=stages,
            batch_size=config.batch_size,
            seed=config.seed,
            num_workers=config.num_workers,
            log_every=config.log_every,
            sample_every=config.sample_every,
            save_every=config.save_every,
            decay_start=config.decay_start,
            half_checkpoint=config.half_checkpoint,
        )
        dataset = task.make_dataset(stages[0])  # fail early on empty folders; reused by the loop
        provenance = {
            "scans": Path(config.scans).name,
            "scan_files": len(dataset.scans),
            "colors": Path(config.colors).name,
            "color_files": len(dataset.colors),
            "resolution": stages[-1],
            "stages": stages,
            "load_size": config.load_size,
            # inference default: the scale the network was trained at (0: the page's own resolution)
            "working_size": config.load_size or 0,
            "trainer": "cyclegan",
            "gan_loss": config.gan_loss,
            "cycle_weight": config.cycle_weight,
            "identity_weight": config.identity_weight,
            "pool_size": config.pool_size,
            "batch_size": config.batch_size * ctx.world_size,
        }
        return run_training(task, loop, config, ctx, provenance, resume=resume, on_step=on_step, stop=stop)
    finally:
        teardown_distributed(ctx)
