"""Building blocks shared by the architectures.

* :class:`SelfAttention`: SAGAN self-attention (Zhang et al., "Self-Attention Generative Adversarial
  Networks", 2019) with a learnable gate gamma that starts at 0, so a new layer starts as the identity;
* :func:`vgg16_features`: the convolutional part of VGG16 (Simonyan & Zisserman 2015) laid out exactly
  like ``torchvision.models.vgg16().features``, so torchvision's weights load by index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    """A normalisation layer by name.

    * ``batch``: batch statistics in training, running averages at inference (pix2pix);
    * ``instance`` (affine, as in pix2pix/CycleGAN): each channel of each image by its own mean and
      variance, so that a channel's level over the image is lost, and on the 1x1 and 2x2 maps near a
      deep U-Net's bottleneck little is left at all;
    * ``layer``: each image by the mean and variance of all its channels together (``GroupNorm`` with
      one group, per-channel affine): per image like ``instance``, so training and inference agree
      whatever the batch holds, but the channels keep their levels relative to each other;
    * ``none``.
    """
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be 'batch', 'instance', 'layer' or 'none'. Got {kind!r}")


def init_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix initialisation: conv weights N(0, 0.02), norm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class SelfAttention(nn.Module):
    """SAGAN self-attention over all positions of a feature map: ``x + gamma * attention(x)``.

    Queries and keys are 1x1 projections to ``channels // 8``; values keep ``channels``. ``kv_pool``
    max-pools keys and values (as in BigGAN's attention) so large maps cost ``kv_pool**2`` times less.
    The product uses ``scaled_dot_product_attention``, which never forms the (HW, HW) matrix on the
    fused kernels.

    Args:
        channels: channels of the input map.
        kv_pool: pooling factor of keys and values (1: none).
    """

    def __init__(self, channels: int, kv_pool: int = 1) -> None:
        super().__init__()
        inner = max(1, channels // 8)
        self.query = nn.Conv2d(channels, inner, 1, bias=False)
        self.key = nn.Conv2d(channels, inner, 1, bias=False)
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))
        self.kv_pool = kv_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        kv = F.max_pool2d(x, self.kv_pool) if self.kv_pool > 1 and min(h, w) >= 2 * self.kv_pool else x
        q = self.query(x).flatten(2).transpose(1, 2)  # (B, HW, C/8)
        k = self.key(kv).flatten(2).transpose(1, 2)  # (B, hw, C/8)
        v = self.value(kv).flatten(2).transpose(1, 2)  # (B, hw, C)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]  # (B, HW, C)
        out = out.transpose(1, 2).reshape(b, c, h, w)  # (B, C, H, W)
        return x + self.gamma * out


VGG16_WIDTHS = (64, 128, 256, 512, 512)
VGG16_BLOCKS = (2, 2, 3, 3, 3)


def vgg16_features(widths: tuple[int, ...] = VGG16_WIDTHS, num_layers: int | None = None) -> nn.Sequential:
    """VGG16's conv stack with torchvision's layer indices (conv, ReLU, ..., max-pool per block).

    Args:
        widths: channels of the five blocks; torchvision's weights need the default.
        num_layers: keep only the first ``num_layers`` modules (e.g. 23 ends at relu4_3).
    """
    if len(widths) != len(VGG16_BLOCKS):
        raise ValueError(f"vgg16 needs {len(VGG16_BLOCKS)} block widths. Got {widths}")
    layers: list[nn.Module] = []
    cin = 3
    for width, convs in zip(widths, VGG16_BLOCKS, strict=True):
        for _ in range(convs):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
            cin = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[:num_layers])
