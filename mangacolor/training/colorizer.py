"""Colorizer trainer: pix2pix (Isola et al. 2017) grown into the trainer the registered architectures need.

Generator G maps a greyscale page or line drawing x to colour G(x); a PatchGAN D (or pix2pixHD's
multi-scale D) judges (x, y) pairs:

    L_D = GAN(D(x, y), real) + GAN(D(x, G(x)), fake)                  (halved, as in pix2pix)
    L_G = lambda_adv GAN(D(x, G(x)), real) + lambda_L1 |G(x) - y|_1
          + lambda_VGG Perceptual(G(x), y) + lambda_FM FeatureMatching

with the two-timescale update rule (separate learning rates for G and D, Heusel et al. 2017),
optional NoGAN-style generator pre-training (the first ``pretrain_steps`` train G on its
reconstruction losses only), progressive sizes, WGAN-GP, and the per-architecture extras:
the SGRU's loss over its k colourings and the reference U-Net's guide decoders.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mangacolor import checkpoint
from mangacolor.data import (
    AugmentConfig,
    ColorizationDataset,
    check_input_kind,
    make_source,
    split_files,
    typical_long_side,
)
from mangacolor.errors import MangacolorError
from mangacolor.losses import GANLoss
from mangacolor.models import build_config, create_model, get_spec
from mangacolor.prepare.lines import METHODS as LINE_METHODS
from mangacolor.training.loop import (
    RESUME_FILE,
    DistContext,
    EarlyStop,
    LoopConfig,
    check_load_size,
    check_run_folder_free,
    check_stage_sizes,
    check_training_options,
    data_fingerprint,
    parse_stages,
    resolve_device,
    run_training,
    setup_distributed,
    teardown_distributed,
    warn_if_data_changed,
)
from mangacolor.training.rundir import RunDir

log = logging.getLogger(__name__)

__all__ = ["ColorTrainConfig", "ColorizerTask", "resolve_device", "train_colorizer"]


@dataclass
class ColorTrainConfig:
    """Everything that defines a colorizer training run (stored as the run's ``config.json``).

    Attributes:
        data: folder of colour images (or of A|B images with ``aligned``).
        run_dir: output folder (checkpoints, metrics, samples, resume state).
        input_dir: folder of greyscale inputs paired by name with ``data`` (e.g. synthetic scans).
        aligned: ``data`` holds pix2pix A|B images.
        input_kind: inputs made from colour images: ``luma``, ``lines`` or ``mix``. With
            ``input_dir`` or ``aligned``: ``luma`` uses the paired inputs, ``mix`` half those and
            half line art of the target.
        lines_method: ``prepare lines`` method for line inputs.
        arch: registered colorize architecture.
        model: overrides of the architecture's config (e.g. ``{"base_width": 32}``).
        discriminator_arch: registered discriminator.
        discriminator: overrides of the discriminator's config.
        steps: optimisation steps per stage.
        stages: training crop sizes, one stage each (progressive training); ``None``: ``[crop_size]``.
        crop_size: crop size when ``stages`` is not given.
        batch_size: images per step (per process under torchrun).
        load_size: long side images are resized to before cropping (``None``: as stored).
        augment: training-time augmentation (content-aware crops, flips, small rotations,
            perspective, erasing, saturation jitter, input blur; ``data.AugmentConfig`` defaults).
        lr_g: generator learning rate.
        lr_d: discriminator learning rate (two-timescale update rule).
        betas: Adam betas.
        decay_start: learning rates decay linearly to zero after this fraction of all steps.
        l1_weight: lambda_L1.
        gan_weight: lambda_adv (0 trains with reconstruction losses only).
        gan_loss: ``bce``, ``lsgan``, ``hinge`` or ``wgan-gp``.
        gp_weight: WGAN-GP gradient penalty weight.
        feature_matching_weight: pix2pixHD feature matching (needs a multi-scale discriminator).
        perceptual_weight: VGG16 perceptual loss weight (needs ``vgg_weights`` or torchvision's cache).
        vgg_weights: VGG16 weights file (torchvision state dict or features-only .safetensors).
        anime_weights: Danbooru ResNet50 file for the "anime" feature loss (0.9 VGG + 0.1 anime).
        init_weights: a colorizer checkpoint whose weights start the generator (fine-tuning); ``arch``
            and ``model`` must be its own (the CLI takes them from it). Not read on resume.
        encoder_weights: pretrained encoder for the ResNet50 U-Net.
        freeze_encoder: train the decoder only.
        pretrain_steps: generator-only steps before adversarial training (NoGAN).
        val_fraction: share of files held out (by name hash) for validation L1 and the best checkpoint.
        test_fraction: share of files (by name hash) used neither for training nor for validation: the
            test split that ``benchmarks/compare_*.py --val-fraction`` score on, so that the best
            checkpoint is not picked on the images it is then scored on. Validation takes the next
            ``val_fraction`` of the hash range.
        seed: seeds initialisation, data order and augmentation.
        device: ``auto``, ``cpu``, ``cuda``.
        num_workers: DataLoader worker processes.
        amp: bf16 autocast on CUDA (``None``: on when training on CUDA).
        channels_last: channels-last memory format.
        compile: ``torch.compile`` the generator and discriminator.
        log_every, sample_every, save_every: intervals in steps.
        half_checkpoint: store the shipped checkpoints in float16.
    """

    data: str
    run_dir: str
    input_dir: str | None = None
    aligned: bool = False
    input_kind: str = "luma"
    lines_method: str = "sketch"
    arch: str = "unet"
    model: dict[str, Any] = field(default_factory=dict)
    discriminator_arch: str = "patchgan"
    discriminator: dict[str, Any] = field(default_factory=dict)
    steps: int = 1000
    stages: list[int] | None = None
    crop_size: int = 256
    batch_size: int = 16
    load_size: int | None = None
    augment: bool = False
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.5, 0.999)
    decay_start: float = 0.5
    l1_weight: float = 100.0
    gan_weight: float = 1.0
    gan_loss: str = "bce"
    gp_weight: float = 10.0
    feature_matching_weight: float = 0.0
    perceptual_weight: float = 0.0
    vgg_weights: str | None = None
    anime_weights: str | None = None
    init_weights: str | None = None
    encoder_weights: str | None = None
    freeze_encoder: bool = False
    pretrain_steps: int = 0
    val_fraction: float = 0.0
    test_fraction: float = 0.0
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


class _TrainForward(nn.Module):
    """Routes ``forward`` to the generator's ``forward_train`` so DDP sees (and syncs) it."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if hasattr(self.generator, "forward_train"):
            return self.generator.forward_train(x, reference)
        return {"output": self.generator(x)}


def _chunk2(pred: Any) -> tuple[Any, Any]:
    """Split a discriminator output computed on cat([real, fake]) into the two halves."""
    if isinstance(pred, torch.Tensor):
        return pred.chunk(2)
    real, fake = [], []
    for item in pred:
        if isinstance(item, (list, tuple)):
            halves = [t.chunk(2) for t in item]
            real.append([h[0] for h in halves])
            fake.append([h[1] for h in halves])
        else:
            a, b = item.chunk(2)
            real.append(a)
            fake.append(b)
    return real, fake


def _input_provenance(config: ColorTrainConfig) -> str:
    """The model card's ``input``: ``luma``/``lines``/``mix``, ``paired:DIR``, ``aligned`` (``+lines`` under mix)."""
    if config.input_dir:
        paired = "paired:" + Path(config.input_dir).name
    elif config.aligned:
        paired = "aligned"
    else:
        return config.input_kind
    return paired + "+lines" if config.input_kind == "mix" else paired


class ColorizerTask:
    """The colorizer as a :class:`~mangacolor.training.loop.TrainTask`."""

    def __init__(self, config: ColorTrainConfig, resume: bool = False) -> None:
        self.cfg = config
        self.resume = resume  # the generator's weights come from the resume state, not init_weights
        try:
            spec = get_spec(config.arch)
            d_spec = get_spec(config.discriminator_arch)
        except KeyError as exc:
            raise MangacolorError(str(exc.args[0])) from None
        if spec.task != "colorize":
            raise MangacolorError(f"{config.arch} is a {spec.task} architecture, not a colorizer")
        if d_spec.task != "discriminator":
            raise MangacolorError(f"{config.discriminator_arch} is not a discriminator")
        if config.gan_loss not in ("bce", "lsgan", "hinge", "wgan-gp"):
            raise MangacolorError(f"--gan-loss must be bce, lsgan, hinge or wgan-gp. Got {config.gan_loss!r}")
        if config.anime_weights and not config.perceptual_weight:
            raise MangacolorError("--anime-weights is part of the perceptual loss: give --perceptual W too")
        if config.freeze_encoder and not (config.encoder_weights or config.init_weights):
            raise MangacolorError(
                "--freeze-encoder would freeze a random encoder: give --encoder-weights FILE (or --init MODEL)"
            )
        if config.input_kind in ("lines", "mix") and config.lines_method not in LINE_METHODS:
            methods = ", ".join(LINE_METHODS)
            raise MangacolorError(f"--lines-method must be one of {methods}. Got {config.lines_method!r}")
        check_training_options(config)
        try:
            model_config = build_config(config.arch, config.model)
        except (TypeError, ValueError) as exc:
            raise MangacolorError(f"--model-config: {exc}") from None
        channels = (getattr(model_config, "in_channels", 1), getattr(model_config, "out_channels", 3))
        if channels != (1, 3):
            raise MangacolorError(
                f"--model-config: a colorizer reads 1 channel (greyscale or lines) and writes 3 (RGB); "
                f"in_channels {channels[0]}, out_channels {channels[1]} cannot train on this data"
            )
        source = make_source(config.data, config.input_dir, config.aligned)
        check_input_kind(source, config.input_kind)  # before the run folder is written
        files = [source.key(i) for i in range(len(source))]
        train_files, val_files = split_files(files, config.val_fraction, skip_fraction=config.test_fraction)
        if not train_files:
            given = f"--val-fraction {config.val_fraction}" + (
                f" with --test-fraction {config.test_fraction}" if config.test_fraction else ""
            )
            raise MangacolorError(
                f"{given} holds out all {len(files)} images of {config.data}; nothing is left to train on"
            )
        self.train_source = source.subset(train_files) if len(train_files) < len(files) else source
        self.val_source = source.subset(val_files) if val_files else None
        self._last_batch: dict[str, torch.Tensor] | None = None
        self._last_fake: torch.Tensor | None = None
        self.provenance: dict[str, Any] | None = None  # set by train_colorizer; data_files counted when read

    # -- building ----------------------------------------------------------------------------------
    def build(self, ctx: DistContext) -> None:
        cfg = self.cfg
        self.ctx = ctx
        torch.manual_seed(cfg.seed)
        try:
            self.generator = create_model(cfg.arch, cfg.model)
            in_ch = self.generator.config.in_channels + 3
            d_overrides = dict(cfg.discriminator)
            if cfg.gan_loss == "wgan-gp":
                d_overrides.setdefault("norm", "none")  # batch norm breaks the per-sample gradient penalty
            d_cfg = build_config(cfg.discriminator_arch, d_overrides)
            self.discriminator = create_model(
                cfg.discriminator_arch, build_config(cfg.discriminator_arch, d_cfg, in_channels=in_ch)
            )
        except (TypeError, ValueError) as exc:
            raise MangacolorError(str(exc)) from None
        self.size_multiple = int(getattr(self.generator, "size_multiple", 1))
        min_size = int(getattr(self.discriminator, "min_input_size", 1)) if cfg.gan_weight > 0 else 1  # D unused
        check_stage_sizes(parse_stages(cfg.stages, cfg.crop_size), self.size_multiple, min_size, f"this {cfg.arch}")
        self.needs_reference = bool(getattr(self.generator, "needs_reference", False))
        self.num_outputs = int(getattr(self.generator, "num_outputs", 1))
        if cfg.init_weights and not self.resume:
            self._load_init_weights()
        self._setup_encoder()
        self._setup_style()
        if cfg.input_kind == "mix" and self._is_main():
            self._warn_batch_norm_mix()
        total = cfg.steps * len(parse_stages(cfg.stages, cfg.crop_size))
        if cfg.gan_weight > 0 and cfg.pretrain_steps >= total and self._is_main():
            log.warning(
                "--pretrain-steps %d covers all %d steps: the discriminator never trains in this run "
                "(a resume with a larger --steps goes on with it)",
                cfg.pretrain_steps,
                total,
            )
        device = ctx.device
        self.generator.to(device)
        self.discriminator.to(device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        if cfg.channels_last:
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        self.amp = (device.type == "cuda") if cfg.amp is None else (cfg.amp and device.type == "cuda")
        g_train: nn.Module = _TrainForward(self.generator)
        d_train: nn.Module = self.discriminator
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            g_train = DDP(g_train, device_ids=ids, find_unused_parameters=cfg.freeze_encoder)
            d_train = DDP(d_train, device_ids=ids)
        if cfg.compile:
            g_train = torch.compile(g_train)
            d_train = torch.compile(d_train)
        self.g_train, self.d_train = g_train, d_train
        g_params = [p for p in self.generator.parameters() if p.requires_grad]
        self.opt_g = torch.optim.Adam(g_params, lr=cfg.lr_g, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=cfg.lr_d, betas=cfg.betas)
        self.gan = GANLoss(cfg.gan_loss)
        self.perceptual = self._feature_loss()
        if self.perceptual is not None:
            self.perceptual.to(device)
        elif cfg.vgg_weights and not hasattr(self.generator, "load_style_features") and self._is_main():
            log.warning("--vgg-weights is not used: this %s run has no perceptual loss (give --perceptual W)", cfg.arch)
        self.feature_matching = None
        if cfg.feature_matching_weight > 0:
            if not getattr(self.discriminator, "returns_features", False):
                raise MangacolorError(
                    f"--feature-matching needs a discriminator that returns its features (patchgan-ms), "
                    f"not {cfg.discriminator_arch}"
                )
            from mangacolor.losses import FeatureMatchingLoss

            self.feature_matching = FeatureMatchingLoss()

    def _warn_batch_norm_mix(self) -> None:
        """Warn that batch norm's running statistics blend the two kinds of input ``--input mix`` trains on.

        At inference they match neither greyscale nor line art; on the demo corpus a batch-norm U-Net
        trained on mix ended 6-7 dB below an instance-norm one on line art, and a layer-norm one did
        better still on line art and screentone (docs/quality.md).
        """
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.generator.modules()):
            return
        cfg = self.cfg
        fix = (
            'give --model-config \'{"norm": "layer"}\' (or "instance"), normalised per image'
            if getattr(self.generator.config, "norm", None) == "batch"
            else "prefer a generator without batch norm"
        )
        log.warning(
            "--input mix with a batch-norm %s: its running statistics blend greyscale and line-art inputs and "
            "fit neither at inference; %s (docs/quality.md, 'Batch norm under mixed inputs')",
            cfg.arch,
            fix,
        )

    def _load_init_weights(self) -> None:
        """Start the generator from ``init_weights`` (float16 checkpoints are read into float32).

        Raises:
            MangacolorError: not a readable checkpoint, or one of another architecture or config.
        """
        from mangacolor import checkpoint

        model, info = checkpoint.load(self.cfg.init_weights)
        if info.arch != self.cfg.arch or model.config != self.generator.config:
            raise MangacolorError(
                f"{info.path}: a {info.arch} generator with config {info.config}; this run builds {self.cfg.arch} "
                f"with {self.cfg.model}: --init takes both from the checkpoint"
            )
        self.generator.load_state_dict(model.state_dict())
        log.info("generator initialised from %s", info.path)

    def _setup_encoder(self) -> None:
        cfg = self.cfg
        has_encoder = hasattr(self.generator, "encoder")
        if cfg.encoder_weights and not has_encoder:
            raise MangacolorError(f"--encoder-weights needs an encoder architecture; {cfg.arch} has none")
        if cfg.freeze_encoder and not has_encoder:
            raise MangacolorError(f"--freeze-encoder needs an encoder architecture; {cfg.arch} has none")
        if not has_encoder:
            return
        from mangacolor.models import resnet_unet

        if self.resume:  # the encoder's weights come back with the resume state, not from the file
            pass
        elif cfg.encoder_weights:
            resnet_unet.load_encoder_weights(self.generator, cfg.encoder_weights)
            log.info("encoder initialised from %s", cfg.encoder_weights)
        elif not cfg.init_weights and self._is_main():
            log.warning("no --encoder-weights given: the %s encoder trains from scratch", cfg.arch)
        if cfg.freeze_encoder:
            resnet_unet.freeze_encoder(self.generator)

    def _setup_style(self) -> None:
        """Reference models: copy pretrained VGG16 weights into the style encoder (stored in the checkpoint)."""
        if not hasattr(self.generator, "load_style_features") or self.resume:  # resume: in the resume state
            return
        from mangacolor.errors import WeightsNotFoundError
        from mangacolor.losses import load_vgg16_features
        from mangacolor.models.blocks import VGG16_WIDTHS

        if tuple(self.generator.config.style_widths) != VGG16_WIDTHS:
            log.info("style_widths are not VGG16's: the style encoder stays random")
            return
        try:
            features = load_vgg16_features(self.cfg.vgg_weights)
        except WeightsNotFoundError as exc:
            if self.cfg.vgg_weights:
                raise
            if self._is_main():
                log.warning("%s; the style encoder of %s stays random (frozen)", exc, self.cfg.arch)
            return
        self.generator.load_style_features(features)
        log.info("style encoder initialised with VGG16 weights")

    def _feature_loss(self) -> nn.Module | None:
        """The VGG (+ anime) feature loss when asked for, or when the SGRU's collection loss can use it."""
        cfg = self.cfg
        if cfg.perceptual_weight > 0:
            return self._perceptual()
        if self.num_outputs <= 1:
            return None
        from mangacolor.errors import WeightsNotFoundError

        try:
            return self._perceptual()
        except WeightsNotFoundError as exc:
            if cfg.vgg_weights or cfg.anime_weights:
                raise
            if self._is_main():
                log.warning("%s; the collection loss of %s uses pixels only", exc, cfg.arch)
            return None

    def _is_main(self) -> bool:
        return getattr(self, "ctx", None) is None or self.ctx.is_main

    def _perceptual(self) -> nn.Module:
        from mangacolor.losses import PerceptualLoss, load_vgg16_features

        vgg = PerceptualLoss(load_vgg16_features(self.cfg.vgg_weights))
        if self.cfg.anime_weights:
            from mangacolor.losses import AnimeFeatureLoss, CombinedFeatureLoss

            return CombinedFeatureLoss(vgg, AnimeFeatureLoss.from_file(self.cfg.anime_weights))
        return vgg

    # -- data ----------------------------------------------------------------------------------------
    def _dataset(self, source: Any, size: int, flip: bool, role: str = "training") -> ColorizationDataset:
        cfg = self.cfg
        return ColorizationDataset(
            source,
            size,
            seed=cfg.seed,
            load_size=cfg.load_size,
            input_kind=cfg.input_kind,
            lines_method=cfg.lines_method,
            flip=flip,
            reference=self.needs_reference,
            augment=AugmentConfig() if cfg.augment and flip else None,
            role=role,
        )

    def make_dataset(self, size: int) -> ColorizationDataset:
        self.size = size
        train = self._dataset(self.train_source, size, flip=True)
        self.val_set = None
        if self.val_source is not None:
            try:
                self.val_set = self._dataset(self.val_source, size, flip=False, role="validation")
            except MangacolorError as exc:  # unreadable held-out files cost the validation, not the run
                log.warning("no validation: %s", exc)
        if self.provenance is not None:
            self.provenance["data_files"] = len(train)  # the readable ones
        return train

    # -- one step ------------------------------------------------------------------------------------
    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {
            k: v.to(self.ctx.device, non_blocking=True).contiguous(memory_format=self.memory_format)
            for k, v in batch.items()
        }

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp)

    def reconstruction_loss(
        self, out: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Non-adversarial generator loss for any architecture; returns (loss, parts to log)."""
        cfg = self.cfg
        fake_all = out["output"].float()  # (B, 3k, H, W)
        parts: dict[str, torch.Tensor] = {}
        if self.num_outputs > 1:
            from mangacolor.losses import collection_loss

            loss = collection_loss(fake_all, y, x, self.perceptual, l1_weight=1.0, feature_weight=1.0)
            parts["loss_collection"] = loss.detach()
            loss = cfg.l1_weight * loss
        else:
            l1 = F.l1_loss(fake_all, y)
            parts["loss_g_l1"] = l1.detach()
            loss = cfg.l1_weight * l1
            if self.perceptual is not None and cfg.perceptual_weight > 0:
                perc = self.perceptual(fake_all, y)
                parts["loss_g_vgg"] = perc.detach()
                loss = loss + cfg.perceptual_weight * perc
        if "guide_gray" in out:
            from mangacolor.losses import guide_loss

            guides = guide_loss(out["guide_gray"].float(), out["guide_color"].float(), y)
            parts["loss_guides"] = guides.detach()
            loss = loss + cfg.l1_weight * guides
        return loss, parts

    def step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        b = self._to_device(batch)
        x, y, ref = b["x"], b["y"], b.get("ref")
        adversarial = cfg.gan_weight > 0 and step >= cfg.pretrain_steps
        with self._autocast():
            out = self.g_train(x, ref)
        fake = out["output"][:, :3]  # (B, 3, H, W): the first colouring is what D judges
        logs: dict[str, torch.Tensor] = {}
        if adversarial:
            self.discriminator.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            real_pair = torch.cat([x, y], 1)  # (B, 1 + 3, H, W)
            fake_pair = torch.cat([x, fake.detach().to(x.dtype)], 1)
            with self._autocast():
                pred_real, pred_fake = _chunk2(self.d_train(torch.cat([real_pair, fake_pair], 0)))  # one pass
            loss_d = self.gan(pred_real, True) + self.gan(pred_fake, False)
            if cfg.gan_loss == "wgan-gp":
                from mangacolor.losses import gradient_penalty

                gp = gradient_penalty(self.discriminator, real_pair, fake_pair)
                loss_d = loss_d + cfg.gp_weight * gp
                logs["loss_d_gp"] = gp.detach()
            else:
                loss_d = 0.5 * loss_d
            loss_d.backward()
            self.opt_d.step()
            logs["loss_d"] = loss_d.detach()
            self.discriminator.requires_grad_(False)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g, parts = self.reconstruction_loss(out, x, y)
        logs.update(parts)
        if adversarial:
            with self._autocast():
                # D's weights are frozen here, so call it unwrapped: DDP must not expect their gradients
                pred_fake = self.discriminator(torch.cat([x, fake], 1))
            adv = self.gan(pred_fake, True, for_discriminator=False)
            loss_g = loss_g + cfg.gan_weight * adv
            logs["loss_g_gan"] = adv.detach()
            if self.feature_matching is not None:
                with torch.no_grad(), self._autocast():
                    pred_real = self.discriminator(torch.cat([x, y], 1))
                fm = self.feature_matching(pred_fake, pred_real)
                loss_g = loss_g + cfg.feature_matching_weight * fm
                logs["loss_g_fm"] = fm.detach()
        loss_g.backward()
        self.opt_g.step()
        self._last_batch, self._last_fake = b, fake.detach()
        return logs

    # -- schedule, validation, samples, export -----------------------------------------------------
    def set_lr_factor(self, factor: float) -> None:
        for opt, base in ((self.opt_g, self.cfg.lr_g), (self.opt_d, self.cfg.lr_d)):
            for group in opt.param_groups:
                group["lr"] = base * factor

    def current_lr(self) -> dict[str, float]:
        return {"g": self.opt_g.param_groups[0]["lr"], "d": self.opt_d.param_groups[0]["lr"]}

    @torch.no_grad()
    def validate(self, max_batches: int = 8) -> dict[str, float]:
        if self.val_set is None:
            return {}
        was_training = self.generator.training
        self.generator.eval()
        total, count = 0.0, 0
        bs = self.cfg.batch_size
        n = min(len(self.val_set), max_batches * bs)
        for start in range(0, n, bs):
            items = [self.val_set[(0, i)] for i in range(start, min(n, start + bs))]
            batch = self._to_device({k: torch.stack([it[k] for it in items]) for k in items[0]})
            with self._autocast():
                pred = self.generator(batch["x"], batch["ref"]) if self.needs_reference else self.generator(batch["x"])
            total += F.l1_loss(pred[:, :3].float(), batch["y"], reduction="sum").item()
            count += batch["y"].numel()
        self.generator.train(was_training)
        return {"val_l1": total / max(count, 1)}

    def write_samples(self, run: RunDir, step: int) -> None:
        if self._last_batch is None:
            return
        b = self._last_batch
        columns = [b["x"], self._last_fake.float(), b["y"]]
        if "ref" in b:
            columns.insert(1, b["ref"])
        run.save_samples(step, [c.float().contiguous() for c in columns])

    def export(self, path: Path, provenance: dict[str, Any]) -> None:
        checkpoint.save(path, self.generator, provenance, half=self.cfg.half_checkpoint)

    def shipped_module(self) -> nn.Module:
        return self.generator

    @functools.cached_property
    def _data_fingerprint(self) -> dict[str, Any]:
        """The training files' fingerprint (fixed for the run: computed once, stored at every save)."""
        source = self.train_source
        return data_fingerprint([source.key(i) for i in range(len(source))], self.cfg.data)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "data": self._data_fingerprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.ctx.is_main:
            warn_if_data_changed(state.get("data"), self._data_fingerprint, f"the training images of {self.cfg.data}")


def train_colorizer(
    config: ColorTrainConfig,
    resume: bool = False,
    on_step: Callable[[int, int, dict[str, float] | None], None] | None = None,
    stop: EarlyStop | None = None,
) -> Path:
    """Train a colorizer; write ``RUN_DIR/model.safetensors`` and return its path.

    Args:
        config: the run's settings (on resume: read back from ``RUN_DIR/config.json`` by the CLI).
        resume: continue from ``RUN_DIR/resume.pt``.
        on_step: progress callback (rank 0 only): (step, total, scalars or ``None``).
        stop: stop early (time limit, SIGINT / SIGTERM) with the run saved for ``resume``.

    Raises:
        TrainingStopped: ``stop`` ended the run early.
        MangacolorError: no images, unknown architecture, bad sizes, missing weights.
    """
    check_run_folder_free(config.run_dir, resume, (config.data, config.input_dir))
    stages = parse_stages(config.stages, config.crop_size)
    check_load_size(config.load_size, stages)
    task = ColorizerTask(config, resume=resume and (Path(config.run_dir) / RESUME_FILE).exists())
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
        provenance = {
            "data": Path(config.data).name,
            "data_files": len(task.train_source),
            "input": _input_provenance(config),
            "resolution": stages[-1],
            "stages": stages,
            "load_size": config.load_size,
            # inference default: the scale the network was trained at (crops of images at their own
            # size: the images' typical size, never below the crop)
            "working_size": config.load_size or max(stages[-1], typical_long_side(task.train_source) or 0),
            "trainer": "pix2pix",
            "l1_weight": config.l1_weight,
            "gan_weight": config.gan_weight,
            "gan_loss": config.gan_loss,
            "perceptual_weight": config.perceptual_weight,
            "batch_size": config.batch_size * ctx.world_size,
            "val_fraction": config.val_fraction,
            "test_fraction": config.test_fraction,
        }
        if config.init_weights:
            provenance["init"] = Path(config.init_weights).name  # fine-tuned from
        task.provenance = provenance
        return run_training(task, loop, config, ctx, provenance, resume=resume, on_step=on_step, stop=stop)
    finally:
        teardown_distributed(ctx)
