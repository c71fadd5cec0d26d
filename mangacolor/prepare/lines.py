"""Line art from colour images: three classic recipes plus plain luma.

* ``blur`` — the pencil-sketch recipe: greyscale, invert, Gaussian blur, colour dodge
  (``gray / (1 - blur(inverted))``). Flat areas dodge to white; edges stay as soft pencil strokes.
* ``sketch`` — the high-pass used to prepare sketchKeras's input (lllyasviel, 2017): per channel
  the difference between a pixel and its Gaussian surround (sigma 3), normalised by the global
  maximum, the maximum over channels, weak responses clipped, inverted to dark lines on white. We
  keep the lobe where a pixel is *darker* than its surround (``blur(c) - c``), so a stroke gives one
  line on the stroke instead of two halos beside it.
* ``xdog`` — the eXtended Difference of Gaussians (Winnemöller, Kyprianidis, Olsen, "XDoG: An
  eXtended difference-of-Gaussians compendium", 2012): ``D = G_sigma(I) - tau * G_{k sigma}(I)``
  on luma in [0, 1], soft-thresholded ``T = 1 if D >= epsilon else 1 + tanh(phi * (D - epsilon))``,
  optionally binarised.
* ``gray`` — BT.601 luma (greyscale pages look closer to manga than pure lines).

Every method maps ``uint8`` (H, W, 3) RGB to ``uint8`` (H, W), dark lines on white (255 = paper),
same size as the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from mangacolor.report import BatchReport, FileResult

if TYPE_CHECKING:
    from mangacolor.prepare.runner import RunOptions

METHODS = ("blur", "sketch", "xdog")
"""Line-extraction methods (``--method``)."""

OUTPUT_MODES = (*METHODS, "gray")
"""Everything :func:`extract_lines` can produce: the line methods plus ``gray`` (luma)."""

MAX_SIGMA = 100.0
"""Largest Gaussian sigma (px) a method accepts: wider strokes than this are no longer line art."""

BLUR_DEFAULTS = {"sigma": 4.0}
"""``blur``: sigma of the Gaussian blur of the inverted greyscale (larger: softer, wider strokes)."""

SKETCH_DEFAULTS = {"sigma": 3.0, "threshold": 0.1}
"""``sketch``: sigma of the surround; responses below ``threshold`` x the global maximum become paper."""

XDOG_DEFAULTS = {"sigma": 0.8, "k": 1.6, "tau": 0.98, "phi": 200.0, "epsilon": 0.0, "threshold": None}
"""``xdog``: ``sigma`` of the narrow Gaussian, ``k`` ratio of the wide one, ``tau`` weight of the wide
one, ``phi`` steepness of the soft threshold, ``epsilon`` its level (luma in [0, 1]); ``threshold``
in (0, 1) binarises the result (``None``: keep the soft tones)."""


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim not in (2, 3) or (rgb.ndim == 3 and rgb.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W, 3) RGB. Got {rgb.dtype} {rgb.shape}")
    return rgb


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)  # (H, W)


def gray(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of ``uint8`` (H, W, 3) RGB as ``uint8`` (H, W)."""
    return _gray(_check_rgb(rgb))


def lines_blur(rgb: np.ndarray, sigma: float = BLUR_DEFAULTS["sigma"]) -> np.ndarray:
    """Pencil sketch by colour dodge: ``gray * 255 / (255 - blur(255 - gray))``.

    Args:
        rgb: ``uint8`` (H, W, 3).
        sigma: Gaussian sigma in pixels.

    Returns:
        ``uint8`` (H, W), dark strokes on white.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0. Got {sigma}")
    g = _gray(_check_rgb(rgb))
    blurred = cv2.GaussianBlur(cv2.bitwise_not(g), (0, 0), sigma)  # blur of the inverted greyscale
    # Colour dodge; cv2.divide saturates at 255 and gives 0 for a zero divisor, where the result is paper.
    out = cv2.divide(g, cv2.bitwise_not(blurred), scale=255)
    out[blurred == 255] = 255
    return out


def lines_sketch(
    rgb: np.ndarray, sigma: float = SKETCH_DEFAULTS["sigma"], threshold: float = SKETCH_DEFAULTS["threshold"]
) -> np.ndarray:
    """sketchKeras-style high-pass lines.

    Args:
        rgb: ``uint8`` (H, W, 3).
        sigma: Gaussian sigma of the surround.
        threshold: responses weaker than this fraction of the strongest one become paper (0..1).

    Returns:
        ``uint8`` (H, W), dark lines on white; a flat image is all white.
    """
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0. Got {sigma}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1). Got {threshold}")
    rgb = _check_rgb(rgb)
    blurred = cv2.GaussianBlur(rgb, (0, 0), sigma)
    response = cv2.subtract(blurred, rgb)  # (H, W[, 3]) uint8: how much darker than the surround, >= 0
    if response.ndim == 3:
        r, g, b = cv2.split(response)
        response = cv2.max(cv2.max(r, g), b)  # (H, W): max over channels
    peak = int(response.max())
    if peak == 0:
        return np.full(rgb.shape[:2], 255, np.uint8)
    # Normalise by the global maximum, clip weak responses, invert -- all as one 256-entry table.
    x = np.arange(256, dtype=np.float32) / peak
    table = np.where(x < threshold, 255.0, np.clip(255.0 * (1.0 - x), 0.0, 255.0))
    return cv2.LUT(response, np.rint(table).astype(np.uint8))


def lines_xdog(
    rgb: np.ndarray,
    sigma: float = XDOG_DEFAULTS["sigma"],
    k: float = XDOG_DEFAULTS["k"],
    tau: float = XDOG_DEFAULTS["tau"],
    phi: float = XDOG_DEFAULTS["phi"],
    epsilon: float = XDOG_DEFAULTS["epsilon"],
    threshold: float | None = XDOG_DEFAULTS["threshold"],
) -> np.ndarray:
    """eXtended Difference of Gaussians on luma.

    Args:
        rgb: ``uint8`` (H, W, 3).
        sigma: sigma of the narrow Gaussian in pixels.
        k: the wide Gaussian's sigma is ``k * sigma``.
        tau: weight of the wide Gaussian (just below 1 keeps flat areas white).
        phi: steepness of the soft threshold.
        epsilon: threshold level of ``D`` (luma scaled to [0, 1]).
        threshold: binarise the soft result at this level in (0, 1); ``None`` keeps it soft.

    Returns:
        ``uint8`` (H, W), dark lines on white.
    """
    if sigma <= 0 or k <= 0:
        raise ValueError(f"sigma and k must be > 0. Got sigma={sigma}, k={k}")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1). Got {threshold}")
    luma = _gray(_check_rgb(rgb)).astype(np.float32) * (1.0 / 255.0)  # (H, W) in [0, 1]
    narrow = cv2.GaussianBlur(luma, (0, 0), sigma)
    wide = cv2.GaussianBlur(luma, (0, 0), sigma * k)
    d = narrow - np.float32(tau) * wide
    soft = np.where(d >= epsilon, np.float32(1.0), 1.0 + np.tanh(np.float32(phi) * (d - np.float32(epsilon))))
    if threshold is not None:
        return np.where(soft >= threshold, np.uint8(255), np.uint8(0))
    return np.clip(np.rint(soft * 255.0), 0, 255).astype(np.uint8)


_FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "blur": lines_blur,
    "sketch": lines_sketch,
    "xdog": lines_xdog,
    "gray": gray,
}

DEFAULTS: dict[str, dict[str, Any]] = {
    "blur": BLUR_DEFAULTS,
    "sketch": SKETCH_DEFAULTS,
    "xdog": XDOG_DEFAULTS,
    "gray": {},
}
"""Each output mode's parameters and their defaults."""


def _with_defaults(method: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Every parameter of ``method``: those given, the others at their defaults (as floats, as given)."""
    defaults = DEFAULTS.get(method, {}) if isinstance(method, str) else {}
    full = {**defaults, **params}
    return {k: float(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in full.items()}


def extract_lines(rgb: np.ndarray, method: str = "sketch", **params: Any) -> np.ndarray:
    """Line art from a colour image.

    Args:
        rgb: ``uint8`` (H, W, 3) RGB (a greyscale (H, W) array is accepted too).
        method: one of :data:`METHODS`, or ``gray`` for plain luma.
        **params: the method's parameters (see :data:`DEFAULTS`); omitted ones take their defaults.

    Returns:
        ``uint8`` (H, W), dark lines on white (255 = paper), same height and width as ``rgb``.

    Raises:
        ValueError: unknown method or parameter, bad parameter value, or not a uint8 RGB image.
    """
    if method not in _FUNCTIONS:
        raise ValueError(f"method must be one of {OUTPUT_MODES}. Got {method!r}")
    unknown = set(params) - set(DEFAULTS[method])
    if unknown:
        allowed = ", ".join(DEFAULTS[method]) or "none"
        raise ValueError(f"{method!r} takes no parameter {', '.join(sorted(unknown))} (it takes: {allowed})")
    for name, value in params.items():
        if value is not None and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number. Got {value}")
    widest = params.get("sigma", DEFAULTS[method].get("sigma", 0.0)) * params.get("k", DEFAULTS[method].get("k", 1.0))
    if widest > MAX_SIGMA:
        raise ValueError(f"the widest Gaussian's sigma must be at most {MAX_SIGMA:g} px. Got {widest:g}")
    return _FUNCTIONS[method](rgb, **params)


@dataclass(frozen=True)
class LinesConfig:
    """One ``prepare lines`` setting: a method and its parameters (picklable for worker processes)."""

    method: str = "sketch"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        extract_lines(np.full((8, 8, 3), 255, np.uint8), self.method, **self.params)  # validate early

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return extract_lines(rgb, self.method, **self.params)


def lines_folder(
    input_root: str | Path,
    output_root: str | Path,
    config: LinesConfig | None = None,
    options: RunOptions | None = None,
    output_format: str = "png",
    quality: int = 95,
    on_result: Callable[[FileResult], None] | None = None,
) -> BatchReport:
    """``prepare lines``: line art (or luma) of every image under ``input_root`` into ``output_root``.

    Args:
        input_root: folder (searched recursively) or one image.
        output_root: output folder; the input tree is mirrored.
        config: method and parameters (default: ``sketch`` with its defaults).
        options: workers, shard, overwrite.
        output_format: ``png`` (default: lossless lines), ``jpg``, ``webp`` or ``same``.
        quality: JPEG / WebP quality.
        on_result: called with each file's outcome.
    """
    from mangacolor.imageio import record_quality
    from mangacolor.prepare.runner import ImageTask, RunOptions, close_record, image_jobs, open_output, run_jobs

    config, options = config or LinesConfig(), options or RunOptions()
    settings = {
        "method": config.method,
        "params": _with_defaults(config.method, config.params),  # --sigma 4 is blur's default: the same
        "format": output_format,
        "quality": record_quality(output_format, quality),
    }

    def normalize(stored: dict[str, Any]) -> dict[str, Any]:  # records that kept only the parameters given
        return {**stored, "params": _with_defaults(stored.get("method"), stored.get("params") or {})}

    recorded = open_output(input_root, output_root, "lines", settings, options.overwrite, normalize)
    jobs = image_jobs(input_root, output_root, output_format)
    report = run_jobs(jobs, ImageTask(config, read_mode="RGB", quality=quality), options, on_result)
    close_record(recorded, report, output_root, lambda: image_jobs(input_root, output_root, output_format))
    return report
