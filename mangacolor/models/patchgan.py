"""PatchGAN discriminator (Isola et al. 2017): a fully convolutional classifier whose outputs each
judge one overlapping patch; with ``n_layers=3`` each output sees a 70x70 receptive field.

Conditional use (pix2pix): the input is the condition concatenated with the real or generated
image, so ``in_channels`` = 1 (greyscale) + 3 (RGB) = 4 for the colorizer.

:class:`MultiscaleDiscriminator` is pix2pixHD's (Wang et al., "High-Resolution Image Synthesis and
Semantic Manipulation with Conditional GANs", CVPR 2018): identical PatchGANs on the input at full,
half and quarter resolution, each returning its intermediate features for the feature-matching loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
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
        norm: ``batch``, ``instance``, ``layer`` or ``none`` (use ``none`` with WGAN-GP).
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

    returns_features = False

    @property
    def min_input_size(self) -> int:
        """Smallest input side: the last normalised map must be at least 2x2 (stride-2 layers halve it,
        the stride-1 layer takes one off) and the logits at least 1x1."""
        return 3 * 2**self.config.n_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, 1, H', W')


@dataclass(frozen=True)
class MultiscalePatchGANConfig:
    """Hyperparameters of :class:`MultiscaleDiscriminator`.

    Attributes:
        in_channels: channels of the (condition, image) pair.
        base_width: channels of each scale's first layer (pix2pixHD: 64).
        n_layers: stride-2 layers per scale (3: 70x70 patches at each scale).
        norm: ``instance`` (pix2pixHD), ``batch``, ``layer`` or ``none`` (use ``none`` with WGAN-GP).
        num_scales: discriminators at full, 1/2, 1/4 ... resolution (pix2pixHD: 3).
    """

    in_channels: int = 4
    base_width: int = 64
    n_layers: int = 3
    norm: str = "instance"
    num_scales: int = 3


class _FeaturePatchGAN(nn.Module):
    """One PatchGAN whose forward returns every block's output, the prediction last (pix2pixHD)."""

    def __init__(self, c: MultiscalePatchGANConfig) -> None:
        super().__init__()
        bias = c.norm != "batch"
        blocks = [nn.Sequential(nn.Conv2d(c.in_channels, c.base_width, 4, 2, 1), nn.LeakyReLU(0.2, True))]
        mult = 1
        for n in range(1, c.n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < c.n_layers else 1
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(c.base_width * prev, c.base_width * mult, 4, stride, 1, bias=bias),
                    norm_layer(c.norm, c.base_width * mult),
                    nn.LeakyReLU(0.2, True),
                )
            )
        blocks.append(nn.Sequential(nn.Conv2d(c.base_width * mult, 1, 4, 1, 1)))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return features  # [..., (B, 1, H', W')]


@register_model(
    "patchgan-ms",
    MultiscalePatchGANConfig,
    task="discriminator",
    toy={"base_width": 4, "n_layers": 2, "num_scales": 2},
    toy_size=32,
)
class MultiscaleDiscriminator(nn.Module):
    """pix2pixHD multi-scale PatchGAN (Wang et al. 2018): per-scale feature lists for feature matching."""

    def __init__(self, config: MultiscalePatchGANConfig) -> None:
        super().__init__()
        if config.num_scales < 1:
            raise ValueError(f"num_scales must be at least 1. Got {config.num_scales}")
        self.config = config
        self.scales = nn.ModuleList([_FeaturePatchGAN(config) for _ in range(config.num_scales)])
        init_weights(self)

    returns_features = True

    @property
    def min_input_size(self) -> int:
        """Smallest input side: the coarsest scale sees the input shrunk ``2**(num_scales - 1)`` times."""
        return 3 * 2**self.config.n_layers * 2 ** (self.config.num_scales - 1)

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """(B, C, H, W) -> one list per scale (full resolution first) of feature maps, the logits last."""
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False)  # (B, C, H / 2**i, W / 2**i)
            outputs.append(scale(x))
        return outputs
