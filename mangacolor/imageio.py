"""The one place that reads and writes images.

Reading normalises every input the wild produces (EXIF orientation, palette, alpha, 16-bit,
CMYK, greyscale, bilevel) into ``uint8`` arrays, and refuses decompression bombs. Writing is
atomic: the image is encoded to a temporary file beside the target and renamed over it, so an
interrupted run never leaves a half-written image. Tensors for the networks are ``float32``
``(B, C, H, W)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import collections
import functools
import io
import json
import math
import os
import re
import stat
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mangacolor.errors import FileError, ImageReadError, ImageWriteError, MangacolorError

if TYPE_CHECKING:  # torch is imported where tensors are made: the prepare stages never load it
    import torch

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
"""File name endings treated as images when walking a directory (compared lower-cased)."""

DEFAULT_MAX_PIXELS = 150_000_000
"""Largest image (width x height) read by default: a 600 dpi double-page spread is ~35 MP."""

# Never decode a truncated file as if it were whole; we report it instead.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# We do our own, clearer, size check before decoding.
Image.MAX_IMAGE_PIXELS = None


def real_path(path: str | Path) -> Path:
    """``path`` with links resolved; a looping link is left as it is instead of raising (Python 3.11)."""
    return Path(os.path.realpath(path))


def folder_error_reason(exc: OSError) -> str:
    """Why a folder could not be created or used, in a few words: a file in the way, or the system's reason."""
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        return "a file is in the way"
    return exc.strerror or str(exc)


def check_regular_file(path: str | Path, error: type[FileError]) -> os.stat_result:
    """``os.stat(path)``, refusing what ``open`` would hang on (a named pipe) or cannot read as a file.

    Raises:
        FileNotFoundError, IsADirectoryError, OSError: as ``os.stat`` and ``open`` would.
        FileError: ``error`` for a pipe, socket or device.
    """
    info = os.stat(path)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(info.st_mode):  # opening a named pipe would wait for a writer for ever
        raise error(path, "not a regular file (a pipe, socket or device)")
    return info


def is_image_path(path: str | Path) -> bool:
    """Whether ``path`` has one of the image endings in :data:`IMAGE_EXTENSIONS`."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def list_images(
    root: str | Path,
    recursive: bool = True,
    on_error: Callable[[Path, str], None] | None = None,
) -> Iterator[Path]:
    """Yield the image files under ``root`` in a stable (sorted) order.

    A file ``root`` yields itself. Hidden files and folders (leading ``.``) and our own
    temporary files are skipped. The walk is lazy: memory does not grow with the folder size.
    Symbolic links to folders are followed, each real folder once (a link loop ends there).

    Args:
        root: a file or a folder.
        recursive: search sub-folders too.
        on_error: called with a sub-folder that cannot be listed and the reason, and the walk goes
            on; without it such a folder raises.

    Raises:
        ImageReadError: ``root`` does not exist or cannot be listed, or a sub-folder cannot be
            listed and no ``on_error`` was given.
    """
    root = Path(root)
    if root.is_file():
        yield root
        return
    if not root.is_dir():
        raise ImageReadError(root, "no such file or directory")
    yield from _walk_folder(root, recursive, on_error, set(), top=True)


def _walk_folder(
    folder: Path,
    recursive: bool,
    on_error: Callable[[Path, str], None] | None,
    seen: set[tuple[int, int]],
    top: bool = False,
) -> Iterator[Path]:
    """:func:`list_images` below ``folder``; ``seen`` holds the (device, inode) of folders visited."""
    try:
        info = folder.stat()
        key = (info.st_dev, info.st_ino)
        if key in seen:
            return
        seen.add(key)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        reason = f"cannot list folder: {exc.strerror or type(exc).__name__}"
        if on_error is None or top:
            raise ImageReadError(folder, reason) from None
        on_error(folder, reason)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:  # a dangling or looping link: not a folder; an image name is reported on read
            is_dir = False
        if is_dir:
            if recursive:
                yield from _walk_folder(Path(entry.path), recursive, on_error, seen)
        elif is_image_path(entry.name):
            yield Path(entry.path)


class SameStemFinder:
    """For an image, the image of the same folder that sorts first among those named like it but for the ending.

    Outputs of a changed format (``--format png``) of ``a.jpg`` and ``a.png`` would be one file.
    The folder listings behind the answers are kept for the last ``cache_size`` folders only, so
    memory does not grow with the number of files.
    """

    def __init__(self, cache_size: int = 64) -> None:
        self._cache: collections.OrderedDict[Path, dict[str, str]] = collections.OrderedDict()
        self._cache_size = cache_size

    def first(self, path: Path) -> Path:
        """The first image of ``path``'s folder (sorted by name) whose name stem is ``path``'s."""
        folder = path.parent
        stems = self._cache.get(folder)
        if stems is None:
            stems = {}
            try:
                names = sorted(e.name for e in os.scandir(folder) if is_image_path(e.name) and e.is_file())
            except OSError:
                names = []
            for name in names:
                stems.setdefault(Path(name).stem, name)
            self._cache[folder] = stems
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(folder)
        return folder / stems.get(path.stem, path.name)


def _to_srgb(img: Image.Image) -> Image.Image:
    """A colour image with an embedded ICC profile other than sRGB (Adobe RGB, a CMYK press profile),
    converted to sRGB (relative colorimetric), the space the models and the metrics work in.

    Greyscale profiles are left alone: a page's grey levels are its own. A profile that cannot be
    read leaves the pixels as stored.
    """
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "RGBA", "CMYK"):
        return img
    from PIL import ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if img.mode != "CMYK" and "srgb" in ImageCms.getProfileDescription(source).lower():
            return img
        return ImageCms.profileToProfile(
            img,
            source,
            _srgb_profile(),
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGBA" if img.mode == "RGBA" else "RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return img


@functools.cache
def _srgb_profile() -> Any:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with transparency on white (pages are printed on white paper)."""
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


def _high_depth_to_uint8(img: Image.Image) -> np.ndarray:
    """16-bit / 32-bit integer or float single-channel image to ``uint8`` (H, W)."""
    arr = np.asarray(img)
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64))
        peak = float(arr.max()) if arr.size else 0.0
        arr = arr * 255.0 if peak <= 1.0 else (arr / 257.0 if peak > 255.0 else arr)
        return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    arr = arr.astype(np.int64)
    # "I;16": 16 bits by the file's word, so even a dark page's 0..255 is scaled; 32-bit "I": the range tells
    if img.mode.startswith("I;16") or (arr.size and arr.max() > 255):
        return np.clip((arr + 128) // 257, 0, 255).astype(np.uint8)  # 0..65535 -> 0..255
    return np.clip(arr, 0, 255).astype(np.uint8)


def _to_rgb_or_gray(img: Image.Image) -> np.ndarray:
    """Normalise any PIL mode to ``uint8`` (H, W) for greyscale or (H, W, 3) for colour."""
    mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        if mode in ("LA", "La") or (mode == "L" and "transparency" in img.info):
            rgb = np.asarray(_flatten_alpha(img))
            return np.ascontiguousarray(rgb[..., 0])
        return np.asarray(_flatten_alpha(img))
    if mode == "1":
        return np.asarray(img.convert("L"))
    if mode == "L":
        return np.asarray(img)
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _high_depth_to_uint8(img)
    if mode == "RGB":
        return np.asarray(img)
    # P without transparency, CMYK (PIL handles Adobe's inverted JPEG CMYK), YCbCr, LAB, HSV, ...
    return np.asarray(img.convert("RGB"))


def read_image(
    path: str | Path,
    mode: str | None = "RGB",
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    meta: dict[str, Any] | None = None,
) -> np.ndarray:
    """Read an image file as a ``uint8`` array.

    Args:
        path: image file (PNG, JPEG, WebP, BMP, TIFF; the first frame of multi-frame files).
        mode: ``"RGB"`` for (H, W, 3), ``"L"`` for (H, W) luma (ITU-R BT.601), ``None`` to
            keep greyscale files as (H, W) and colour files as (H, W, 3).
        max_pixels: refuse images larger than this many pixels (decompression bombs); ``None``
            for no limit.
        meta: when given, receives ``"dpi"``: the print resolution (x, y) in dots per inch that the
            file declares, turned with the pixels, or ``None`` when it declares none.

    Returns:
        ``uint8`` array, EXIF orientation applied, transparency composited on white.

    Raises:
        ImageReadError: the file is missing, not an image, truncated, corrupt or too large.
    """
    path = Path(path)
    if mode not in ("RGB", "L", None):
        raise ValueError(f"mode must be 'RGB', 'L' or None. Got {mode!r}")
    try:
        check_regular_file(path, ImageReadError)
        with open(path, "rb") as fh:
            with Image.open(fh) as img:
                width, height = img.size
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageReadError(
                        path,
                        f"image is {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,} (decompression bomb?)",
                    )
                img.load()
                if meta is not None:
                    meta["dpi"] = _declared_dpi(img)
                img = ImageOps.exif_transpose(img) or img
                arr = _to_rgb_or_gray(_to_srgb(img))
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(path, "no such file") from None
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory, not an image") from None
    except PermissionError:
        raise ImageReadError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(path, "not an image, or a format that cannot be decoded") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(path, f"refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = "file is truncated"
        raise ImageReadError(path, f"corrupt image: {reason}") from None
    if arr.size == 0:
        raise ImageReadError(path, "image has no pixels")
    return convert_mode(np.ascontiguousarray(arr), mode)


def _declared_dpi(img: Image.Image) -> tuple[float, float] | None:
    """The print resolution ``img`` declares, in dots per inch (x, y), as the pixels come out of
    :func:`read_image` (a quarter-turn EXIF orientation swaps them); ``None`` when it declares none or
    nonsense."""
    try:
        x, y = (float(v) for v in img.info.get("dpi"))
        turned = img.getexif().get(0x0112) in (5, 6, 7, 8)
    except Exception:  # no resolution, or EXIF that cannot be parsed: none declared
        return None
    if not all(math.isfinite(v) and 10 <= v <= 65535 for v in (x, y)):  # TIFF without a unit: 1
        return None
    x, y = round(x, 2), round(y, 2)
    return (y, x) if turned else (x, y)


def _with_dpi(data: bytes, suffix: str, dpi: tuple[float, float]) -> bytes:
    """Add the resolution to OpenCV's PNG (a ``pHYs`` chunk after ``IHDR``) or JPEG (the JFIF density)."""
    if suffix == ".png" and data[12:16] == b"IHDR":
        per_metre = [max(1, round(v / 0.0254)) for v in dpi]
        body = b"pHYs" + struct.pack(">IIB", per_metre[0], per_metre[1], 1)
        chunk = struct.pack(">I", 9) + body + struct.pack(">I", zlib.crc32(body))
        return data[:33] + chunk + data[33:]  # 8-byte signature, then IHDR: length, type, 13 bytes, CRC
    if suffix in (".jpg", ".jpeg") and data[2:4] == b"\xff\xe0" and data[6:11] == b"JFIF\x00":
        return data[:13] + struct.pack(">BHH", 1, *(min(65535, max(1, round(v))) for v in dpi)) + data[18:]
    return data


def convert_mode(image: np.ndarray, mode: str | None) -> np.ndarray:
    """Convert a ``uint8`` (H, W) or (H, W, 3) array to ``mode`` (``"RGB"``, ``"L"`` or ``None``)."""
    if mode is None:
        return image
    if mode == "L":
        return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if mode == "RGB":
        return image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    raise ValueError(f"mode must be 'RGB', 'L' or None. Got {mode!r}")


_PIL_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
}


_MAX_SIDE = {".jpg": 65500, ".jpeg": 65500, ".webp": 16383}  # the formats' own limits


def encode_image(image: np.ndarray, suffix: str, quality: int = 95, dpi: tuple[float, float] | None = None) -> bytes:
    """Encode a ``uint8`` (H, W) or (H, W, 3) RGB array into the bytes of an image file.

    Args:
        image: the pixels.
        suffix: file ending that picks the format (``.png``, ``.jpg``, ``.webp``, ...).
        quality: JPEG / WebP quality.
        dpi: print resolution (x, y) to declare, as :func:`read_image`'s source declared it; WebP
            has no field for it and leaves it out.
    """
    suffix = suffix.lower()
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3). Got {image.dtype} {image.shape}")
    limit = _MAX_SIDE.get(suffix)
    if limit is not None and max(image.shape[:2]) > limit:
        height, width = image.shape[:2]
        raise ValueError(f"{width}x{height} is too large for {suffix} (at most {limit} px a side); use .png")
    if suffix in (".png", ".jpg", ".jpeg"):
        # OpenCV's encoders are several times faster than Pillow's on full pages.
        pixels = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if suffix == ".png" else [cv2.IMWRITE_JPEG_QUALITY, quality]
        ok, buf = cv2.imencode(suffix, pixels, params)
        if not ok:
            raise ValueError(f"OpenCV could not encode {suffix}")
        return buf.tobytes() if dpi is None else _with_dpi(buf.tobytes(), suffix, dpi)
    if suffix not in _PIL_FORMATS:
        raise ValueError(f"unsupported image format {suffix!r}; use one of {sorted(_PIL_FORMATS)}")
    out = io.BytesIO()
    kwargs: dict[str, Any] = {"quality": quality} if suffix == ".webp" else {}
    if dpi is not None and suffix != ".webp":
        kwargs["dpi"] = dpi
    Image.fromarray(image).save(out, format=_PIL_FORMATS[suffix], **kwargs)
    return out.getvalue()


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


# The temporary names of the writers here (``.NAME.XXXXXXXX.tmp``, mkstemp's 8 random characters)
# and of the link stage (``.NAME.PID.tmp``); a user's own hidden files do not match.
_TEMP_NAME = re.compile(r"^\..+\.(?:[a-z0-9_]{8}|[0-9]+)\.tmp$")
STALE_TEMP_AGE = 120.0  # seconds untouched; a live writer's temporary file lives for a second or two
_swept: set[str] = set()
_swept_lock = threading.Lock()


def sweep_stale_temps(folder: str | Path) -> int:
    """Delete the temporary files that killed runs (SIGKILL, out of memory, power loss) left in ``folder``.

    Once per folder and process, before its first write: only names these writers make, and only
    those untouched for :data:`STALE_TEMP_AGE` seconds, so another run writing into the same folder
    (shards of one job) keeps its own. Returns how many were deleted; errors are ignored.
    """
    key = os.path.abspath(folder)
    with _swept_lock:
        if key in _swept:
            return 0
        _swept.add(key)
    cutoff = time.time() - STALE_TEMP_AGE
    removed = 0
    try:
        with os.scandir(key) as entries:
            stale = [e.path for e in entries if _TEMP_NAME.match(e.name) and _older_file(e, cutoff)]
    except OSError:
        return 0
    for tmp in stale:
        try:
            os.unlink(tmp)
            removed += 1
        except OSError:
            pass
    return removed


def _older_file(entry: os.DirEntry, cutoff: float) -> bool:
    try:
        return entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff
    except OSError:
        return False


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half-written).

    The first write into a folder also deletes what killed runs left there (:func:`sweep_stale_temps`).

    Raises:
        OSError: the folder cannot be created or written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file ordinary permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class PendingRecord:
    """A record :func:`keep_record` has yet to write; calling it writes it (once).

    ``new_folder``: the folder had no record, so it is to be written before the first output (a run
    killed after that leaves it); otherwise it replaces another, once the batch has redone every output.
    """

    def __init__(self, path: Path, record: dict[str, Any], new_folder: bool) -> None:
        self.path, self.record, self.new_folder = path, record, new_folder
        self._lock = threading.Lock()
        self.written = False

    def __call__(self) -> None:
        with self._lock:
            if self.written:
                return
            try:
                atomic_write_bytes(self.path, (json.dumps(self.record, indent=2) + "\n").encode())
            except OSError as exc:
                raise MangacolorError(f"{self.path}: cannot write ({folder_error_reason(exc)})") from None
            self.written = True


def keep_record(
    path: str | Path,
    record: dict[str, Any],
    overwrite: bool,
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> PendingRecord | None:
    """An output folder's record of what made it (a small JSON file), kept true across interrupted runs.

    For a folder with this record, ``None`` is returned. For a folder without a record, a
    :class:`PendingRecord` (``new_folder``) that the caller writes before the first output (a folder
    where nothing was made is then not bound to these settings). A folder whose record differs is
    refused, unless ``overwrite``: then the returned record is to be
    written once the batch has redone every output; a batch that stops before, or leaves a failed
    file's old output, keeps the old record, so that a re-run does not skip the old outputs as done.
    An unreadable record counts as none.

    Args:
        normalize: brings a stored record to the current form before the comparison (records written
            by earlier versions: a key they lack, parameters they left at their defaults).

    Raises:
        RecordMismatch: the folder's record differs and ``overwrite`` is off (``exc.stored`` holds it).
        MangacolorError: the record cannot be written.
    """
    path = Path(path)
    record = json.loads(json.dumps(record, default=str))  # as it reads back
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stored = None
    if isinstance(stored, dict) and normalize is not None:
        stored = json.loads(json.dumps(normalize(stored), default=str))
    if stored == record:
        return None
    if not isinstance(stored, dict):
        return PendingRecord(path, record, new_folder=True)
    if not overwrite:
        raise RecordMismatch(stored, record)
    return PendingRecord(path, record, new_folder=False)


def record_quality(output_format: str, quality: int) -> int | None:
    """The JPEG / WebP quality an output folder's record names: none for PNG, which is lossless."""
    return None if output_format == "png" else quality


class RecordMismatch(MangacolorError):
    """An output folder made by other settings (see :func:`keep_record`)."""

    def __init__(self, stored: dict[str, Any], record: dict[str, Any]) -> None:
        super().__init__("the output folder was made with other settings")
        self.stored, self.record = stored, record
        self.changed = sorted(k for k in record.keys() | stored.keys() if record.get(k) != stored.get(k))


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Atomically write a ``uint8`` (H, W) or (H, W, 3) RGB array; the format follows the ending.

    Raises:
        ImageWriteError: unsupported ending, or the file or folder cannot be written.
    """
    path = Path(path)
    try:
        data = encode_image(image, path.suffix, quality=quality)
    except ValueError as exc:
        raise ImageWriteError(path, str(exc)) from None
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise ImageWriteError(path, f"cannot write: {exc.strerror or exc}") from None


def to_tensor(image: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """``uint8`` (H, W), (H, W, C) or a list of same-shaped arrays to ``float32`` (B, C, H, W) in [-1, 1]."""
    import torch

    images = image if isinstance(image, list) else [image]
    arrays = [a[..., None] if a.ndim == 2 else a for a in images]  # (H, W, C)
    batch = torch.from_numpy(np.stack(arrays))  # (B, H, W, C) uint8
    return batch.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)  # (B, C, H, W)


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """``float`` (C, H, W) or (B, C, H, W) in [-1, 1] to ``uint8`` (H, W, C) or (B, H, W, C).

    Single-channel tensors come back as (H, W) / (B, H, W).
    """
    if tensor.ndim not in (3, 4):
        raise ValueError(f"expected (C, H, W) or (B, C, H, W). Got {tuple(tensor.shape)}")
    import torch

    t = tensor.detach().float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)
    t = t.movedim(-3, -1).cpu()  # (..., H, W, C)
    arr = t.numpy()
    if arr.shape[-1] == 1:
        arr = arr[..., 0]
    return np.ascontiguousarray(arr)
