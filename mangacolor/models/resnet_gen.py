"""CycleGAN's ResNet-block generator (Zhu et al., "Unpaired Image-to-Image Translation using
Cycle-Consistent Adversarial Networks", ICCV 2017; after Johnson et al. 2016).

``c7s1-w``, ``n_down`` stride-2 3x3 convolutions (each doubling the width), ``n_blocks`` residual
blocks, ``n_down`` stride-2 transposed convolutions back, ``c7s1-out`` and tanh; instance norm
and reflection padding throughout. CycleGAN uses ``base_width=64`` and 9 blocks at 256x256.

For ``train-scan`` both generators are deliberately *weak* (narrow, few blocks): the scan
generator G_s (colour -> greyscale scan, ``in_channels=3, out_channels=1``) only has to add
shading and screentone to the colour art's own structure, and a weak network cannot invent
content. The colour generator G_c (scan -> colour) is the same class with ``in_channels=1,
out_channels=3``; it exists only to close the cycle and is never shipped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mangacolor.models.blocks import init_weights, norm_layer
from mangacolor.models.registry import register_model


@dataclass(frozen=True)
class ResnetGenConfig:
    """Hyperparameters of :class:`ResnetGenerator`.

    Attributes:
        in_channels: 3 for colour input (the scan generator), 1 for greyscale.
        out_channels: 1 for a greyscale scan, 3 for colour.
        base_width: channels of the first layer (CycleGAN: 64; default deliberately narrow).
        n_blocks: residual blocks at the bottleneck (CycleGAN: 9; default deliberately few).
        n_down: stride-2 down-sampling layers (and as many up); inputs must be multiples of 2**n_down.
        norm: ``instance`` (CycleGAN), ``batch``, ``layer`` or ``none``.
        dropout: dropout inside the residual blocks while training (CycleGAN: off).
    """

    in_channels: int = 3
    out_channels: int = 1
    base_width: int = 16
    n_blocks: int = 3
    n_down: int = 2
    norm: str = "instance"
    dropout: float = 0.0


class ResnetBlock(nn.Module):
    """``x + conv(relu(norm(conv(x))))`` with reflection padding (CycleGAN's residual block)."""

    def __init__(self, width: int, norm: str, dropout: float) -> None:
        super().__init__()
        bias = norm != "batch"
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(width, width, 3, bias=bias),
            norm_layer(norm, width),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(width, width, 3, bias=bias), norm_layer(norm, width)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)  # (B, width, h, w)


@register_model("cyclegan-resnet", ResnetGenConfig, task="scan", toy={"base_width": 4, "n_blocks": 1}, toy_size=32)
class ResnetGenerator(nn.Module):
    """CycleGAN ResNet generator: colour (B, 3, H, W) -> scan (B, 1, H, W) in [-1, 1] by default."""

    num_outputs = 1

    def __init__(self, config: ResnetGenConfig) -> None:
        super().__init__()
        c = config
        if c.n_down < 0 or c.n_blocks < 0 or c.base_width < 1:
            raise ValueError(f"n_down, n_blocks must be >= 0 and base_width >= 1. Got {c}")
        self.config = config
        bias = c.norm != "batch"
        w = c.base_width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(c.in_channels, w, 7, bias=bias),
            norm_layer(c.norm, w),
            nn.ReLU(True),
        ]
        for i in range(c.n_down):  # d_k: 3x3 stride-2, width x2
            cin, cout = w * 2**i, w * 2 ** (i + 1)
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=bias), norm_layer(c.norm, cout), nn.ReLU(True)]
        inner = w * 2**c.n_down
        layers += [ResnetBlock(inner, c.norm, c.dropout) for _ in range(c.n_blocks)]
        for i in range(c.n_down, 0, -1):  # u_k: 3x3 stride-1/2, width /2
            cin, cout = w * 2**i, w * 2 ** (i - 1)
            layers += [
                nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=1, bias=bias),
                norm_layer(c.norm, cout),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, c.out_channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    @property
    def size_multiple(self) -> int:
        """Height and width of inputs must be multiples of this."""
        return 2**self.config.n_down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, in, H, W) -> (B, out, H, W)
