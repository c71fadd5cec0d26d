"""pix2pix U-Net with SAGAN self-attention (Zhang et al., "Self-Attention Generative Adversarial
Networks", ICML 2019), as in the line-art colorization GANs that put attention into pix2pix.

The encoder and decoder are those of :mod:`mangacolor.models.unet`. A self-attention layer (learnable
gate gamma, initialised to 0 so the network starts as the plain U-Net) follows the bottleneck: it acts
on the first decoder map, ``H / 2**(depth-1)``. With ``decoder_attention`` a second one acts on the
largest decoder maps (``H / 2``, before the last transposed convolution), where it can relate distant
regions of the page: the same hair colour on both sides of a face, for example.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mangacolor.models.blocks import SelfAttention, init_weights
from mangacolor.models.registry import register_model
from mangacolor.models.unet import _down, _up


@dataclass(frozen=True)
class AttentionUNetConfig:
    """Hyperparameters of :class:`AttentionUNetGenerator`.

    Attributes:
        in_channels: 1 for greyscale pages or line art.
        out_channels: 3 (RGB).
        base_width: channels of the first layer (pix2pix: 64).
        depth: stride-2 levels; inputs must be a multiple of 2**depth.
        max_width_mult: widths grow x2 per level up to ``base_width * max_width_mult``.
        norm: ``batch``, ``instance``, ``layer`` or ``none``.
        dropout: dropout in the three innermost decoder layers while training.
        decoder_attention: add self-attention at the largest decoder maps (H / 2).
        attention_kv_pool: max-pool keys and values of the decoder attention by this factor.
    """

    in_channels: int = 1
    out_channels: int = 3
    base_width: int = 64
    depth: int = 8
    max_width_mult: int = 8
    norm: str = "batch"
    dropout: float = 0.5
    decoder_attention: bool = False
    attention_kv_pool: int = 2


@register_model(
    "unet-attn",
    AttentionUNetConfig,
    task="colorize",
    toy={"base_width": 4, "depth": 4, "decoder_attention": True},
    toy_size=32,
)
class AttentionUNetGenerator(nn.Module):
    """pix2pix U-Net + SAGAN self-attention after the bottleneck (and optionally at the largest decoder maps)."""

    num_outputs = 1

    def __init__(self, config: AttentionUNetConfig) -> None:
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
        # created after init_weights: the projections keep PyTorch's default init, gamma stays 0
        self.bottleneck_attention = SelfAttention(widths[-2])
        self.decoder_attention = SelfAttention(widths[0], kv_pool=c.attention_kv_pool) if c.decoder_attention else None

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
        h = self.bottleneck_attention(self.ups[0](skips[-1]))  # (B, w_{depth-2}, H / 2**(depth-1), ...)
        last = len(self.ups) - 1
        for j in range(1, len(self.ups)):
            if j == last and self.decoder_attention is not None:
                h = self.decoder_attention(h)  # (B, w_0, H / 2, W / 2)
            h = self.ups[j](torch.cat([h, skips[-1 - j]], dim=1))  # (B, 2 * w_level, h, w) in
        return h  # (B, out, H, W)
