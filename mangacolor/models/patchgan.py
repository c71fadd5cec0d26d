"""PatchGAN discriminator (Isola et al. 2017): a fully convolutional classifier whose outputs each
judge one overlapping patch; with ``n_layers=3`` each output sees a 70x70 receptive field.

Conditional use (pix2pix): the input is the condition concatenated with the real or generated
image, so ``in_channels`` = 1 (greyscale) + 3 (RGB) = 4 for the colorizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mangacolor.models.blocks import init_weights, norm_layer
from mangacolor.models.registry import register_model


@dataclass(frozen=True)
class PatchGANConfig:
    """Hyperparameters of :class:`PatchDiscriminator`.

    Attributes:
        in_channels: channels of the (condition, image) pair.
        base_width: channels of the first layer (pix2pix: 64).
        n_layers: stride-2 layers; 3 gives the 70x70 receptive field.
        norm: ``batch``, ``instance`` or ``none`` (use ``none`` with WGAN-GP).
    """

    in_channels: int = 4
    base_width: int = 64
    n_layers: int = 3
    norm: str = "batch"


@register_model("patchgan", PatchGANConfig, task="discriminator", toy={"base_width": 4}, toy_size=32)
class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: (B, C, H, W) -> (B, 1, H', W') real/fake logits per patch."""

    def __init__(self, config: PatchGANConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        bias = c.norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(c.in_channels, c.base_width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, c.n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < c.n_layers else 1
            layers += [
                nn.Conv2d(c.base_width * prev, c.base_width * mult, 4, stride, 1, bias=bias),
                norm_layer(c.norm, c.base_width * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(c.base_width * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, H', W')
