"""pix2pix U-Net generator (Isola et al., "Image-to-Image Translation with Conditional
Adversarial Networks", CVPR 2017).

``depth`` stride-2 4x4 convolutions down, as many transposed convolutions up, and a skip
connection between each pair of mirrored layers. With the paper's ``depth=8`` and
``base_width=64`` a 256x256 input reaches a 1x1 bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mangacolor.models.blocks import init_weights, norm_layer
from mangacolor.models.registry import register_model


@dataclass(frozen=True)
class UNetConfig:
    """Hyperparameters of :class:`UNetGenerator`.

    Attributes:
        in_channels: 1 for greyscale pages or line art.
        out_channels: 3 (RGB).
        base_width: channels of the first layer (pix2pix: 64).
        depth: number of stride-2 down-sampling layers (pix2pix: 8); inputs must be a multiple of 2**depth.
        max_width_mult: widths grow x2 per level up to ``base_width * max_width_mult``.
        norm: ``batch`` (pix2pix), ``instance``, ``layer`` or ``none``.
        dropout: dropout in the three innermost decoder layers while training.
    """

    in_channels: int = 1
    out_channels: int = 3
    base_width: int = 64
    depth: int = 8
    max_width_mult: int = 8
    norm: str = "batch"
    dropout: float = 0.5


def _down(cin: int, cout: int, norm: str, outermost: bool, innermost: bool) -> nn.Sequential:
    layers: list[nn.Module] = [] if outermost else [nn.LeakyReLU(0.2, inplace=True)]
    layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=norm != "batch" or innermost))
    if not (outermost or innermost):
        layers.append(norm_layer(norm, cout))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, norm: str, outermost: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.ReLU(inplace=False),
        nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=outermost or norm != "batch"),
    ]
    if outermost:
        layers.append(nn.Tanh())
    else:
        layers.append(norm_layer(norm, cout))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


@register_model("unet", UNetConfig, task="colorize", toy={"base_width": 4, "depth": 4}, toy_size=32)
class UNetGenerator(nn.Module):
    """pix2pix U-Net: greyscale (B, 1, H, W) -> RGB (B, 3, H, W) in [-1, 1]."""

    num_outputs = 1

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        if config.depth < 2:
            raise ValueError(f"depth must be at least 2. Got {config.depth}")
        self.config = config
        c = config
        widths = [c.base_width * min(2**i, c.max_width_mult) for i in range(c.depth)]
        self.downs = nn.ModuleList()
        cin = c.in_channels
        for i, w in enumerate(widths):
            self.downs.append(_down(cin, w, c.norm, outermost=i == 0, innermost=i == c.depth - 1))
            cin = w
        self.ups = nn.ModuleList()
        for j in range(c.depth):  # j = 0 is the innermost
            level = c.depth - 1 - j
            cin = widths[level] if j == 0 else 2 * widths[level]
            outermost = level == 0
            cout = c.out_channels if outermost else widths[level - 1]
            drop = c.dropout if 1 <= j <= 3 and not outermost and widths[level] == widths[-1] else 0.0
            self.ups.append(_up(cin, cout, c.norm, outermost, drop))
        init_weights(self)

    @property
    def size_multiple(self) -> int:
        """Height and width of inputs must be multiples of this."""
        return 2**self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x  # (B, in, H, W)
        for down in self.downs:
            h = down(h)
            skips.append(h)  # level i: (B, w_i, H / 2**(i+1), W / 2**(i+1))
        h = self.ups[0](skips[-1])
        for j in range(1, len(self.ups)):
            h = self.ups[j](torch.cat([h, skips[-1 - j]], dim=1))  # (B, 2 * w_level, h, w)
        return h  # (B, out, H, W)
