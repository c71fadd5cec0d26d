"""The generic training loop shared by every trainer (colorizer, scan generator).

minGPT's trainer could say of itself that nothing in it has to do with GPT; nothing here has to do
with colour. A trainer is a :class:`TrainTask`: it builds its networks, its dataset for a given
training size, one optimisation step, sample grids, and the model a user ships. The loop adds what
every long run needs:

* progressive stages (train at each size in turn) and a constant-then-linear-decay learning rate;
* a run folder (``config.json``, ``metrics.jsonl``, ``samples/``, ``latest`` / ``best`` checkpoints);
* exact resume: networks, optimizers, schedules, step, stage, epoch position and RNG states are saved
  atomically (``resume.pt``; a kill during the write leaves the previous one intact) and a resumed run
  continues the same loss curve, because every random crop is drawn from a generator seeded by
  ``(seed, epoch, index)`` rather than from a global stream;
* DistributedDataParallel under ``torchrun`` (NCCL on GPUs, gloo on CPU): the sampler shards each
  epoch across ranks, only rank 0 logs and writes;
* no host synchronisation in the inner loop except at logging steps;
* an orderly early stop (:class:`EarlyStop`): after a wall-clock limit, or on SIGINT / SIGTERM (Ctrl-C,
  a batch scheduler's pre-emption), the loop finishes the step in flight, saves ``latest`` and the
  resume state, and raises :class:`TrainingStopped`, so no finished step is lost.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import random
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from mangacolor.errors import MangacolorError
from mangacolor.imageio import folder_error_reason, real_path
from mangacolor.training.rundir import RunDir

log = logging.getLogger(__name__)

RESUME_FILE = "resume.pt"


# ----------------------------------------------------------------------------- early stop


class TrainingStopped(Exception):
    """Training stopped before its last step, with the run saved for ``--resume``.

    Attributes:
        step: the last finished (and saved) step.
        total: the run's total steps.
        reason: ``"time limit"``, ``"SIGINT"`` or ``"SIGTERM"``.
        run_dir: the run folder.
    """

    def __init__(self, step: int, total: int, reason: str, run_dir: Path) -> None:
        self.step, self.total, self.reason, self.run_dir = step, total, reason, run_dir
        super().__init__(f"stopped at step {step} of {total} ({reason}); the run is saved in {run_dir}")


class EarlyStop:
    """When :func:`run_training` should stop before its last step: a time limit and/or signals.

    Use as a context manager around the loop. With ``signals``, SIGINT and SIGTERM (main thread
    only) ask for a stop after the step in flight; a second SIGINT aborts at once, as Ctrl-C
    usually does, except while the run is being saved (:meth:`saving`): an abort there would lose
    the resume state the first one asked for. The previous handlers come back on exit. DataLoader
    workers forked inside the block inherit the handlers, so a Ctrl-C sent to the whole process
    group does not kill them under the loop's feet.

    Args:
        time_limit_s: stop starting new steps this many seconds after entering (0: no limit).
        signals: handle SIGINT and SIGTERM.
    """

    def __init__(self, time_limit_s: float = 0.0, signals: bool = False) -> None:
        if time_limit_s < 0:
            raise MangacolorError(f"the time limit must be positive. Got {time_limit_s / 60:g} minutes")
        self.time_limit_s = time_limit_s
        self.signals = signals
        self.signal_name: str | None = None
        self._start = time.monotonic()
        self._pid = os.getpid()
        self._interrupts = 0
        self._saving = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> EarlyStop:
        self._start, self._pid = time.monotonic(), os.getpid()
        if self.signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: object) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1 and not self._saving:
                raise KeyboardInterrupt  # the second Ctrl-C: abort now
            if self._interrupts > 1 and os.getpid() == self._pid:
                log.warning("saving the run: it stops as soon as the files are written")
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            if os.getpid() == self._pid:  # not from forked loader workers
                log.warning(
                    "%s: stopping after the current step and saving the run (Ctrl-C again aborts)", self.signal_name
                )

    @contextmanager
    def saving(self) -> Iterator[None]:
        """Hold off the second Ctrl-C's abort while checkpoints and the resume state are written."""
        self._saving = True
        try:
            yield
        finally:
            self._saving = False

    @property
    def active(self) -> bool:
        """Whether anything can ask for a stop."""
        return self.time_limit_s > 0 or bool(self._previous)

    def reason(self) -> str | None:
        """Why to stop now, or ``None`` to go on."""
        if self.signal_name is not None:
            return self.signal_name
        if self.time_limit_s > 0 and time.monotonic() - self._start >= self.time_limit_s:
            return "time limit"
        return None


# ----------------------------------------------------------------------------- distributed


@dataclass
class DistContext:
    """Where this process runs and its place among the ranks of a ``torchrun`` job."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, samples and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether several processes train together."""
        return self.world_size > 1


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU.

    Raises:
        MangacolorError: ``cuda`` was asked for but is not available, or the name is unknown.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise MangacolorError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise MangacolorError(f"--device {name} was asked for but no CUDA device is available")
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise MangacolorError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def setup_distributed(device: str) -> DistContext:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world <= 1:
        return DistContext(dev)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(dev, rank, world, local_rank)


def teardown_distributed(ctx: DistContext) -> None:
    """Leave the process group."""
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def weights_digest(module: nn.Module) -> int:
    """Fingerprint of every parameter, bit for bit: the first 60 bits of a SHA-1 of their bytes.

    Equal digests on two ranks mean identical weights (up to a 2**-60 chance), unlike a sum, which
    lets differences cancel. Buffers are left out: DDP broadcasts them from rank 0 before each
    forward pass, so batch-norm statistics legitimately differ by each rank's last batch.
    """
    sha = hashlib.sha1()
    with torch.no_grad():
        for name, p in module.named_parameters():
            sha.update(name.encode())
            sha.update(p.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return int(sha.hexdigest()[:15], 16)


def data_fingerprint(files: list[Path], root: str | Path) -> dict[str, Any]:
    """The file list a run trains on, as a count and a digest of the names relative to ``root``.

    Stored in the resume state, so that a resume can tell that the data folder changed (the
    continuation is then no longer the run's own): names only, no file is opened or stat'ed.
    """
    sha = hashlib.sha1()
    for path in sorted(os.path.relpath(p, root) for p in files):
        sha.update(path.encode("utf-8", "surrogateescape") + b"\0")
    return {"files": len(files), "digest": sha.hexdigest()[:16]}


def warn_if_data_changed(saved: dict[str, Any] | None, now: dict[str, Any], what: str) -> None:
    """Warn when a resumed run's files differ from those it was saved with (``saved`` None: an older run)."""
    if saved is not None and saved != now:
        log.warning(
            "%s changed since the run was saved (%d files, were %d): training goes on with the files there now, "
            "so the continuation differs from an uninterrupted run",
            what,
            now["files"],
            saved["files"],
        )


# ----------------------------------------------------------------------------- data order


class EpochSampler(Sampler):
    """Shuffled indices for one epoch, sharded across ranks, starting at a given batch.

    Yields ``(epoch, index)`` keys so datasets can seed each item's augmentation from
    ``(seed, epoch, index)``: the data a step sees depends only on the step, never on how many
    processes or loader workers there are or whether the run was resumed.
    """

    def __init__(
        self, n: int, seed: int, epoch: int, batch_size: int, start_batch: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        self.n, self.seed, self.epoch = n, seed, epoch
        self.batch_size, self.start_batch = batch_size, start_batch
        self.rank, self.world = rank, world

    def batches_per_epoch(self) -> int:
        """Full global batches (batch_size per rank) in one epoch."""
        return max(1, self.n // (self.batch_size * self.world))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if len(order) < self.batch_size * self.world:  # tiny folders: repeat to fill one batch
            order = (order * math.ceil(self.batch_size * self.world / max(len(order), 1)))[
                : self.batch_size * self.world
            ]
        per_step = self.batch_size * self.world
        usable = self.batches_per_epoch() * per_step
        for b in range(self.start_batch, self.batches_per_epoch()):
            chunk = order[b * per_step : (b + 1) * per_step] if b * per_step < usable else []
            for i in chunk[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]:
                yield (self.epoch, i)

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size


class StageSampler(Sampler):
    """The :class:`EpochSampler` epochs one after another, without end, from ``(epoch, start_batch)``.

    One DataLoader (and its worker processes) then serves a whole training stage instead of being
    rebuilt, workers and all, at every epoch. The loop stops drawing at the stage's last step.
    """

    def __init__(
        self, n: int, seed: int, epoch: int, batch_size: int, start_batch: int = 0, rank: int = 0, world: int = 1
    ) -> None:
        self.first = EpochSampler(n, seed, epoch, batch_size, start_batch, rank, world)

    def batches_per_epoch(self) -> int:
        return self.first.batches_per_epoch()

    def __iter__(self) -> Iterator[tuple[int, int]]:
        f = self.first
        epoch, start = f.epoch, f.start_batch
        while True:
            yield from EpochSampler(f.n, f.seed, epoch, f.batch_size, start, f.rank, f.world)
            epoch, start = epoch + 1, 0


def item_rng(seed: int, key: tuple[int, int] | int) -> np.random.Generator:
    """The random generator for one dataset item (see :class:`EpochSampler`)."""
    epoch, index = key if isinstance(key, tuple) else (0, key)
    return np.random.default_rng([seed, epoch, index])


# ----------------------------------------------------------------------------- schedule


def parse_stages(stages: str | list[int] | None, default: int) -> list[int]:
    """``"64,128,256"`` -> ``[64, 128, 256]``; ``None`` -> ``[default]``.

    Raises:
        MangacolorError: not a comma-separated list of positive integers.
    """
    if stages is None or stages == "":
        return [default]
    if isinstance(stages, str):
        try:
            values = [int(s) for s in stages.split(",") if s.strip()]
        except ValueError:
            raise MangacolorError(
                f"--stages must be sizes separated by commas, e.g. 64,128,256. Got {stages!r}"
            ) from None
    else:
        values = list(stages)
    if not values or any(v <= 0 for v in values):
        raise MangacolorError(f"--stages must be positive sizes. Got {stages!r}")
    return values


def check_stage_sizes(stages: list[int], multiple: int, min_size: int, what: str) -> None:
    """Refuse every bad training size before the first step (not when its stage begins, hours later).

    Raises:
        MangacolorError: a size that is not a multiple of ``multiple`` or is below ``min_size``.
    """
    for size in stages:
        if multiple > max(stages):
            raise MangacolorError(
                f"{what} needs training sizes that are multiples of {multiple} (2^{multiple.bit_length() - 1}: one "
                f"halving per level), more than the {max(stages)} px asked for; lower --depth or raise --crop-size"
            )
        if size % multiple:
            raise MangacolorError(f"training size {size} must be a multiple of {multiple} for {what}")
        if size < min_size:
            raise MangacolorError(f"training size {size} is below {min_size}, the smallest the discriminator takes")


def lr_factor(step: int, total: int, decay_start: float = 0.5) -> float:
    """Constant learning rate, then linear decay to zero over the last ``1 - decay_start`` of training."""
    start = int(total * decay_start)
    if step < start or total <= start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(1, total - start))


# ----------------------------------------------------------------------------- RNG and resume


def rng_state() -> dict[str, Any]:
    """Every global RNG state (torch CPU and CUDA, numpy, Python)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state()[1].tolist(),
        "numpy_pos": int(np.random.get_state()[2]),
        "python": list(random.getstate()[1]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(path: Path, state: dict[str, Any]) -> None:
    """Write resume state atomically (temp file, fsync, rename).

    Raises:
        MangacolorError: it cannot be written (disk full, ...); the previous state stays, no temp file.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise MangacolorError(f"{path}: cannot save the resume state ({exc.strerror or exc})") from None
        raise


def load_resume(path: Path) -> dict[str, Any]:
    """Read resume state (tensors, numbers, strings and containers only: ``weights_only``).

    Raises:
        MangacolorError: missing or unreadable.
    """
    if not path.exists():
        raise MangacolorError(f"{path}: no resume state in this run folder")
    from mangacolor.checkpoint import torch_load_reason

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise MangacolorError(f"{path}: unreadable resume state ({exc.strerror or exc})") from None
    except Exception as exc:  # torch raises several types for damaged files
        raise MangacolorError(f"{path}: unreadable resume state ({torch_load_reason(exc, path)})") from None
    if not isinstance(state, dict) or not isinstance(state.get("task"), dict):
        raise MangacolorError(f"{path}: not a resume state of this program")
    return state


def resume_mismatch(path: Path, exc: Exception) -> MangacolorError:
    """The error for resume state that does not fit the run (another run's, an edited config.json)."""
    if isinstance(exc, KeyError):
        detail = f"it holds no {exc.args[0]!r}"
    else:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 and lines[0].startswith("Error(s) in loading") else ""
        detail = (detail or (lines[0] if lines else type(exc).__name__))[:200]
    return MangacolorError(
        f"{path}: resume state that does not fit this run ({detail}); copied from another run, or config.json edited?"
    )


# ----------------------------------------------------------------------------- the task protocol


class TrainTask(Protocol):
    """What a trainer provides to :func:`run_training`."""

    def build(self, ctx: DistContext) -> None:
        """Create networks, optimizers and losses on ``ctx.device`` (wrapped for DDP when distributed)."""

    def make_dataset(self, size: int) -> Dataset:
        """Training items at square side ``size`` (keys are ``(epoch, index)``)."""

    def step(self, batch: Any, step: int) -> dict[str, torch.Tensor]:
        """One optimisation step; returns detached scalar tensors (no ``.item()``: no host sync)."""

    def set_lr_factor(self, factor: float) -> None:
        """Scale every optimizer's base learning rate."""

    def current_lr(self) -> dict[str, float]:
        """Learning rates to log."""

    def validate(self) -> dict[str, float]:
        """Validation metrics (may be empty); ``val_l1`` picks the best checkpoint."""

    def write_samples(self, run: RunDir, step: int) -> None:
        """Write a sample grid for the latest batch."""

    def export(self, path: Path, provenance: dict[str, Any]) -> None:
        """Write the checkpoint a user ships (the model only)."""

    def state_dict(self) -> dict[str, Any]:
        """Networks, optimizers and anything else needed to resume."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""

    def shipped_module(self) -> nn.Module:
        """The network whose weights are checked for equality across ranks."""


@dataclass
class LoopConfig:
    """Settings of :func:`run_training` that every trainer shares.

    Attributes:
        run_dir: the run folder.
        steps: optimisation steps per stage.
        stages: training sizes, one stage each.
        batch_size: items per step on each rank.
        seed: seeds data order, augmentation and initialisation.
        num_workers: DataLoader worker processes.
        log_every: steps between metric lines (the only host syncs).
        sample_every: steps between sample grids (0: end only).
        save_every: steps between ``latest`` checkpoints and resume state (0: end only).
        decay_start: fraction of all steps after which the learning rate decays linearly to zero
            (1.0: constant).
        half_checkpoint: store the shipped checkpoint in float16.
    """

    run_dir: str
    steps: int
    stages: list[int]
    batch_size: int
    seed: int = 0
    num_workers: int = 0
    log_every: int = 50
    sample_every: int = 500
    save_every: int = 1000
    decay_start: float = 0.5
    half_checkpoint: bool = False


_STOP_CODES = (None, "time limit", "SIGTERM", "SIGINT")


def _stop_reason(stop: EarlyStop, ctx: DistContext, logging_step: bool) -> str | None:
    """``stop.reason()``; in a distributed run only at logging steps, agreed by every rank (max)."""
    if not stop.active:
        return None
    if not ctx.distributed:
        return stop.reason()
    if not logging_step:
        return None
    code = torch.tensor([_STOP_CODES.index(stop.reason())], device=ctx.device)
    dist.all_reduce(code, op=dist.ReduceOp.MAX)
    return _STOP_CODES[int(code)]


_WEIGHT_OPTIONS = {"feature_matching_weight": "--feature-matching", "perceptual_weight": "--perceptual"}
"""Loss weights whose command-line option is not the field's name."""


def check_training_options(cfg: Any) -> None:
    """Refuse option values no training can use, before any image is read or anything is written.

    ``cfg`` is a trainer's config: ``steps``, ``batch_size``, ``load_size``, ``lr_g``, ``lr_d``,
    ``decay_start``, where it has them ``val_fraction`` and ``test_fraction``, and its loss weights
    (``*_weight``: finite, >= 0).

    Raises:
        MangacolorError: the first bad value, named by its command-line option.
    """
    checks = [
        (cfg.steps >= 1, f"--steps must be >= 1. Got {cfg.steps}"),
        (cfg.batch_size >= 1, f"--batch-size must be >= 1. Got {cfg.batch_size}"),
        (
            cfg.load_size is None or cfg.load_size >= 1,
            f"--load-size must be >= 1 (leave it out to keep each image's size). Got {cfg.load_size}",
        ),
        (math.isfinite(cfg.lr_g) and cfg.lr_g > 0, f"--lr-g must be > 0. Got {cfg.lr_g}"),
        (math.isfinite(cfg.lr_d) and cfg.lr_d > 0, f"--lr-d must be > 0. Got {cfg.lr_d}"),
        (0.0 <= cfg.decay_start <= 1.0, f"--decay-start must be in [0, 1]. Got {cfg.decay_start}"),
        *(
            (
                math.isfinite(value) and value >= 0,
                f"{_WEIGHT_OPTIONS.get(name, '--' + name.replace('_', '-'))} must be >= 0. Got {value}",
            )
            for name, value in vars(cfg).items()
            if name.endswith("_weight") and isinstance(value, (int, float)) and not isinstance(value, bool)
        ),
        (
            0.0 <= getattr(cfg, "val_fraction", 0.0) < 1.0,
            f"--val-fraction must be in [0, 1). Got {getattr(cfg, 'val_fraction', 0.0)}",
        ),
        (
            0.0 <= getattr(cfg, "test_fraction", 0.0) < 1.0,
            f"--test-fraction must be in [0, 1). Got {getattr(cfg, 'test_fraction', 0.0)}",
        ),
        (
            getattr(cfg, "test_fraction", 0.0) + getattr(cfg, "val_fraction", 0.0) < 1.0,
            f"--test-fraction {getattr(cfg, 'test_fraction', 0.0)} and --val-fraction "
            f"{getattr(cfg, 'val_fraction', 0.0)} together hold out every image; their sum must be < 1",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise MangacolorError(message)


def check_load_size(load_size: int | None, stages: Sequence[int]) -> None:
    """Refuse a ``--load-size`` smaller than a crop: most of every crop would be padding.

    Raises:
        MangacolorError: a stage's crop is larger than the load size.
    """
    if load_size is not None and 1 <= load_size < max(stages):  # below 1: check_training_options says why
        raise MangacolorError(
            f"--load-size {load_size} is smaller than the {max(stages)} px crop; images are shrunk to the load size "
            "before they are cropped, so give --load-size >= the crop size (or leave it out)"
        )


def _own_process_group(worker_id: int) -> None:
    """DataLoader worker: leave the command's process group.

    SIGTERM sent to the whole group (``timeout``, ``kill -TERM -PGID``, a job queue's pre-emption)
    then reaches the main process only, which saves the run and stops the workers itself; PyTorch's
    own SIGTERM handler in a worker would instead fail the run before it is saved. A worker still
    ends with the main process (PyTorch's watchdog).
    """
    try:
        os.setpgid(0, 0)
    except OSError:
        pass


def check_run_folder_free(run_dir: str | Path, resume: bool, data: Sequence[str | Path | None] = ()) -> None:
    """Refuse early (before the data is read) a run folder that holds a run when ``resume`` is off,
    or that is, or lies inside, one of the ``data`` folders (its sample grids would become training
    images, and a resume would read other data than the run began with).

    :func:`run_training` checks again under the folder's lock; this only saves the wait.

    Raises:
        MangacolorError: the folder holds a run, is a file, or lies in the data.
    """
    run_path = Path(run_dir)
    if run_path.exists() and not run_path.is_dir():
        raise MangacolorError(f"{run_path}: cannot use as a run folder (a file is in the way)")
    run_real = real_path(run_path)
    for folder in data:
        if folder is None or not Path(folder).is_dir():
            continue
        real = real_path(folder)
        if run_real == real or real in run_real.parents:
            raise MangacolorError(
                f"{run_path}: the run folder lies in the training data {folder} (its samples would be read as "
                "training images); give a run folder outside it"
            )
    if not resume and (run_path / RESUME_FILE).exists():
        raise MangacolorError(
            f"{run_path}: already holds a training run; continue it with --resume {run_path}, or give a new run folder"
        )


LOCK_FILE = ".lock"


@contextmanager
def _run_folder_lock(run_path: Path) -> Iterator[None]:
    """Create the run folder and hold an exclusive lock on it: two processes never train into one folder.

    Raises:
        MangacolorError: the folder cannot be created, or another process holds its lock.
    """
    created = not run_path.exists()
    try:
        run_path.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise MangacolorError(f"{run_path}: cannot use as a run folder ({folder_error_reason(exc)})") from None
    try:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform
            fcntl = None  # type: ignore[assignment]
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise MangacolorError(
                    f"{run_path}: another process is training in this run folder; wait for it or stop it first"
                ) from None
        try:
            yield
        except MangacolorError:
            if created and not (run_path / RESUME_FILE).exists():  # failed before its first save: leave no folder
                _remove_unsaved_run_folder(run_path)
            raise
    finally:
        os.close(fd)  # releases the lock


def _remove_unsaved_run_folder(run_path: Path) -> None:
    """Remove what a run that failed before its first save wrote (its lock, config and metrics).

    Sample grids and anything else put there are kept, and with them the folders that hold them.
    """
    for name in (LOCK_FILE, "config.json", "metrics.jsonl"):
        (run_path / name).unlink(missing_ok=True)
    for folder in sorted((p for p in run_path.rglob("*") if p.is_dir()), reverse=True):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: keep it
    try:
        run_path.rmdir()
    except OSError:
        pass


def _holding_the_run_folder_lock(func: Callable[..., Path]) -> Callable[..., Path]:
    """Run ``func(task, loop, config, ctx, ...)`` with rank 0 holding ``loop.run_dir``'s lock."""

    @functools.wraps(func)
    def wrapper(task: TrainTask, loop: LoopConfig, config: Any, ctx: DistContext, *args: Any, **kwargs: Any) -> Path:
        lock = _run_folder_lock(Path(loop.run_dir)) if ctx.is_main else nullcontext()
        with lock:
            return func(task, loop, config, ctx, *args, **kwargs)

    return wrapper


@_holding_the_run_folder_lock
def run_training(
    task: TrainTask,
    loop: LoopConfig,
    config: Any,
    ctx: DistContext,
    provenance: dict[str, Any],
    resume: bool = False,
    on_step: Callable[[int, int, dict[str, float] | None], None] | None = None,
    stop: EarlyStop | None = None,
) -> Path:
    """Train ``task`` through every stage; return the shipped checkpoint's path.

    The run folder is locked while the run lasts (rank 0). A folder holds a run once its first
    resume state is saved: before that, a run that died can be started again, with or without
    ``resume``, from step 0.

    Args:
        task: the trainer.
        loop: shared loop settings.
        config: the whole run config (written as ``config.json``).
        ctx: device and rank.
        provenance: facts stored in every checkpoint.
        resume: continue from ``run_dir/resume.pt``.
        on_step: called on rank 0 after every step with (global step, total steps, scalars or
            ``None`` between logging steps).
        stop: when to stop early (time limit, signals). Single-process runs check after every
            step; distributed runs at logging steps, where the ranks agree on it.

    Raises:
        TrainingStopped: ``stop`` ended the run early; ``latest.safetensors`` and the resume state
            of the last finished step are saved.
        MangacolorError: the folder holds a run and ``resume`` is off, is used by another process,
            or cannot be made.
    """
    run_path = Path(loop.run_dir)
    taken = (run_path / RESUME_FILE).exists()  # config.json alone: a run that died before its first save
    if ctx.distributed:
        dist.barrier()  # every rank has looked before rank 0 writes anything
    check_run_folder_free(run_path, resume)
    if resume and not taken:
        log.warning("%s: no resume state (%s) saved yet: starting from step 0", run_path, RESUME_FILE)
        resume = False
    run = RunDir(loop.run_dir) if ctx.is_main else None
    total = loop.steps * len(loop.stages)
    task.build(ctx)
    global_step, stage_idx, epoch, batch_in_epoch = 0, 0, 0, 0
    best = math.inf
    window: dict[str, torch.Tensor] = {}
    n_window = 0
    window_s = 0.0  # seconds the partial logging window had run when the resume state was saved
    if resume:
        state = load_resume(run_path / RESUME_FILE)
        try:
            task.load_state_dict(state["task"])
            global_step = int(state["step"])
            missing = [k for k in ("stage", "epoch", "batch_in_epoch", "best", "rng") if k not in state]
            if missing:
                raise KeyError(missing[0])
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            raise resume_mismatch(run_path / RESUME_FILE, exc) from None
        if global_step > total:
            raise MangacolorError(
                f"{run_path}: the run stands at step {global_step}, beyond the {total} steps asked for; "
                "give a larger --steps"
            )
        stage_idx = min(state["stage"], global_step // loop.steps)  # lower when a resume raised --steps
        epoch, batch_in_epoch, best = state["epoch"], state["batch_in_epoch"], state["best"]
        set_rng_state(state["rng"])
        window = {k: v.to(ctx.device) for k, v in state.get("window", {}).items()}
        n_window = state.get("n_window", 0)
        window_s = float(state.get("window_s", 0.0))
        if ctx.is_main:
            run.continue_clock(float(state.get("elapsed", 0.0)))
            run.truncate_metrics(global_step)  # lines logged after the saved step are logged again
            run.write_config(config)  # with what a resume may change (steps, device, workers)
            log.info("resumed at step %d (stage %d)", global_step, stage_idx)
    elif ctx.is_main:
        run.truncate_metrics(0)  # what a run that died before its first save had logged
        run.write_config(config)

    stop = stop or EarlyStop()

    def save_state(path_step: int) -> None:
        state = {
            "task": task.state_dict(),
            "step": path_step,
            "stage": stage_idx,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "best": best,
            "rng": rng_state(),
            "window": {k: v.detach().cpu() for k, v in window.items()},  # partial logging window
            "n_window": n_window,
            "window_s": time.perf_counter() - t_window,  # so images_per_s spans the resume
            "elapsed": run.elapsed() if run is not None else 0.0,  # metrics.jsonl's time goes on
        }
        save_resume(run_path / RESUME_FILE, state)

    with stop:
        t_window = time.perf_counter() - window_s
        while stage_idx < len(loop.stages):
            size = loop.stages[stage_idx]
            dataset = task.make_dataset(size)
            stage_end = (stage_idx + 1) * loop.steps
            sampler = StageSampler(
                len(dataset), loop.seed, epoch, loop.batch_size, batch_in_epoch, ctx.rank, ctx.world_size
            )
            if batch_in_epoch >= sampler.batches_per_epoch():  # saved at the very end of an epoch: the sampler
                epoch, batch_in_epoch = epoch + 1, 0  # yields nothing more of it and goes on with the next
            loader = DataLoader(
                dataset,
                batch_size=loop.batch_size,
                sampler=sampler,
                num_workers=loop.num_workers,
                pin_memory=ctx.device.type == "cuda",
                drop_last=True,
                generator=torch.Generator().manual_seed(loop.seed),  # leave the global RNG alone
                worker_init_fn=_own_process_group,
            )
            batches = iter(loader)
            while global_step < stage_end:
                batch = next(batches)
                task.set_lr_factor(lr_factor(global_step, total, loop.decay_start))
                out = task.step(batch, global_step)
                global_step += 1
                batch_in_epoch += 1
                if batch_in_epoch >= sampler.batches_per_epoch():  # the sampler has moved on to the next epoch
                    epoch, batch_in_epoch = epoch + 1, 0
                for k, v in out.items():
                    window[k] = window[k] + v if k in window else v.clone()
                n_window += 1
                logging_step = global_step % loop.log_every == 0 or global_step == stage_end
                scalars = None
                if logging_step:
                    elapsed = time.perf_counter() - t_window
                    scalars = {k: float(v) / n_window for k, v in window.items()}  # host sync here only
                    scalars["images_per_s"] = n_window * loop.batch_size * ctx.world_size / max(elapsed, 1e-9)
                    scalars.update({f"lr_{k}": v for k, v in task.current_lr().items()})
                    scalars["stage_size"] = size
                    val = task.validate() if ctx.is_main else {}
                    scalars.update(val)
                    if ctx.is_main:
                        run.log_metrics(global_step, scalars)
                        if "val_l1" in val and val["val_l1"] < best:
                            best = val["val_l1"]
                            task.export(run_path / "best.safetensors", {**provenance, "steps": global_step})
                    window, n_window, t_window = {}, 0, time.perf_counter()
                if ctx.is_main and loop.sample_every and global_step % loop.sample_every == 0:
                    task.write_samples(run, global_step)
                if loop.save_every and global_step % loop.save_every == 0 and global_step < total:
                    if ctx.is_main:
                        with stop.saving():
                            task.export(run_path / "latest.safetensors", {**provenance, "steps": global_step})
                            save_state(global_step)
                if ctx.is_main and on_step is not None:
                    on_step(global_step, total, scalars)
                reason = _stop_reason(stop, ctx, logging_step) if global_step < total else None
                if reason is not None:
                    if ctx.is_main:
                        with stop.saving():
                            task.export(run_path / "latest.safetensors", {**provenance, "steps": global_step})
                            save_state(global_step)
                    raise TrainingStopped(global_step, total, reason, run_path)
            del batches, loader  # ends this stage's loader workers
            stage_idx += 1
    final = run_path / "model.safetensors"
    checks = {}
    if ctx.distributed:
        # On the training device: NCCL has no collectives for CPU tensors.
        local = torch.tensor([weights_digest(task.shipped_module())], dtype=torch.int64, device=ctx.device)
        gathered = [torch.zeros_like(local) for _ in range(ctx.world_size)]
        dist.all_gather(gathered, local)
        digests = [f"{int(g):015x}" for g in gathered]
        checks = {"rank_weight_digests": digests, "ranks_in_sync": len(set(digests)) == 1}
    if ctx.is_main:
        if loop.sample_every == 0 or global_step % loop.sample_every:
            task.write_samples(run, global_step)
        with stop, stop.saving():  # a Ctrl-C now waits for the run's last files
            task.export(final, {**provenance, "steps": global_step})
            save_state(global_step)
        if checks:
            run.log_metrics(global_step, checks)
    return final
