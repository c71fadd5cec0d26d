"""Loss modules: adversarial objectives for the generators and discriminators.

* ``bce``: the original GAN objective (Goodfellow et al. 2014) on logits, as in pix2pix;
* ``lsgan``: least squares GAN (Mao et al. 2017), CycleGAN's default;
* ``hinge``: hinge loss (Lim & Ye 2017; used by SAGAN);
* ``wgan-gp``: Wasserstein critic with gradient penalty (Gulrajani et al. 2017), with
  :func:`gradient_penalty`;
* :class:`FeatureMatchingLoss`: pix2pixHD's discriminator feature matching (Wang et al. 2018).

Every adversarial loss accepts either one prediction tensor or a multi-scale discriminator's output
(a list with one entry per scale, each a tensor or a list of feature maps whose last element is the
prediction); scales are averaged.
"""

from __future__ import annotations

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
