"""Apply a trained image-to-image network to pages: one array, or a whole folder tree.

:class:`Translator` runs a model at a working resolution (long side ``size``, padded to the
model's size multiple, padding removed afterwards) and returns the result at the input's full
resolution: for colorizers the predicted chroma is upsampled and merged with the page's own
luminance (see :mod:`mangacolor.color`), so lines stay exactly as sharp as the input. Ink pages
(line art, screentone), whose pixels are black ink or white paper that the colour must replace,
are instead multiplied onto the upsampled colour, the way a colourist lays a line layer over flat
colour; ``merge="auto"`` (the default) tells the two kinds of page apart with
:func:`mangacolor.color.page_kind`. :class:`PageRouter` puts two colorizers behind the same
interface and sends each line-art page to the second one.

:func:`run_folder` is the batch engine shared by ``colorize`` and ``scan``: pages are decoded and
resized by background threads while the model runs, batches group pages of equal working shape,
results are encoded and written atomically by a second thread pool, and every queue is bounded
so memory does not grow with the number of pages.
"""

from __future__ import annotations

import collections
import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from mangacolor import checkpoint
from mangacolor.checkpoint import CheckpointInfo
from mangacolor.color import MERGE_MODES, is_color, luma, merge_luminance, page_kind
from mangacolor.errors import CheckpointError, ImageReadError, ImageWriteError, MangacolorError
from mangacolor.imageio import (
    IMAGE_EXTENSIONS,
    PendingRecord,
    RecordMismatch,
    SameStemFinder,
    atomic_write_bytes,
    encode_image,
    folder_error_reason,
    keep_record,
    list_images,
    read_image,
    real_path,
    record_quality,
    to_tensor,
    to_uint8,
)
from mangacolor.report import BatchReport, FileResult
from mangacolor.training.loop import resolve_device

DEFAULT_SIZE = 512


MIN_SIDE = 32
"""Pages are padded (edge replicate) to at least this many pixels a side before the network sees them:
reflection padding and instance norm need a few pixels at the coarsest scale."""


def default_model_path(name: str = "default.safetensors", env: str = "MANGACOLOR_DEFAULT_MODEL") -> Path:
    """The checkpoint shipped in ``assets/`` (next to the package in a source checkout); ``$env`` overrides it."""
    given = os.environ.get(env)
    if given:
        return Path(given)
    here = Path(__file__).resolve().parent
    for candidate in (here / "assets" / name, here.parent / "assets" / name):
        if candidate.exists():
            return candidate
    return here.parent / "assets" / name


def default_line_model_path() -> Path | None:
    """The default's line-art model (``assets/default_lines.safetensors``), or ``None`` when none is shipped."""
    path = default_model_path("default_lines.safetensors", "MANGACOLOR_DEFAULT_LINE_MODEL")
    return path if path.exists() else None


@dataclass
class Prepared:
    """A page ready for the network."""

    full: np.ndarray  # uint8 (H, W) or (H, W, 3): the page at full resolution, in the model's input mode
    tensor: torch.Tensor  # float (1, C, h_pad, w_pad) in [-1, 1]
    valid: tuple[int, int]  # (h, w) of the resized page inside the padded tensor
    merge: str = "none"  # how this page's outputs come back to full resolution (``auto`` resolved)
    route: int = 0  # which of a PageRouter's models takes the page (0: main, 1: line art)


class Translator:
    """A loaded image-to-image model (colorizer or scan generator) and how to apply it.

    Args:
        model: a registered model in eval mode.
        info: its checkpoint metadata.
        device: where to run.
        size: working resolution (long side); ``None`` uses the size the model was trained at
            (checkpoint provenance ``working_size``) or 512; 0 runs at each page's own resolution.
        merge: how colorizer outputs come back to full resolution. ``luma`` keeps the page's
            own luminance and takes only the chroma from the network (greyscale pages);
            ``multiply`` multiplies the page onto the network's colour resized (line art,
            screentone: crisp ink over colour that also fills the white paper); ``auto`` picks
            ``multiply`` for pages that :func:`~mangacolor.color.page_kind` calls ink on paper,
            else ``luma``;
            ``none`` returns the network's output resized. Scan generators always use ``none``.
        half: run in float16 (CUDA only).
        reference: ``uint8`` (H, W, 3) style image, required by reference-style models.
    """

    def __init__(
        self,
        model: nn.Module,
        info: CheckpointInfo,
        device: torch.device,
        size: int | None = None,
        merge: str = "auto",
        half: bool = False,
        reference: np.ndarray | None = None,
    ) -> None:
        if merge not in MERGE_MODES:
            raise MangacolorError(f"--merge must be one of {MERGE_MODES}. Got {merge!r}")
        self.info = info
        self.device = device
        self.half = half and device.type == "cuda"
        self.model = model.to(device).eval()
        if self.half:
            self.model.half()
        self.multiple = int(getattr(model, "size_multiple", 1))
        if size is None:  # the scale the model was trained at; 0 means each page's own resolution
            stored = info.provenance.get("working_size")
            if stored is not None and (type(stored) is not int or stored < 0):
                raise CheckpointError(
                    info.path, f"provenance working_size {stored!r} is not a size in pixels; pass --size"
                )
            size = DEFAULT_SIZE if stored is None else stored
        if 0 < size < self.multiple:
            raise MangacolorError(f"--size {size} is smaller than this model's size multiple {self.multiple}")
        self.size = size
        self.in_channels = int(getattr(model.config, "in_channels", 1))
        self.num_outputs = int(getattr(model, "num_outputs", 1))
        self.out_channels = int(getattr(model.config, "out_channels", 3))
        self.merge = merge if self.out_channels == 3 else "none"
        self.reference: torch.Tensor | None = None
        self.reference_digest: str | None = None  # names the style image in an output folder's record
        if getattr(model, "needs_reference", False):
            if reference is None:
                raise MangacolorError(
                    f"{info.path}: this {info.arch} model colours in the style of a reference image; "
                    "pass --reference IMAGE"
                )
            ref = reference if reference.ndim == 3 else cv2.cvtColor(reference, cv2.COLOR_GRAY2RGB)
            shape = "x".join(map(str, ref.shape)).encode()
            self.reference_digest = hashlib.sha256(shape + np.ascontiguousarray(ref).tobytes()).hexdigest()[:16]
            side = self.size or DEFAULT_SIZE  # the style is pooled: any size works; size 0 is per page
            ref = cv2.resize(ref, (side, side), interpolation=cv2.INTER_AREA)
            self.reference = to_tensor(ref).to(device)  # (1, 3, size, size)
            if self.half:
                self.reference = self.reference.half()
        elif reference is not None:
            raise MangacolorError(
                f"{info.path}: --reference is for reference-style models; this {info.arch} model takes none"
            )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        size: int | None = None,
        merge: str = "auto",
        half: bool | None = None,
        reference: np.ndarray | None = None,
    ) -> Translator:
        """Load a checkpoint; ``half=None`` means float16 on CUDA, float32 on CPU."""
        dev = resolve_device(device)
        model, info = checkpoint.load(path, device="cpu")
        half = dev.type == "cuda" if half is None else half
        return cls(model, info, dev, size=size, merge=merge, half=half, reference=reference)

    @property
    def input_mode(self) -> str:
        """Image mode the network reads: ``L`` (greyscale) or ``RGB``."""
        return "L" if self.in_channels == 1 else "RGB"

    def prepare(self, image: np.ndarray, kind: str | None = None) -> Prepared:
        """Resize a page so its long side is ``size`` and pad it (edge replicate) to the size multiple.

        ``kind`` is the page's :func:`~mangacolor.color.page_kind` when the caller knows it already.
        """
        full = (
            luma(image)
            if self.in_channels == 1
            else (image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB))
        )
        h, w = full.shape[:2]
        scale = self.size / max(h, w) if self.size else 1.0  # size 0: full resolution
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        small = (
            full
            if (rh, rw) == (h, w)
            else cv2.resize(full, (rw, rh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        )
        m = self.multiple
        least = -(-MIN_SIDE // m) * m  # a sliver of a page (3 x 500) is padded up to a size every network takes
        ph, pw = max(-rh % m, least - rh), max(-rw % m, least - rw)
        if ph or pw:
            small = cv2.copyMakeBorder(small, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
        merge = self.merge
        if merge == "auto":
            kind = kind or page_kind(full if full.ndim == 2 else luma(full))
            merge = "luma" if kind == "shaded" else "multiply"
        # tensor: (1, C, rh + ph, rw + pw)
        return Prepared(full=full, tensor=to_tensor(small), valid=(rh, rw), merge=merge)

    @torch.no_grad()
    def run(self, batch: list[Prepared]) -> list[list[np.ndarray]]:
        """Run the network on pages of one padded shape; return each page's outputs at working size."""
        x = torch.cat([p.tensor for p in batch]).to(self.device)  # (B, C, H, W)
        x = x.half() if self.half else x
        if self.reference is not None:
            y = self.model(x, self.reference.expand(x.shape[0], -1, -1, -1)).float()  # (B, out * k, H, W)
        else:
            y = self.model(x).float()  # (B, out * k, H, W)
        y = y.reshape(y.shape[0], self.num_outputs, self.out_channels, *y.shape[2:])  # (B, k, out, H, W)
        results = []
        for i, p in enumerate(batch):
            h, w = p.valid
            results.append([to_uint8(y[i, k, :, :h, :w]) for k in range(self.num_outputs)])
        return results

    def finish(self, prepared: Prepared, output: np.ndarray) -> np.ndarray:
        """Bring one working-size output back to the page's full resolution."""
        h, w = prepared.full.shape[:2]
        if prepared.merge == "none":
            return output if output.shape[:2] == (h, w) else cv2.resize(output, (w, h), interpolation=cv2.INTER_CUBIC)
        gray = prepared.full if prepared.full.ndim == 2 else luma(prepared.full)
        if prepared.merge == "luma":
            return merge_luminance(gray, output)
        return multiply_lines(gray, cv2.resize(output, (w, h), interpolation=cv2.INTER_CUBIC))

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Translate one ``uint8`` page ((H, W) or (H, W, 3)); returns the k outputs at full resolution."""
        prepared = self.prepare(image)
        return [self.finish(prepared, out) for out in self.run([prepared])[0]]


def multiply_lines(gray: np.ndarray, color: np.ndarray) -> np.ndarray:
    """``color * gray / 255``: a full-resolution line page laid over colour of the same size (a multiply layer).

    Args:
        gray: ``uint8`` (H, W) page.
        color: ``uint8`` (H, W, 3).
    """
    # round(color * gray / 255) per channel, in uint8 (255 is odd: no product lies half-way), as
    # ``(color * gray + 127) // 255`` in uint16 gives it, at a thirtieth of the time and a third of the memory
    return cv2.multiply(color, cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB), scale=1.0 / 255.0)


class PageRouter:
    """Two colorizers behind :class:`Translator`'s interface: line-art pages go to the second.

    Each page's :func:`~mangacolor.color.page_kind` picks its model: ``"lines"`` (strokes on paper)
    goes to ``lines``, shaded and screentoned pages to ``main``. Each model keeps its own working
    size and merge; :func:`run_folder` batches only pages bound for the same model.

    Args:
        main: the colorizer for shaded and screentoned pages.
        lines: the colorizer for line art.

    Raises:
        MangacolorError: one is not a colorizer, or they give different numbers of colourings per page.
    """

    def __init__(self, main: Translator, lines: Translator) -> None:
        for t in (main, lines):
            if t.info.task != "colorize":
                raise MangacolorError(f"{t.info.path}: a {t.info.task} model, not a colorizer")
        if main.num_outputs != lines.num_outputs:
            raise MangacolorError(
                f"{lines.info.path}: the line-art model gives {lines.num_outputs} colourings per page and "
                f"{main.info.path} gives {main.num_outputs}; give models with the same number"
            )
        self.translators = (main, lines)
        self.info = main.info
        self.in_channels = main.in_channels
        self.num_outputs = main.num_outputs
        self.pages = [0, 0]  # pages prepared for each model
        self._lock = threading.Lock()

    def prepare(self, image: np.ndarray) -> Prepared:
        """Tell line art from other pages and prepare the page for its model."""
        gray = luma(image)
        kind = page_kind(gray)
        route = int(kind == "lines")
        target = self.translators[route]
        prepared = target.prepare(gray if target.in_channels == 1 else image, kind=kind)  # luma taken once
        prepared.route = route
        with self._lock:
            self.pages[route] += 1
        return prepared

    def run(self, batch: list[Prepared]) -> list[list[np.ndarray]]:
        """Run one batch of pages bound for the same model (see :meth:`Translator.run`)."""
        routes = {p.route for p in batch}
        if len(routes) != 1:
            raise ValueError("a batch must hold pages for one model")
        return self.translators[routes.pop()].run(batch)

    def finish(self, prepared: Prepared, output: np.ndarray) -> np.ndarray:
        """Bring one working-size output back to full resolution with its model's merge."""
        return self.translators[prepared.route].finish(prepared, output)

    def __call__(self, image: np.ndarray) -> list[np.ndarray]:
        """Colorize one ``uint8`` page with the model its kind calls for."""
        prepared = self.prepare(image)
        return [self.finish(prepared, out) for out in self.run([prepared])[0]]


def load_colorizer(
    path: str | Path,
    line_model: str | Path | None = None,
    device: str = "auto",
    size: int | None = None,
    merge: str = "auto",
    half: bool | None = None,
    reference: np.ndarray | None = None,
) -> Translator | PageRouter:
    """Load a colorizer checkpoint, or two (``line_model`` for line-art pages) behind a :class:`PageRouter`.

    ``reference`` goes to whichever model is reference-style; it is an error when neither is.
    ``half=None`` means float16 on CUDA.

    Raises:
        MangacolorError: a checkpoint cannot be loaded, is not a colorizer, or the reference fits no model.
    """
    if line_model is None:
        return Translator.from_checkpoint(path, device=device, size=size, merge=merge, half=half, reference=reference)
    dev = resolve_device(device)
    half = dev.type == "cuda" if half is None else half
    loaded = [checkpoint.load(p, device="cpu") for p in (path, line_model)]
    wants = [bool(getattr(model, "needs_reference", False)) for model, _ in loaded]
    if reference is not None and not any(wants):
        raise MangacolorError(
            f"{path}, {line_model}: --reference is for reference-style models; neither model takes one"
        )
    main, lines = (
        Translator(model, info, dev, size=size, merge=merge, half=half, reference=reference if want else None)
        for (model, info), want in zip(loaded, wants, strict=True)
    )
    return PageRouter(main, lines)


@dataclass
class FolderOptions:
    """How :func:`run_folder` maps inputs to outputs and treats existing files.

    Attributes:
        overwrite: redo pages whose outputs exist (default: skip them, so runs resume).
        force: translate pages that are already in colour instead of copying them through.
        candidates: write every output of a multi-output model (``name_c0``, ``name_c1``, ...).
        output_format: ``same`` keeps each input's ending; else ``png``, ``jpg`` or ``webp``.
        quality: JPEG / WebP quality.
        batch_size: pages per forward pass.
        io_workers: threads decoding pages and threads encoding results.
        copy_color: detect colour inputs and copy them through (colorizers).
        max_pixels: refuse inputs with more pixels (decompression bombs); 0: no limit.
        update: redo every page when the output folder was made by another model or other settings,
            resume it otherwise (re-running a pipeline after its model was trained further).
    """

    overwrite: bool = False
    force: bool = False
    candidates: bool = False
    output_format: str = "same"
    quality: int = 95
    batch_size: int = 1
    io_workers: int = 2
    copy_color: bool = True
    max_pixels: int = 150_000_000
    update: bool = False


@dataclass
class _Job:
    src: Path
    outputs: list[Path]
    prepared: Prepared | None = None
    error: str = ""
    copy: bool = False
    dpi: tuple[float, float] | None = None  # the page's print resolution, given to its outputs


def output_paths(src: Path, in_root: Path, out_root: Path, options: FolderOptions, num_outputs: int) -> list[Path]:
    """Where the outputs of ``src`` go: ``out_root`` mirrors the tree under ``in_root``.

    A page given alone goes to ``out_root`` itself when that names an image file (``.png``, ...;
    ``--format`` does not change a name the user gave), else into the folder ``out_root``. With
    ``--format same``, a page in a format that cannot be written (``.gif``) is written as ``.png``.
    """
    named = names_output_file(in_root, out_root)
    target = out_root if named else out_root / (src.name if in_root.is_file() else src.relative_to(in_root))
    if options.output_format != "same" and not named:  # a file named by the user keeps its ending
        target = target.with_suffix("." + options.output_format.lower().lstrip("."))
    elif target.suffix.lower() not in IMAGE_EXTENSIONS:
        target = target.with_suffix(".png")
    if options.candidates and num_outputs > 1:
        return [target.with_name(f"{target.stem}_c{k}{target.suffix}") for k in range(num_outputs)]
    return [target]


def names_output_file(in_root: Path, out_root: Path) -> bool:
    """Whether ``out_root`` is taken as the output file of the single page ``in_root`` (else a folder)."""
    return in_root.is_file() and _names_image_file(out_root)


def _names_image_file(path: Path) -> bool:
    """Whether an output path given for a single page names a file (by its ending) rather than a folder."""
    return not path.is_dir() and path.suffix.lower() in IMAGE_EXTENSIONS | _READ_ONLY_EXTENSIONS


_READ_ONLY_EXTENSIONS = frozenset({".gif", ".ico", ".psd", ".jp2", ".tga", ".pbm", ".pgm", ".ppm"})
"""Image endings mangacolor cannot write: an output path with one is refused, not made a folder."""


OUTPUT_MARK = ".mangacolor-output"
"""Hidden file marking an output folder made inside its input folder, so a rerun knows the images in it
are outputs (left out of the input) and not pages of the user's."""


def _output_inside_input(in_root: Path, out_root: Path) -> bool:
    """Whether the output folder lies strictly inside the input folder."""
    return in_root.is_dir() and real_path(in_root) in real_path(out_root).parents


def _check_roots(in_root: Path, out_root: Path) -> None:
    """Refuse, before any work, an output that would overwrite the input or cannot be written.

    Makes the output folder (the parent of an output file), checks it takes a file, and marks an
    output folder inside the input (:data:`OUTPUT_MARK`); an existing folder inside the input that
    holds images and no mark is the user's and is refused, as its pages would be left out of the
    input and could be overwritten.

    Raises:
        MangacolorError: the output is the input page or folder, holds pages of the input, names a
            format that cannot be written, or cannot be created or written.
    """
    named = False
    if in_root.is_file():
        if real_path(out_root) == real_path(in_root) or (
            out_root.is_dir() and real_path(out_root / in_root.name) == real_path(in_root)
        ):
            raise MangacolorError(f"{in_root}: the output {out_root} would overwrite this page; choose another output")
        named = _names_image_file(out_root)
        if named and out_root.suffix.lower() not in IMAGE_EXTENSIONS:
            raise MangacolorError(
                f"{out_root}: cannot write {out_root.suffix} images; use .png, .jpg, .webp, .bmp or .tif"
            )
    elif real_path(out_root) == real_path(in_root):
        raise MangacolorError(f"{out_root}: the output folder is the input folder; choose another output folder")
    if not named and out_root.exists() and not out_root.is_dir():
        raise MangacolorError(f"{out_root}: a file is in the way of the output folder")
    inside = _output_inside_input(in_root, out_root)
    if inside and out_root.is_dir() and not (out_root / OUTPUT_MARK).exists():
        try:
            holds_pages = next(iter(list_images(out_root, on_error=lambda *_: None)), None) is not None
        except ImageReadError:  # an unlistable folder: the write check below names the reason
            holds_pages = False
        if holds_pages:
            raise MangacolorError(
                f"{out_root}: this folder inside the input holds pages of its own, which would be left out "
                "and could be overwritten; choose an output folder outside the input, or a new one"
            )
    folder = out_root.parent if named else out_root
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
        if inside:
            (out_root / OUTPUT_MARK).touch()
    except OSError as exc:
        raise MangacolorError(f"{folder}: cannot write the output folder: {folder_error_reason(exc)}") from None


def _walk(in_root: Path, out_root: Path, on_error: Callable[[Path, str], None]) -> Iterator[Path]:
    """Input pages, leaving out anything that lies in the output folder: an output folder inside the
    input, or a linked folder of the input that leads into it (unless the input itself lies there)."""
    out_real = real_path(out_root)
    input_in_output = out_real == real_path(in_root) or out_real in real_path(in_root).parents
    for path in list_images(in_root, on_error=on_error):
        if not input_in_output and out_real in real_path(path).parents:
            continue
        yield path


def _record_run(translator: Translator | PageRouter, out_root: Path, options: FolderOptions) -> PendingRecord | None:
    """Refuse to add pages made by another model or with other settings to an output folder (a re-run
    skips the pages done, so they would mix); record these (``.mangacolor-TASK.json``). Returns the
    record still to write, if any: for a new folder, to write before its first page; with
    ``overwrite`` or ``update`` into a folder made otherwise, once the batch has redone every page (see
    :func:`~mangacolor.imageio.keep_record`).

    Raises:
        MangacolorError: the folder holds pages of another model or other settings, and neither
            ``overwrite`` nor ``update``.
    """
    models = translator.translators if isinstance(translator, PageRouter) else (translator,)
    record = {
        "models": [f"{t.info.path.name} ({t.info.fingerprint})" for t in models],
        "size": [t.size for t in models],
        "merge": [t.merge for t in models],
        "format": options.output_format,
        "quality": record_quality(options.output_format, options.quality),
        "reference": [t.reference_digest for t in models],  # the style image of reference-style models
        "candidates": options.candidates,
        "force": options.force,
    }

    def normalize(stored: dict[str, Any]) -> dict[str, Any]:  # a record older than these keys is taken to agree
        return {"quality": record["quality"], "reference": record["reference"], **stored}

    try:
        path = out_root / f".mangacolor-{translator.info.task}.json"
        return keep_record(path, record, options.overwrite or options.update, normalize=normalize)
    except RecordMismatch as exc:
        changed, stored = exc.changed, exc.stored

        def show(values: dict[str, Any]) -> str:
            parts = []
            for key in changed:
                value = values.get(key)
                parts.append(f"{key} {' + '.join(map(str, value)) if isinstance(value, list) else value}")
            return "; ".join(parts)

        raise MangacolorError(
            f"{out_root}: its pages were made with {show(stored)}, not {show(record)}; a re-run skips "
            "the pages done, so the folder would mix the two. Use --update (or --overwrite) to redo them all, "
            "or another output folder"
        ) from None


def count_pages(in_root: str | Path, out_root: str | Path) -> int:
    """How many pages :func:`run_folder` will see (for a progress bar's total); a listing, no decoding."""
    in_root, out_root = Path(in_root), Path(out_root)
    try:
        return sum(1 for _ in _walk(in_root, out_root, lambda *_: None))
    except (ImageReadError, OSError):
        return 0


def _write(dst: Path, data: bytes) -> None:
    """Atomically write an output file.

    Raises:
        ImageWriteError: the file or its folder cannot be written.
    """
    try:
        atomic_write_bytes(dst, data)
    except OSError as exc:
        raise ImageWriteError(dst, f"cannot write: {folder_error_reason(exc)}") from None


def run_folder(
    translator: Translator | PageRouter,
    in_root: str | Path,
    out_root: str | Path,
    options: FolderOptions | None = None,
    on_result: Callable[[FileResult], None] | None = None,
) -> BatchReport:
    """Translate every page under ``in_root`` into ``out_root`` (mirrored tree).

    Pages whose outputs all exist are skipped unless ``overwrite``; a page that cannot be read or
    written is recorded as failed with its reason and the batch goes on.

    Args:
        translator: the loaded model.
        in_root: a page or a folder (searched recursively).
        out_root: output folder (or output file when ``in_root`` is a file).
        options: see :class:`FolderOptions`.
        on_result: called with each page's outcome as soon as it is known (progress display).
    """
    options = options or FolderOptions()
    if options.output_format not in ("same", "png", "jpg", "jpeg", "webp"):
        raise MangacolorError(f"--format must be same, png, jpg or webp. Got {options.output_format!r}")
    in_root, out_root = Path(in_root), Path(out_root)
    if not in_root.exists():
        raise MangacolorError(f"{in_root}: no such file or directory")
    _check_roots(in_root, out_root)
    pending = _record_run(translator, out_root, options) if not names_output_file(in_root, out_root) else None
    updating = pending is not None and not pending.new_folder
    if updating:  # the folder was made otherwise: every page is redone
        options = replace(options, overwrite=True)
    report = BatchReport()
    lock = threading.Lock()
    planned: dict[str, list[Path]] = {}  # updating: each page's outputs, to find the failed pages' old ones
    kept_old: list[str] = []  # updating: failed pages whose outputs from before are still there

    def record(result: FileResult) -> None:
        old = updating and result.status == "failed" and any(p.exists() for p in planned.get(result.path, ()))
        with lock:
            report.add(result)
            if old:
                kept_old.append(result.path)
        if on_result is not None:
            on_result(result)

    def load(job: _Job) -> _Job:
        try:
            meta: dict[str, Any] = {}
            image = read_image(job.src, mode=None, max_pixels=options.max_pixels or None, meta=meta)
            job.dpi = meta["dpi"]
            if options.copy_color and translator.in_channels == 1 and not options.force and is_color(image):
                job.copy = True
            else:
                job.prepared = translator.prepare(image)
        except ImageReadError as exc:
            job.error = exc.reason
        except Exception as exc:  # one odd page must not end the batch
            first_line = (str(exc).splitlines() or [""])[0]
            job.error = f"cannot process: {type(exc).__name__}: {first_line}"
        return job

    def write(job: _Job, outputs: list[np.ndarray] | None) -> None:
        try:
            if pending is not None and pending.new_folder:
                pending()  # a new folder's record, before its first page
            if job.copy:
                dst = job.outputs[0]
                if dst.suffix.lower() == job.src.suffix.lower():
                    data = job.src.read_bytes()
                else:
                    page = read_image(job.src, mode="RGB", max_pixels=None)
                    data = encode_image(page, dst.suffix, options.quality, dpi=job.dpi)
                _write(dst, data)
                result = FileResult(str(job.src), "copied", "already in colour", [str(dst)])
            else:
                assert outputs is not None and job.prepared is not None
                written = []
                for dst, out in zip(job.outputs, outputs, strict=True):
                    full = translator.finish(job.prepared, out)
                    _write(dst, encode_image(full, dst.suffix, options.quality, dpi=job.dpi))
                    written.append(str(dst))
                result = FileResult(str(job.src), "done", outputs=written)
        except (ImageWriteError, ImageReadError) as exc:
            result = FileResult(str(job.src), "failed", str(exc))
        except Exception as exc:  # one odd page must not end the batch
            first_line = (str(exc).splitlines() or [""])[0]
            result = FileResult(str(job.src), "failed", f"cannot write output: {type(exc).__name__}: {first_line}")
        record(result)  # outside the try: a failing progress callback must not count a page twice

    same_stem = SameStemFinder() if options.output_format != "same" and in_root.is_dir() else None

    def unreadable_folder(folder: Path, reason: str) -> None:
        record(FileResult(str(folder), "failed", reason))

    def jobs() -> Iterator[_Job]:
        for src in _walk(in_root, out_root, unreadable_folder):
            outs = output_paths(
                src, in_root, out_root, options, 1 if not options.candidates else translator.num_outputs
            )
            if updating:
                planned[str(src)] = outs
            first = same_stem.first(src) if same_stem is not None else src
            if first != src:
                reason = f"same output as {first.name} (names differ only in their ending); rename one"
                record(FileResult(str(src), "failed", reason))
                continue
            folder = next((p for p in outs if p.is_dir()), None)
            if folder is not None:
                record(FileResult(str(src), "failed", f"output {folder} is a folder"))
                continue
            if not options.overwrite and all(p.exists() for p in outs):
                record(FileResult(str(src), "skipped", "output exists (use --overwrite to redo)"))
                continue
            yield _Job(src, outs)

    prefetch = max(2, options.batch_size * 2)
    readers = ThreadPoolExecutor(max_workers=max(1, options.io_workers), thread_name_prefix="mangacolor-read")
    writers = ThreadPoolExecutor(max_workers=max(1, options.io_workers), thread_name_prefix="mangacolor-write")
    pending_writes: collections.deque[Future] = collections.deque()
    write_slots = threading.BoundedSemaphore(prefetch)

    def submit_write(job: _Job, outputs: list[np.ndarray] | None) -> None:
        write_slots.acquire()  # bounded: the model waits for the disk instead of piling up results
        fut = writers.submit(write, job, outputs)
        fut.add_done_callback(lambda _: write_slots.release())
        pending_writes.append(fut)
        while pending_writes and pending_writes[0].done():  # keep only unfinished writes
            pending_writes.popleft().result()

    def run_batch(batch: list[_Job]) -> None:
        try:
            outs = translator.run([j.prepared for j in batch])
        except (RuntimeError, ValueError, MemoryError) as exc:  # out of memory on a huge page, a page too
            reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__  # small for a norm layer, ...
            for job in batch:
                record(FileResult(str(job.src), "failed", f"model failed: {reason}"))
            return
        for job, out in zip(batch, outs, strict=True):
            chosen = out if options.candidates else out[:1]
            submit_write(job, chosen)

    try:
        in_flight: queue.Queue[Future] = queue.Queue()
        source = jobs()
        exhausted = False

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and in_flight.qsize() < prefetch:
                job = next(source, None)
                if job is None:
                    exhausted = True
                    return
                in_flight.put(readers.submit(load, job))

        refill()
        # pages wait in one batch per (model, padded shape); at most ``prefetch`` wait in all, so a
        # folder of mixed shapes or page kinds still fills batches without holding every page
        batches: dict[tuple, list[_Job]] = {}
        while not in_flight.empty():
            job = in_flight.get().result()
            refill()
            if job.error:
                record(FileResult(str(job.src), "failed", job.error))
                continue
            if job.copy:
                if not options.overwrite and job.outputs[0].exists():  # a copy is one file, even with candidates
                    record(FileResult(str(job.src), "skipped", "output exists (use --overwrite to redo)"))
                else:
                    submit_write(job, None)
                continue
            assert job.prepared is not None
            key = (job.prepared.route, tuple(job.prepared.tensor.shape))
            batch = batches.setdefault(key, [])
            batch.append(job)
            if len(batch) >= options.batch_size:
                run_batch(batches.pop(key))
            elif sum(map(len, batches.values())) > prefetch:  # the oldest partial batch goes now
                run_batch(batches.pop(next(iter(batches))))
        for batch in batches.values():
            run_batch(batch)
        while pending_writes:
            pending_writes.popleft().result()
    finally:
        readers.shutdown(wait=True, cancel_futures=True)
        writers.shutdown(wait=True)
    if updating and kept_old:  # the record would call their old outputs done
        report.notes.append(
            f"{len(kept_old)} failed page(s) keep their outputs made by the earlier model or settings, so "
            f"{out_root} still records those: run again with --update once they can be done, or delete them"
        )
    elif updating:
        pending()  # the batch went through: the record names what made the pages now
    return report
