"""Swish-Gated Residual U-Net (SGRU; Liu, Chen & Hu, "Anime Sketch Coloring with Swish-Gated
Residual U-Net", ISICA 2018).

Building blocks:

* swish layer ``S(X) = sigmoid(conv3x3(X)) * X``: a learned, per-pixel gate on a feature map;
* swish-gated residual block (SGRB): two 3x3 conv + LeakyReLU layers, added to the swish-gated
  input (``F(X) + S(X)``), used in both the encoder and the decoder;
* swish-gated skip connections: encoder maps pass through a swish layer before concatenation;
* 1x1 convolutions between blocks change the width; max-pooling goes down, pixel shuffle goes up.

The network outputs **k colourings at once** (``3k`` channels, the first three are the default
colouring); it is trained with the collection loss of :func:`mangacolor.losses.collection_loss`
(0.999 min + 0.001 mean over the k outputs), so the outputs specialise into different palettes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mangacolor.models.registry import register_model


@dataclass(frozen=True)
class SGRUConfig:
    """Hyperparameters of :class:`SGRUGenerator`.

    Attributes:
        in_channels: 1 for line art or greyscale pages.
        out_channels: channels of one colouring (3).
        num_outputs: colourings produced at once (k; the paper: 9).
        base_width: channels of the first level; level i has ``base_width * (i + 1)`` (linear, as in the paper).
        depth: down-sampling levels; inputs must be a multiple of 2**depth.
    """

    in_channels: int = 1
    out_channels: int = 3
    num_outputs: int = 9
    base_width: int = 64
    depth: int = 4


class Swish(nn.Module):
    """``S(X) = sigmoid(conv3x3(X)) * X``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gate = nn.Conv2d(channels, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.gate(x)) * x


class SGRB(nn.Module):
    """Swish-gated residual block: ``conv-lrelu-conv-lrelu(X) + S(X)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.swish = Swish(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.swish(x)


@register_model("sgru", SGRUConfig, task="colorize", toy={"base_width": 4, "depth": 2, "num_outputs": 3}, toy_size=32)
class SGRUGenerator(nn.Module):
    """Swish-Gated Residual U-Net (Liu et al. 2018): k colourings (3k channels) of one sketch at once."""

    def __init__(self, config: SGRUConfig) -> None:
        super().__init__()
        c = config
        if c.depth < 1 or c.num_outputs < 1:
            raise ValueError(f"depth and num_outputs must be at least 1. Got {c.depth}, {c.num_outputs}")
        self.config = config
        widths = [c.base_width * (i + 1) for i in range(c.depth + 1)]  # last: the bottleneck
        self.stem = nn.Sequential(nn.Conv2d(c.in_channels, widths[0], 3, 1, 1), nn.LeakyReLU(0.2, inplace=True))
        self.enc_blocks = nn.ModuleList()
        self.enc_proj = nn.ModuleList()  # 1x1 between a level's block and the next level
        for i in range(c.depth):
            self.enc_blocks.append(SGRB(widths[i]))
            self.enc_proj.append(nn.Conv2d(widths[i], widths[i + 1], 1))
        self.bottleneck = SGRB(widths[-1])
        self.skip_gates = nn.ModuleList([Swish(w) for w in widths[:-1]])
        self.up_convs = nn.ModuleList()  # 1x1 to 4x channels, then pixel shuffle
        self.dec_proj = nn.ModuleList()  # 1x1 after concatenation with the gated skip
        self.dec_blocks = nn.ModuleList()
        for i in reversed(range(c.depth)):
            self.up_convs.append(nn.Conv2d(widths[i + 1], widths[i] * 4, 1))
            self.dec_proj.append(nn.Conv2d(2 * widths[i], widths[i], 1))
            self.dec_blocks.append(SGRB(widths[i]))
        self.head = nn.Conv2d(widths[0], c.out_channels * c.num_outputs, 1)

    @property
    def num_outputs(self) -> int:
        """Colourings per input (k)."""
        return self.config.num_outputs

    @property
    def size_multiple(self) -> int:
        """Height and width of inputs must be multiples of this."""
        return 2**self.config.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)  # (B, w0, H, W)
        skips = []
        for block, proj in zip(self.enc_blocks, self.enc_proj, strict=True):
            h = block(h)
            skips.append(h)  # level i: (B, w_i, H / 2**i, W / 2**i)
            h = proj(F.max_pool2d(h, 2))  # (B, w_{i+1}, H / 2**(i+1), ...)
        h = self.bottleneck(h)
        for up, proj, block in zip(self.up_convs, self.dec_proj, self.dec_blocks, strict=True):
            skip = skips.pop()
            gate = self.skip_gates[len(skips)]
            h = F.leaky_relu(F.pixel_shuffle(up(h), 2), 0.2)  # (B, w_i, 2h, 2w)
            h = block(proj(torch.cat([h, gate(skip)], dim=1)))  # (B, 2 w_i, 2h, 2w) -> (B, w_i, 2h, 2w)
        return torch.tanh(self.head(h))  # (B, 3k, H, W)
