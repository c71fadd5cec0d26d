"""Loss modules: adversarial objectives for the generators and discriminators.

* ``bce``: the original GAN objective (Goodfellow et al. 2014) on logits, as in pix2pix;
* ``lsgan``: least squares GAN (Mao et al. 2017), CycleGAN's default;
* ``hinge``: hinge loss (Lim & Ye 2017; used by SAGAN);
* ``wgan-gp``: Wasserstein critic with gradient penalty (Gulrajani et al. 2017), with
  :func:`gradient_penalty`;
* :class:`FeatureMatchingLoss`: pix2pixHD's discriminator feature matching (Wang et al. 2018).

Reconstruction and feature losses:

* :class:`PerceptualLoss`: L1 between VGG16 feature maps (Johnson et al. 2016), weights from
  :func:`load_vgg16_features` (a file, or torchvision's hub cache; never downloaded);
* :class:`AnimeFeatureLoss`: the same on the Danbooru-pretrained ResNet50's stages, and
  :class:`CombinedFeatureLoss` (0.9 VGG + 0.1 anime, as in the DeOldify-style anime colorizers);
* :func:`collection_loss`: the SGRU's loss over k colourings (Liu et al. 2018, after Chen & Koltun's
  diversity loss, ICCV 2017): 0.999 min + 0.001 mean of per-output, sketch-weighted L1 terms;
* :func:`guide_loss`: the reference U-Net's guide decoders (Zhang et al. 2017), weights 0.3 / 0.9.

Every adversarial loss accepts either one prediction tensor or a multi-scale discriminator's output
(a list with one entry per scale, each a tensor or a list of feature maps whose last element is the
prediction); scales are averaged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

GAN_LOSSES = ("bce", "lsgan", "hinge", "wgan-gp")


def predictions(pred: Any) -> list[torch.Tensor]:
    """The prediction map(s) of a discriminator output (see the module docstring)."""
    if isinstance(pred, torch.Tensor):
        return [pred]
    return [p[-1] if isinstance(p, (list, tuple)) else p for p in pred]


class GANLoss(nn.Module):
    """Adversarial loss on raw discriminator outputs.

    Call ``loss(pred, target_is_real, for_discriminator)``. For ``bce`` and ``lsgan`` the
    generator and discriminator losses have the same form; for ``hinge`` and ``wgan-gp`` the
    generator minimises ``-mean(D(fake))``.
    """

    def __init__(self, kind: str = "bce") -> None:
        super().__init__()
        if kind not in GAN_LOSSES:
            raise ValueError(f"gan loss must be one of {GAN_LOSSES}. Got {kind!r}")
        self.kind = kind

    def _single(self, pred: torch.Tensor, target_is_real: bool, for_discriminator: bool) -> torch.Tensor:
        pred = pred.float()
        if self.kind == "bce":
            target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.kind == "lsgan":
            return F.mse_loss(pred, torch.full_like(pred, 1.0 if target_is_real else 0.0))
        if not for_discriminator:  # hinge and wgan-gp, generator side
            return -pred.mean()
        if self.kind == "wgan-gp":  # critic: maximise D(real) - D(fake)
            return -pred.mean() if target_is_real else pred.mean()
        return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()

    def forward(self, pred: Any, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        losses = [self._single(p, target_is_real, for_discriminator) for p in predictions(pred)]
        return torch.stack(losses).mean()


def gradient_penalty(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP penalty E[(||grad_x D(x)||_2 - 1)^2] on random interpolates of real and fake.

    Args:
        discriminator: the critic (without batch norm: the penalty is per sample).
        real: (B, C, H, W) real inputs (conditional pairs included).
        fake: (B, C, H, W) generated inputs (detached).

    Returns:
        scalar; the caller multiplies by lambda (10 in the paper).
    """
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)  # (B, C, H, W)
    score = sum(p.float().sum() for p in predictions(discriminator(mixed)))
    (grad,) = torch.autograd.grad(score, mixed, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1.0) ** 2).mean()


_NO_FEATURES = "feature matching needs a discriminator that returns its intermediate features"


class FeatureMatchingLoss(nn.Module):
    """pix2pixHD feature matching: L1 between the discriminator's intermediate features on the
    generated and the real pair, averaged over layers and scales (the final prediction excluded)."""

    def forward(self, fake_out: Any, real_out: Any) -> torch.Tensor:
        fake_scales = fake_out if isinstance(fake_out, (list, tuple)) else [fake_out]
        real_scales = real_out if isinstance(real_out, (list, tuple)) else [real_out]
        terms = []
        for f_scale, r_scale in zip(fake_scales, real_scales, strict=True):
            if not isinstance(f_scale, (list, tuple)):
                raise ValueError("feature matching needs a discriminator that returns its intermediate features")
            for f, r in zip(f_scale[:-1], r_scale[:-1], strict=True):
                terms.append(F.l1_loss(f.float(), r.detach().float()))
        if not terms:
            raise ValueError(_NO_FEATURES)
        return torch.stack(terms).mean()


# -- feature (perceptual) losses ----------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VGG16_FILE = "vgg16-397923af.pth"
VGG16_LAYERS = (3, 8, 15, 22)  # relu1_2, relu2_2, relu3_3, relu4_3 in torchvision's vgg16().features


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a PyTorch file (``weights_only``: nothing is unpickled)."""
    from mangacolor.checkpoint import load_torch_weights
    from mangacolor.errors import MangacolorError

    if path.suffix != ".safetensors":
        return load_torch_weights(path, "VGG16 weights")
    try:
        from safetensors.torch import load_file

        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types
        raise MangacolorError(f"{path}: cannot read VGG16 weights: {str(exc).splitlines()[0]}") from None


def find_vgg16_weights(path: str | Path | None = None) -> Path:
    """The VGG16 weights file to use: ``path``, else torchvision's file in the torch hub cache.

    Raises:
        WeightsNotFoundError: the file is missing; the message says what to pass.
    """
    from mangacolor.errors import WeightsNotFoundError

    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise WeightsNotFoundError(f"{path}: VGG16 weights not found")
        return path
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [cache / VGG16_FILE, *sorted(cache.glob("vgg16-*.pth"))] if cache.is_dir() else []
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise WeightsNotFoundError(
        f"VGG16 weights not found in {cache}: pass --vgg-weights FILE (torchvision's {VGG16_FILE} or a "
        "features-only .safetensors with keys features.<i>.weight), or put torchvision's file in that folder"
    )


def load_vgg16_features(path: str | Path | None = None) -> nn.Sequential:
    """VGG16's convolution stack with ImageNet weights, frozen and in eval mode (float32).

    Args:
        path: torchvision's ``vgg16-397923af.pth`` (full state dict; the classifier is ignored) or a
            ``.safetensors`` of the ``features.*`` tensors (float16 is fine). ``None``: torchvision's
            file in ``torch.hub.get_dir()/checkpoints/``. Nothing is ever downloaded.

    Raises:
        WeightsNotFoundError: no file (see :func:`find_vgg16_weights`).
        MangacolorError: unreadable file, or tensors that are not VGG16's.
    """
    from mangacolor.errors import MangacolorError
    from mangacolor.models.blocks import vgg16_features

    file = find_vgg16_weights(path)
    state = _read_state(file)
    features = vgg16_features()
    own = features.state_dict()
    given = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
    missing = [k for k in own if k not in given]
    bad = [k for k in own if k in given and tuple(given[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        detail = f"missing features.{missing[0]}" if missing else f"features.{bad[0]} has the wrong shape"
        raise MangacolorError(f"{file}: not VGG16 weights ({detail})")
    features.load_state_dict({k: given[k].float() for k in own})
    return features.requires_grad_(False).eval()


class PerceptualLoss(nn.Module):
    """Mean L1 distance between VGG16 feature maps (relu1_2, relu2_2, relu3_3, relu4_3) of two images.

    Args:
        features: ``vgg16().features``-shaped module (from :func:`load_vgg16_features`; random weights
            in tests); it is frozen here.
        layers: indices of the ReLU outputs compared.
    """

    def __init__(self, features: nn.Module, layers: tuple[int, ...] = VGG16_LAYERS) -> None:
        super().__init__()
        self.features = nn.Sequential(*list(features)[: max(layers) + 1]).requires_grad_(False).eval()
        self.layers = tuple(layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> PerceptualLoss:
        return super().train(False)  # a fixed feature extractor

    def feature_maps(self, image: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
        """(B, 3, H, W) in [-1, 1] -> [(weight, (B, C_l, H_l, W_l)) for each layer]; weights sum to 1."""
        h = ((image.float() + 1) * 0.5 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.layers:
                out.append((1.0 / len(self.layers), h))
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return _feature_distance(self.feature_maps(fake), self.feature_maps(real))


def _feature_distance(fake: list[tuple[float, torch.Tensor]], real: list[tuple[float, torch.Tensor]]) -> torch.Tensor:
    return sum(w * F.l1_loss(f, r.detach()) for (w, f), (_, r) in zip(fake, real, strict=True))


class AnimeFeatureLoss(nn.Module):
    """Mean L1 distance between the stage outputs (layer1..layer3) of the Danbooru-pretrained ResNet50.

    Args:
        body: :func:`mangacolor.models.resnet_unet.resnet_body`-shaped module; frozen here.
    """

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        from mangacolor.models.resnet_unet import DANBOORU_MEAN, DANBOORU_STD

        self.body = nn.Sequential(*list(body)[:7]).requires_grad_(False).eval()  # up to layer3
        self.register_buffer("mean", torch.tensor(DANBOORU_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(DANBOORU_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_file(cls, path: str | Path) -> AnimeFeatureLoss:
        """Build from the Danbooru release ``resnet50-13306192.pth`` (or a torchvision ResNet50 file).

        Raises:
            WeightsNotFoundError: the file does not exist.
            MangacolorError: it is not a ResNet50 state dict.
        """
        from types import SimpleNamespace

        from mangacolor.models.resnet_unet import load_encoder_weights, resnet_body

        holder = SimpleNamespace(encoder=resnet_body())
        load_encoder_weights(holder, path)  # type: ignore[arg-type]
        return cls(holder.encoder)

    def train(self, mode: bool = True) -> AnimeFeatureLoss:
        return super().train(False)

    def feature_maps(self, image: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
        """(B, 3, H, W) in [-1, 1] -> [(weight, stage map) for layer1, layer2, layer3]."""
        h = ((image.float() + 1) * 0.5 - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.body):
            h = layer(h)
            if i >= 4:
                out.append((1.0 / 3, h))
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return _feature_distance(self.feature_maps(fake), self.feature_maps(real))


class CombinedFeatureLoss(nn.Module):
    """``vgg_weight * VGG + anime_weight * anime`` feature loss (0.9 / 0.1 by default)."""

    def __init__(
        self, vgg: PerceptualLoss, anime: AnimeFeatureLoss, vgg_weight: float = 0.9, anime_weight: float = 0.1
    ) -> None:
        super().__init__()
        self.vgg, self.anime = vgg, anime
        self.vgg_weight, self.anime_weight = vgg_weight, anime_weight

    def feature_maps(self, image: torch.Tensor) -> list[tuple[float, torch.Tensor]]:
        """Both networks' maps, their weights scaled by 0.9 and 0.1."""
        return [(self.vgg_weight * w, f) for w, f in self.vgg.feature_maps(image)] + [
            (self.anime_weight * w, f) for w, f in self.anime.feature_maps(image)
        ]

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        return _feature_distance(self.feature_maps(fake), self.feature_maps(real))


def _weighted_l1(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, k: int) -> torch.Tensor:
    """Per-sample, per-output mean of ``weight * |a - b|``: (B k, C, H, W) x3 -> (B, k)."""
    return (weight * (a - b).abs()).mean(dim=(1, 2, 3)).view(-1, k)


def collection_loss(
    fake_all: torch.Tensor,
    y: torch.Tensor,
    x: torch.Tensor,
    perceptual: nn.Module | None,
    l1_weight: float = 1.0,
    feature_weight: float = 1.0,
    min_weight: float = 0.999,
) -> torch.Tensor:
    """SGRU loss over k colourings: ``mean_b(0.999 min_j L_bj + 0.001 mean_j L_bj)``.

    ``L_bj = l1_weight * mean(m * |f_j - y|) + feature_weight * sum_l w_l mean(m_l * |phi_l(f_j) - phi_l(y)|)``
    where ``m = (x + 1) / 2`` is the input sketch in [0, 1] (white paper 1, black lines 0) and ``m_l`` it
    resized to layer l: flat areas count more than lines, whose colour the page's own luminance decides.
    Only the best colouring of each sample gets most of the gradient, so the k outputs diversify.

    Args:
        fake_all: (B, 3k, H, W) the k colourings.
        y: (B, 3, H, W) target.
        x: (B, 1, H, W) input sketch / greyscale page in [-1, 1].
        perceptual: a feature loss with ``feature_maps`` (:class:`PerceptualLoss`), or ``None`` for pixels only.
        l1_weight: weight of the pixel term.
        feature_weight: weight of the feature term.
        min_weight: share of the minimum (the rest goes to the mean).

    Returns:
        scalar.
    """
    b, c3k, h, w = fake_all.shape
    if c3k % y.shape[1] or x.shape[1] != 1:
        raise ValueError(
            f"expected fake (B, 3k, H, W), y (B, 3, H, W), x (B, 1, H, W). Got {fake_all.shape}, {y.shape}, {x.shape}"
        )
    k = c3k // y.shape[1]
    fakes = fake_all.float().reshape(b * k, y.shape[1], h, w)  # (B k, 3, H, W)
    targets = y.float().repeat_interleave(k, dim=0)  # (B k, 3, H, W)
    mask = ((x.float() + 1) * 0.5).clamp(0, 1).repeat_interleave(k, dim=0)  # (B k, 1, H, W)
    per = l1_weight * _weighted_l1(fakes, targets, mask, k)  # (B, k)
    if perceptual is not None and feature_weight:
        fake_maps = perceptual.feature_maps(fakes)
        with torch.no_grad():
            real_maps = perceptual.feature_maps(y.float())
        for (wl, f), (_, r) in zip(fake_maps, real_maps, strict=True):
            m = F.interpolate(mask, size=f.shape[-2:], mode="area")  # (B k, 1, H_l, W_l)
            per = per + feature_weight * wl * _weighted_l1(f, r.repeat_interleave(k, dim=0), m, k)
    return (min_weight * per.min(dim=1).values + (1 - min_weight) * per.mean(dim=1)).mean()


def guide_loss(
    guide_gray: torch.Tensor,
    guide_color: torch.Tensor,
    y: torch.Tensor,
    gray_weight: float = 0.3,
    color_weight: float = 0.9,
) -> torch.Tensor:
    """Reference U-Net guide decoders: ``0.3 |g_gray - luma(y)|_1 + 0.9 |g_color - y|_1`` (means).

    Args:
        guide_gray: (B, 1, H, W) greyscale guide (from the encoder exit).
        guide_color: (B, 3, H, W) colour guide (after style injection).
        y: (B, 3, H, W) target in [-1, 1]; its BT.601 luma is the greyscale guide's target.
    """
    r, g, b = y.float().unbind(1)
    gray = (0.299 * r + 0.587 * g + 0.114 * b)[:, None]  # (B, 1, H, W); luma is linear, so [-1, 1] stays
    return gray_weight * F.l1_loss(guide_gray.float(), gray) + color_weight * F.l1_loss(guide_color.float(), y.float())
