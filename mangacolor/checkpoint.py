"""Model checkpoints: one ``.safetensors`` file per model, nothing pickled.

The file's string metadata holds everything needed to rebuild the model with no flags:

========================  =============================================================
``format_version``        integer, :data:`FORMAT_VERSION`; newer files are refused
``task``                  ``colorize`` or ``scan`` (or ``discriminator``)
``arch``                  registry name (see ``mangacolor models``)
``config``                JSON of the architecture's config dataclass
``provenance``            JSON: training data folder and file count, steps, resolution, date, ...
``mangacolor_version``    the version that wrote the file
========================  =============================================================

Resume state (optimizers, discriminators, step, RNG) lives in a run directory, not here.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from mangacolor import __version__
from mangacolor.errors import CheckpointError
from mangacolor.imageio import atomic_write_bytes, check_regular_file
from mangacolor.models import config_dict, create_model, get_spec

FORMAT_VERSION = 1

_MAX_HEADER = 100 * 1024 * 1024


@dataclass
class CheckpointInfo:
    """What a checkpoint's metadata says about its model."""

    path: Path
    format_version: int
    task: str
    arch: str
    config: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)
    mangacolor_version: str = ""
    num_parameters: int = 0
    dtypes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    """Tells models apart without reading them whole: a hash of the architecture, config, tensor layout
    and the file's last 64 KiB of weights (not the provenance: a re-export of the same weights, at
    another date, is the same model)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-able view (for ``mangacolor models --inspect``)."""
        return {
            "path": str(self.path),
            "format_version": self.format_version,
            "task": self.task,
            "arch": self.arch,
            "config": self.config,
            "provenance": self.provenance,
            "mangacolor_version": self.mangacolor_version,
            "num_parameters": self.num_parameters,
            "dtypes": self.dtypes,
            "fingerprint": self.fingerprint,
        }


def save(
    path: str | Path,
    model: nn.Module,
    provenance: dict[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``model`` (a registered architecture) and its metadata atomically.

    Args:
        path: target ``.safetensors`` file; folders are created.
        model: the model; its class must be registered (it carries ``arch_name`` and ``config``).
        provenance: JSON-able facts about how it was trained; a ``date`` is added if missing.
        half: store floating-point tensors as float16 (half the size; loading casts back).

    Raises:
        CheckpointError: the file cannot be written (disk full, no permission).
    """
    path = Path(path)
    arch = getattr(model, "arch_name", None)
    if arch is None:
        raise ValueError(f"{type(model).__name__} is not a registered architecture")
    spec = get_spec(arch)
    prov = dict(provenance or {})
    prov.setdefault("date", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    tensors = {}
    for key, value in model.state_dict().items():
        t = value.detach().cpu()
        if half and t.is_floating_point():
            t = t.half()
        tensors[key] = t.contiguous().clone()  # clone: safetensors refuses shared storage
    metadata = {
        "format_version": str(FORMAT_VERSION),
        "task": spec.task,
        "arch": arch,
        "config": json.dumps(config_dict(model), sort_keys=True),
        "provenance": json.dumps(prov, sort_keys=True, default=str),
        "mangacolor_version": __version__,
    }
    try:
        atomic_write_bytes(path, st_save(tensors, metadata=metadata))
    except OSError as exc:  # disk full, no permission: the previous file at ``path`` stays as it was
        raise CheckpointError(path, f"cannot write: {exc.strerror or exc}") from None
    return path


def torch_load_reason(exc: Exception, path: str | Path) -> str:
    """Why ``torch.load(path, weights_only=True)`` failed, in one line of ours (not torch's advice)."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # torch's advice to unpickle the file is not ours to give
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"not a PyTorch file of plain tensors ({detail})"
    # outside a zip archive torch's own text is noise: "174812789", "EOFError", "pop from empty list"
    detail = (text.splitlines() or [""])[0].split(". ")[0]
    return "not a PyTorch file, or a damaged one" + (f" ({detail})" if zipfile.is_zipfile(path) else "")


def load_torch_weights(path: str | Path, what: str) -> dict[str, Any]:
    """A state dict from a PyTorch file (``.pth``), read with ``weights_only``: nothing is unpickled.

    A ``{"state_dict": ...}`` wrapper is taken off.

    Args:
        path: the file.
        what: what the file should hold, for the error message (``"VGG16 weights"``).

    Raises:
        CheckpointError: not a PyTorch file, one holding more than tensors, or not a state dict.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise CheckpointError(path, f"cannot read {what}: {exc.strerror or exc}") from None
    except Exception as exc:  # zip, pickle and unpickler errors have no common base
        raise CheckpointError(path, f"cannot read {what}: {torch_load_reason(exc, path)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(path, f"cannot read {what}: not a state dict")
    return state


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """Parse and sanity-check the safetensors header; return it and the data section's offset."""
    try:
        size = check_regular_file(path, CheckpointError).st_size
        with open(path, "rb") as fh:
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise CheckpointError(path, "not a .safetensors checkpoint (file too short)")
            opens_header = fh.read(1) == b"{"
            fh.seek(8)
            if not opens_header and raw_len.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip or pickle
                raise CheckpointError(
                    path,
                    "a PyTorch .pth/.pt file, not a .safetensors checkpoint; models are .safetensors files "
                    "written by train-color / train-scan (pretrained encoder or VGG weights go to "
                    "--encoder-weights / --vgg-weights)",
                )
            (header_len,) = struct.unpack("<Q", raw_len)
            if header_len > min(size - 8, _MAX_HEADER):
                raise CheckpointError(path, "not a .safetensors checkpoint, or truncated (bad header length)")
            header = json.loads(fh.read(header_len))
    except FileNotFoundError:
        raise CheckpointError(path, "no such checkpoint file") from None
    except IsADirectoryError:
        raise CheckpointError(path, "is a directory, not a checkpoint file") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(path, "not a .safetensors checkpoint (unreadable header)") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(path, "not a .safetensors checkpoint (unreadable header)")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CheckpointError(path, "not a .safetensors checkpoint (metadata is not a table of strings)")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            start, stop = (int(x) for x in entry["data_offsets"])
            shape = [int(d) for d in entry["shape"]]
            ok = isinstance(entry["dtype"], str) and 0 <= start <= stop and all(d >= 0 for d in shape)
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise CheckpointError(path, f"not a .safetensors checkpoint (bad header entry for tensor {name!r})")
        end = max(end, stop)
    data_len = size - 8 - header_len
    if end > data_len:
        raise CheckpointError(path, f"truncated: tensor data needs {end:,} bytes, file has {data_len:,}")
    return header, 8 + header_len


def read_info(path: str | Path) -> CheckpointInfo:
    """Read and validate a checkpoint's metadata without loading its tensors.

    Raises:
        CheckpointError: missing, truncated, not mangacolor's, newer format or unknown architecture.
    """
    path = Path(path)
    header, data_start = _read_header(path)
    meta = header.get("__metadata__") or {}
    if "format_version" not in meta or "arch" not in meta:
        raise CheckpointError(path, "a .safetensors file without mangacolor metadata (format_version, arch)")
    try:
        version = int(meta["format_version"])
    except ValueError:
        raise CheckpointError(path, f"bad format_version {meta['format_version']!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(
            path,
            f"checkpoint format {version} is newer than this mangacolor supports ({FORMAT_VERSION}); "
            "upgrade mangacolor",
        )
    arch = meta["arch"]
    try:
        spec = get_spec(arch)
    except KeyError as exc:
        raise CheckpointError(path, str(exc.args[0])) from None
    try:
        config = json.loads(meta.get("config", "{}"))
        provenance = json.loads(meta.get("provenance", "{}"))
    except json.JSONDecodeError:
        raise CheckpointError(path, "metadata 'config' or 'provenance' is not valid JSON") from None
    if not isinstance(config, dict) or not isinstance(provenance, dict):
        raise CheckpointError(path, "metadata 'config' and 'provenance' must be JSON objects")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    n_params = 0
    for v in tensors.values():
        count = 1
        for d in v["shape"]:
            count *= int(d)
        n_params += count
    return CheckpointInfo(
        path=path,
        format_version=version,
        task=meta.get("task", spec.task),
        arch=arch,
        config=config,
        provenance=provenance,
        mangacolor_version=meta.get("mangacolor_version", ""),
        num_parameters=n_params,
        dtypes=sorted({v["dtype"] for v in tensors.values()}),
        fingerprint=_fingerprint(path, header, data_start),
    )


def _fingerprint(path: Path, header: dict[str, Any], data_start: int) -> str:
    meta = header.get("__metadata__") or {}
    model = {k: v for k, v in header.items() if k != "__metadata__"}
    model["__model__"] = {k: meta.get(k) for k in ("arch", "config", "task")}
    digest = hashlib.sha256(json.dumps(model, sort_keys=True).encode())
    try:
        with open(path, "rb") as fh:
            fh.seek(max(data_start, fh.seek(0, os.SEEK_END) - 65536))  # weights only
            digest.update(fh.read())
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest()[:16]


def load(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointInfo]:
    """Rebuild the model stored in ``path`` and load its weights (in float32, eval mode).

    Raises:
        CheckpointError: anything :func:`read_info` refuses, a config the architecture rejects,
            or tensors whose names or shapes do not match the rebuilt model.
    """
    path = Path(path)
    info = read_info(path)
    try:
        model = create_model(info.arch, info.config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(path, f"config does not fit architecture {info.arch!r}: {exc}") from None
    try:
        state = st_load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types
        raise CheckpointError(path, f"corrupt tensor data: {exc}") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]!r}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) e.g. {unexpected[0]!r}")
        raise CheckpointError(path, f"weights do not match {info.arch} config: " + "; ".join(parts))
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                path,
                f"tensor {key!r} has shape {tuple(value.shape)}, the {info.arch} config needs {tuple(own[key].shape)}",
            )
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    model.eval()
    return model.to(device), info
