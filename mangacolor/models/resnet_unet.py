"""U-Net with a ResNet50 encoder and a pixel-shuffle decoder, the design of the DeOldify / fastai
``DynamicUnet`` colorizers (He et al., "Deep Residual Learning", 2016; Shi et al., "Real-Time Single
Image and Video Super-Resolution Using an Efficient Sub-Pixel CNN", 2016), with the encoder
pretrained on Danbooru illustrations (the "Danbooru2018 ResNet50" release, ``resnet50-13306192.pth``).

The encoder is torchvision's ResNet50 body (``resnet50().children()[:-2]``, built without weights):
the greyscale input is repeated to three channels and normalised with the Danbooru statistics. Each
decoder stage upsamples by a 1x1 convolution to 4x the channels followed by ``PixelShuffle(2)``
(ICNR-initialised, so it starts as nearest-neighbour upsampling without checkerboard artefacts),
concatenates the encoder's skip at that scale and applies two 3x3 convolutions. A SAGAN
self-attention layer sits on the decoder maps at ``H / attention_at``.

:func:`load_encoder_weights` accepts the Danbooru release (a state dict of ``Sequential(body, head)``:
keys ``0.*`` are the body, ``1.*`` the classifier head, dropped) and torchvision's own
``resnet50-*.pth`` (named keys, ``fc.*`` dropped); files are read with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mangacolor.errors import MangacolorError, WeightsNotFoundError
from mangacolor.models.blocks import SelfAttention, norm_layer
from mangacolor.models.registry import register_model

DANBOORU_MEAN = (0.7137, 0.6628, 0.6519)
DANBOORU_STD = (0.2970, 0.3017, 0.2979)
# torchvision's child names of ResNet, in the order of resnet50().children()[:-2]
_BODY_NAMES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class ResNetUNetConfig:
    """Hyperparameters of :class:`ResNetUNetGenerator`.

    Attributes:
        in_channels: 1 (greyscale, repeated to RGB for the encoder).
        out_channels: 3 (RGB).
        layers: bottleneck blocks per stage; (3, 4, 6, 3) is ResNet50, needed for pretrained weights.
        width: stem width of the encoder (ResNet: 64; stages end with 4, 8, 16, 32 times it).
        decoder_widths: channels of the five decoder stages (H/16, H/8, H/4, H/2, H).
        norm: normalisation in the decoder: ``batch``, ``instance``, ``layer`` or ``none``.
        attention_at: self-attention on the decoder maps at H / this (2, 4, 8 or 16; 0: none).
        attention_kv_pool: max-pool keys and values of the attention by this factor.
    """

    in_channels: int = 1
    out_channels: int = 3
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    width: int = 64
    decoder_widths: tuple[int, int, int, int, int] = (512, 256, 128, 96, 32)
    norm: str = "batch"
    attention_at: int = 4
    attention_kv_pool: int = 2


BOTTLENECK_EXPANSION = 4
"""Output channels of a ResNet Bottleneck block per ``planes`` (torchvision's ``Bottleneck.expansion``)."""


def resnet_body(layers: tuple[int, ...] = (3, 4, 6, 3), width: int = 64) -> nn.Sequential:
    """torchvision's ResNet (Bottleneck) body as ``Sequential(conv1, bn1, relu, maxpool, layer1..4)``.

    With the defaults it is ``Sequential(*resnet50().children()[:-2])``: the same modules, indices and
    parameter names, so both the Danbooru release and torchvision's weights load into it.
    """
    from torchvision.models.resnet import Bottleneck  # here: torchvision takes a second to import

    stem = [
        nn.Conv2d(3, width, 7, 2, 3, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    stages: list[nn.Module] = []
    inplanes = width
    for i, blocks in enumerate(layers):
        planes, stride = width * 2**i, 1 if i == 0 else 2
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * Bottleneck.expansion, 1, stride, bias=False),
            nn.BatchNorm2d(planes * Bottleneck.expansion),
        )
        stage = [Bottleneck(inplanes, planes, stride, downsample)]
        inplanes = planes * Bottleneck.expansion
        stage += [Bottleneck(inplanes, planes) for _ in range(1, blocks)]
        stages.append(nn.Sequential(*stage))
    body = nn.Sequential(*stem, *stages)
    for m in body.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return body


def _icnr_(weight: torch.Tensor, scale: int = 2) -> None:
    """ICNR (Aitken et al. 2017): every sub-pixel of a PixelShuffle conv starts with the same kernel."""
    out, cin, kh, kw = weight.shape
    sub = torch.empty(out // scale**2, cin, kh, kw)
    nn.init.kaiming_normal_(sub, nonlinearity="relu")
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))  # channel c * r^2 + i: sub-pixel i of c


class _UpBlock(nn.Module):
    """Pixel-shuffle x2 upsampling, concatenation with the skip, two 3x3 convolutions."""

    def __init__(self, cin: int, skip: int, cout: int, norm: str, attention: SelfAttention | None) -> None:
        super().__init__()
        self.shuffle_conv = nn.Conv2d(cin, cout * 4, 1)
        _icnr_(self.shuffle_conv.weight)
        nn.init.zeros_(self.shuffle_conv.bias)
        self.skip_norm = norm_layer(norm, skip) if skip > 1 else nn.Identity()
        bias = norm != "batch"
        self.convs = nn.Sequential(
            nn.Conv2d(cout + skip, cout, 3, 1, 1, bias=bias),
            norm_layer(norm, cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=bias),
            norm_layer(norm, cout),
            nn.ReLU(inplace=True),
        )
        self.attention = attention

    def forward(self, h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.relu(F.pixel_shuffle(self.shuffle_conv(h), 2))  # (B, cout, 2h, 2w)
        out = self.convs(torch.cat([up, self.skip_norm(skip)], dim=1))  # (B, cout + skip, 2h, 2w) in
        return self.attention(out) if self.attention is not None else out


@register_model(
    "resnet-unet",
    ResNetUNetConfig,
    task="colorize",
    toy={"layers": (1, 1, 1, 1), "width": 4, "decoder_widths": (16, 16, 8, 8, 8), "attention_at": 4},
    toy_size=64,
)
class ResNetUNetGenerator(nn.Module):
    """ResNet50-encoder U-Net with pixel-shuffle decoder and self-attention (DeOldify-style, Danbooru encoder)."""

    num_outputs = 1

    def __init__(self, config: ResNetUNetConfig) -> None:
        super().__init__()
        c = config
        if len(c.layers) != 4 or len(c.decoder_widths) != 5:
            raise ValueError(f"layers needs 4 entries and decoder_widths 5. Got {c.layers}, {c.decoder_widths}")
        if c.attention_at not in (0, 2, 4, 8, 16):
            raise ValueError(f"attention_at must be 0, 2, 4, 8 or 16. Got {c.attention_at}")
        self.config = config
        self.encoder = resnet_body(c.layers, c.width)
        self.register_buffer("mean", torch.tensor(DANBOORU_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(DANBOORU_STD).view(1, 3, 1, 1), persistent=False)
        self.encoder_frozen = False
        e = BOTTLENECK_EXPANSION
        # skips at H/16, H/8, H/4, H/2, H: layer3, layer2, layer1, relu (stem), the input itself
        skips = (c.width * 4 * e, c.width * 2 * e, c.width * e, c.width, c.in_channels)
        scales = (16, 8, 4, 2, 1)
        cin = c.width * 8 * e  # layer4 output at H/32
        self.decoder = nn.ModuleList()
        for skip, cout, scale in zip(skips, c.decoder_widths, scales, strict=True):
            attention = SelfAttention(cout, c.attention_kv_pool) if scale == c.attention_at else None
            self.decoder.append(_UpBlock(cin, skip, cout, c.norm, attention))
            cin = cout
        self.head = nn.Conv2d(cin, c.out_channels, 1)

    @property
    def size_multiple(self) -> int:
        """Height and width of inputs must be multiples of this."""
        return 32

    def train(self, mode: bool = True) -> ResNetUNetGenerator:
        super().train(mode)
        if self.encoder_frozen:  # a frozen encoder keeps its batch-norm statistics too
            self.encoder.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rgb = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x  # (B, 3, H, W) in [-1, 1]
        h = ((rgb + 1) * 0.5 - self.mean) / self.std  # Danbooru normalisation
        skips = [x]
        for i, module in enumerate(self.encoder):
            h = module(h)
            if i in (2, 4, 5, 6):  # relu (H/2), layer1 (H/4), layer2 (H/8), layer3 (H/16)
                skips.append(h)
        for block in self.decoder:  # h starts as layer4: (B, 32 width e, H/32, W/32)
            h = block(h, skips.pop())
        return torch.tanh(self.head(h))  # (B, out, H, W)


def _body_state(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Map a Danbooru or torchvision ResNet50 state dict onto :func:`resnet_body`'s indices."""
    for prefix in ("module.",):  # saved from a DataParallel / DDP wrapper
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    if "0.0.weight" in state:  # Danbooru: Sequential(body, head)
        return {k[2:]: v for k, v in state.items() if k.startswith("0.")}
    if "conv1.weight" in state:  # torchvision resnet50
        index = {name: str(i) for i, name in enumerate(_BODY_NAMES)}
        out = {}
        for key, value in state.items():
            head, _, rest = key.partition(".")
            if head in index:
                out[f"{index[head]}.{rest}"] = value
        return out
    example = next(iter(state), "(empty)")
    raise MangacolorError(
        f"{path}: not a ResNet50 state dict (expected torchvision keys 'conv1.weight', ... or the Danbooru "
        f"release's '0.0.weight', ...; found e.g. {example!r})"
    )


def load_encoder_weights(generator: nn.Module, path: str | Path) -> None:
    """Load pretrained ResNet50 weights into ``generator.encoder``.

    Args:
        generator: a model with an ``encoder`` built by :func:`resnet_body` at ResNet50 size.
        path: the Danbooru release ``resnet50-13306192.pth`` or torchvision's ``resnet50-*.pth``.

    Raises:
        WeightsNotFoundError: the file does not exist.
        MangacolorError: unreadable file, or its tensors do not fit the encoder.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(
            f"{path}: encoder weights not found (pass the Danbooru resnet50-13306192.pth "
            "or torchvision's resnet50-*.pth)"
        )
    from mangacolor.checkpoint import load_torch_weights

    state = load_torch_weights(path, "encoder weights")
    body = _body_state(state, path)
    encoder: nn.Module = generator.encoder
    own = encoder.state_dict()
    missing = sorted(set(own) - set(body))
    bad = [k for k in own if k in body and tuple(body[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        detail = f"missing {missing[0]!r}" if missing else f"{bad[0]!r} has shape {tuple(body[bad[0]].shape)}"
        raise MangacolorError(
            f"{path}: does not fit this encoder ({detail}); pretrained weights need the default "
            "ResNet50 config (layers (3, 4, 6, 3), width 64)"
        )
    encoder.load_state_dict({k: body[k].to(own[k].dtype) for k in own})


def freeze_encoder(generator: nn.Module) -> None:
    """Train the decoder only: the encoder's weights and batch-norm statistics stay as loaded."""
    generator.encoder.requires_grad_(False)
    generator.encoder_frozen = True
    generator.encoder.eval()
