"""A training run's directory: ``config.json``, ``metrics.jsonl``, ``samples/``, checkpoints.

Nothing here knows what is being trained.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mangacolor.errors import MangacolorError
from mangacolor.imageio import atomic_write_bytes, to_uint8, write_image


class RunDir:
    """Files of one training run.

    Args:
        path: the run folder (created).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / "samples").mkdir(exist_ok=True)
        self._t0 = time.time()

    def write_config(self, config: Any) -> None:
        """Store the training config (a dataclass or dict) as ``config.json``."""
        data = asdict(config) if is_dataclass(config) else dict(config)
        try:
            atomic_write_bytes(self.path / "config.json", json.dumps(data, indent=2, default=str).encode())
        except OSError as exc:
            raise MangacolorError(f"{self.path / 'config.json'}: cannot write ({exc.strerror or exc})") from None

    def elapsed(self) -> float:
        """Seconds of training so far: since the run began, across resumes (``metrics.jsonl``'s ``time``)."""
        return time.time() - self._t0

    def continue_clock(self, elapsed: float) -> None:
        """A resumed run's clock goes on from the ``elapsed`` seconds it had when it was saved."""
        self._t0 = time.time() - elapsed

    def log_metrics(self, step: int, values: dict[str, float]) -> None:
        """Append one JSON line to ``metrics.jsonl``."""
        record = {"step": step, "time": round(time.time() - self._t0, 3), **values}
        path = self.path / "metrics.jsonl"
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
        except OSError as exc:
            raise MangacolorError(f"{path}: cannot write ({exc.strerror or exc})") from None

    def truncate_metrics(self, step: int) -> None:
        """Drop the ``metrics.jsonl`` lines logged after ``step`` (a resume redoes those steps)."""
        path = self.path / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # blank, or torn by a kill during the append: that step is logged again
                continue
            if isinstance(record, dict) and record.get("step", 0) <= step:
                kept.append(line + "\n")
        atomic_write_bytes(path, "".join(kept).encode())

    def save_samples(self, step: int, columns: list[torch.Tensor], max_rows: int = 4) -> Path:
        """Write a grid PNG: one row per example, one column per tensor (e.g. input | output | target).

        Args:
            columns: float (B, C, H, W) tensors in [-1, 1]; C is 1 or 3 (grey is shown as RGB).
        """
        rows = []
        for i in range(min(max_rows, columns[0].shape[0])):
            tiles = []
            for col in columns:
                tile = to_uint8(col[i : i + 1])[0]
                if tile.ndim == 2:
                    tile = np.repeat(tile[..., None], 3, axis=2)
                tiles.append(tile)
            rows.append(np.concatenate(tiles, axis=1))  # (H, n * W, 3)
        grid = np.concatenate(rows, axis=0)
        path = self.path / "samples" / f"step_{step:07d}.png"
        write_image(path, grid)
        return path
