"""Loss modules: adversarial objectives for the generators and discriminators.

* ``bce``: the original GAN objective (Goodfellow et al. 2014) on logits, as in pix2pix;
* ``lsgan``: least squares GAN (Mao et al. 2017), CycleGAN's default;
* ``hinge``: hinge loss (Lim & Ye 2017; used by SAGAN).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAN_LOSSES = ("bce", "lsgan", "hinge")


class GANLoss(nn.Module):
    """Adversarial loss on raw discriminator outputs.

    Call ``loss(pred, target_is_real, for_discriminator)``. For ``bce`` and ``lsgan`` the
    generator and discriminator losses have the same form; for ``hinge`` the generator minimises
    ``-mean(D(fake))``.
    """

    def __init__(self, kind: str = "bce") -> None:
        super().__init__()
        if kind not in GAN_LOSSES:
            raise ValueError(f"gan loss must be one of {GAN_LOSSES}. Got {kind!r}")
        self.kind = kind

    def forward(self, pred: torch.Tensor, target_is_real: bool, for_discriminator: bool = True) -> torch.Tensor:
        if self.kind == "bce":
            target = torch.ones_like(pred) if target_is_real else torch.zeros_like(pred)
            return F.binary_cross_entropy_with_logits(pred, target)
        if self.kind == "lsgan":
            return F.mse_loss(pred, torch.full_like(pred, 1.0 if target_is_real else 0.0))
        if not for_discriminator:  # hinge, generator side
            return -pred.mean()
        return F.relu(1.0 - pred).mean() if target_is_real else F.relu(1.0 + pred).mean()
