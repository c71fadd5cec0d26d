"""Reference-style U-Net after Zhang, Li, Wong, Ji & Liu, "Style Transfer for Anime Sketches with
Enhanced Residual U-net and Auxiliary Classifier GAN" (ACPR 2017): colour a sketch in the style of a
reference image.

* A frozen VGG16 reads the reference; its relu3_3 and relu4_3 maps are pooled to their per-channel
  mean and standard deviation (the paper uses VGG19's fc1 vector; only VGG16's convolution weights
  are available offline, and pooled statistics do not depend on the reference's layout). A linear
  layer projects this style vector to the bottleneck width, where it is added to every position.
* The U-Net is pix2pix's (4x4 stride-2 convolutions, transposed convolutions, skips).
* Two guide decoders (training only): a greyscale one on the encoder exit, before style injection,
  and a colour one after injection; their losses (weights 0.3 / 0.9, :func:`mangacolor.losses.guide_loss`)
  push the encoder to keep the content and the injected vector to carry the colours.

The style VGG's weights are part of this model's state dict, so a checkpoint carries them and
``colorize --reference`` needs no other file; the trainer copies pretrained VGG16 weights in
(:meth:`ReferenceUNetGenerator.load_style_features`) before training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mangacolor.models.blocks import VGG16_WIDTHS, init_weights, norm_layer, vgg16_features
from mangacolor.models.registry import register_model
from mangacolor.models.unet import _down, _up

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_STYLE_LAYERS = (15, 22)  # relu3_3, relu4_3 in torchvision's vgg16().features


@dataclass(frozen=True)
class ReferenceUNetConfig:
    """Hyperparameters of :class:`ReferenceUNetGenerator`.

    Attributes:
        in_channels: 1 (sketch or greyscale page).
        out_channels: 3 (RGB).
        base_width: channels of the first encoder layer.
        depth: stride-2 levels; inputs must be a multiple of 2**depth.
        max_width_mult: widths grow x2 per level up to ``base_width * max_width_mult``.
        norm: ``batch``, ``instance``, ``layer`` or ``none``.
        style_widths: widths of the style VGG's five blocks; pretrained VGG16 weights need the default.
        style_size: the reference is resized to this square side before the VGG.
    """

    in_channels: int = 1
    out_channels: int = 3
    base_width: int = 64
    depth: int = 7
    max_width_mult: int = 8
    norm: str = "batch"
    style_widths: tuple[int, int, int, int, int] = VGG16_WIDTHS
    style_size: int = 224


def _guide_decoder(widths: list[int], out_channels: int, norm: str) -> nn.Sequential:
    """Upsample the bottleneck to full size without skips: one transposed conv per level."""
    layers: list[nn.Module] = []
    cin = widths[-1]
    for level in reversed(range(len(widths))):
        outermost = level == 0
        cout = out_channels if outermost else max(1, widths[level - 1] // 2)
        layers += [nn.ReLU(), nn.ConvTranspose2d(cin, cout, 4, 2, 1)]
        layers.append(nn.Tanh() if outermost else norm_layer(norm, cout))
        cin = cout
    return nn.Sequential(*layers)


@register_model(
    "reference-unet",
    ReferenceUNetConfig,
    task="colorize",
    toy={"base_width": 4, "depth": 3, "style_widths": (4, 4, 8, 8, 8), "style_size": 32},
    toy_size=32,
)
class ReferenceUNetGenerator(nn.Module):
    """Reference-style U-Net (Zhang et al. 2017): a sketch coloured after a reference image's style vector."""

    num_outputs = 1
    needs_reference = True

    def __init__(self, config: ReferenceUNetConfig) -> None:
        super().__init__()
        c = config
        if c.depth < 2:
            raise ValueError(f"depth must be at least 2. Got {c.depth}")
        self.config = config
        widths = [c.base_width * min(2**i, c.max_width_mult) for i in range(c.depth)]
        self.downs = nn.ModuleList()
        cin = c.in_channels
        for i, w in enumerate(widths):
            self.downs.append(_down(cin, w, c.norm, outermost=i == 0, innermost=i == c.depth - 1))
            cin = w
        self.ups = nn.ModuleList()
        for j in range(c.depth):
            level = c.depth - 1 - j
            cin = widths[level] if j == 0 else 2 * widths[level]
            outermost = level == 0
            self.ups.append(_up(cin, c.out_channels if outermost else widths[level - 1], c.norm, outermost, 0.0))
        self.guide_gray = _guide_decoder(widths, 1, c.norm)
        self.guide_color = _guide_decoder(widths, c.out_channels, c.norm)
        style_dim = 2 * (c.style_widths[2] + c.style_widths[3])  # mean and std of relu3_3 and relu4_3
        self.style_proj = nn.Linear(style_dim, widths[-1])
        init_weights(self)
        self.style_encoder = vgg16_features(c.style_widths, num_layers=_STYLE_LAYERS[-1] + 1)
        self.style_encoder.requires_grad_(False)
        self.register_buffer("style_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("style_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def size_multiple(self) -> int:
        """Height and width of inputs must be multiples of this."""
        return 2**self.config.depth

    def train(self, mode: bool = True) -> ReferenceUNetGenerator:
        super().train(mode)
        self.style_encoder.eval()  # frozen feature extractor
        return self

    @torch.no_grad()
    def load_style_features(self, features: nn.Module) -> None:
        """Copy pretrained VGG16 convolution weights (torchvision's ``vgg16().features``) into the style VGG.

        Raises:
            ValueError: the weights do not fit ``style_widths``.
        """
        own = self.style_encoder.state_dict()
        given = features.state_dict()
        bad = [k for k in own if k not in given or given[k].shape != own[k].shape]
        if bad:
            raise ValueError(f"VGG16 weights do not fit style_widths {self.config.style_widths} (e.g. {bad[0]!r})")
        self.style_encoder.load_state_dict({k: given[k].to(own[k].dtype) for k in own})

    def style(self, reference: torch.Tensor) -> torch.Tensor:
        """(B, 3, h, w) reference in [-1, 1] -> (B, bottleneck width) style vector."""
        s = self.config.style_size
        ref = F.interpolate(reference, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        h = ((ref + 1) * 0.5 - self.style_mean) / self.style_std  # (B, 3, s, s), ImageNet normalisation
        stats = []
        for i, layer in enumerate(self.style_encoder):
            h = layer(h)
            if i in _STYLE_LAYERS:
                flat = h.flatten(2)  # (B, C, s' s')
                stats += [flat.mean(2), flat.std(2)]
        return self.style_proj(torch.cat(stats, dim=1))  # (B, 2 (C3 + C4)) -> (B, w_bottleneck)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        skips = []
        h = x  # (B, in, H, W)
        for down in self.downs:
            h = down(h)
            skips.append(h)  # level i: (B, w_i, H / 2**(i+1), W / 2**(i+1))
        return skips

    def _decode(self, skips: list[torch.Tensor], bottleneck: torch.Tensor) -> torch.Tensor:
        h = self.ups[0](bottleneck)
        for j in range(1, len(self.ups)):
            h = self.ups[j](torch.cat([h, skips[-1 - j]], dim=1))  # (B, 2 * w_level, h, w)
        return h  # (B, out, H, W)

    def forward_train(self, x: torch.Tensor, reference: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Output and both guide images: ``output`` (B, 3, H, W), ``guide_gray`` (B, 1, H, W), ``guide_color``."""
        if reference is None:
            raise ValueError("the reference U-Net needs a reference image")
        skips = self._encode(x)
        styled = skips[-1] + self.style(reference).to(skips[-1].dtype)[:, :, None, None]  # (B, w, h, w)
        return {
            "output": self._decode(skips, styled),
            "guide_gray": self.guide_gray(skips[-1]),
            "guide_color": self.guide_color(styled),
        }

    def forward(self, x: torch.Tensor, reference: torch.Tensor | None = None) -> torch.Tensor:
        if reference is None:
            raise ValueError("the reference U-Net needs a reference image")
        skips = self._encode(x)
        styled = skips[-1] + self.style(reference).to(skips[-1].dtype)[:, :, None, None]
        return self._decode(skips, styled)  # (B, 3, H, W)
