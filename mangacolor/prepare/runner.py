"""The folder driver every ``prepare`` stage shares.

A stage is a stream of :class:`Job` (one input file, the files it will write, a picklable
payload) and a picklable task ``Job -> FileResult``. :func:`run_jobs`:

* keeps only the jobs of this machine's shard (``--shard i/n``: a stable hash of the job's key,
  so shards partition the files whatever the listing order or the number of workers);
* skips jobs whose outputs all exist as files (unless ``overwrite``), so an interrupted run re-run
  finishes the job;
* runs the rest in a process pool, a few chunks in flight at a time: memory does not grow with
  the number of files, and results come back in input order, so reports and manifests are the
  same for any number of workers; a worker that dies (decoder crash, out-of-memory kill) fails
  only the files of its chunks, and the run goes on with a fresh pool;
* turns any exception of a task into a ``failed`` result naming the file: a batch never stops.
  So are an input whose output another input already takes (``a.png`` and ``a.jpg`` written as
  ``--format png``: the first in sorted order wins) and a sub-folder that cannot be listed.

Tasks write through :func:`mangacolor.imageio.write_image` / ``atomic_write_bytes`` (temporary
file + rename), so a killed run never leaves a half-written output that a re-run would skip.
"""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mangacolor.errors import FileError, ImageReadError, MangacolorError
from mangacolor.imageio import (
    PendingRecord,
    RecordMismatch,
    SameStemFinder,
    folder_error_reason,
    keep_record,
    list_images,
    read_image,
    real_path,
    write_image,
)
from mangacolor.report import BatchReport, FileResult

OUTPUT_FORMATS = ("same", "png", "jpg", "webp")


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (1 <= i <= n) to ``(i, n)``; ``None`` is the whole job ``(1, 1)``.

    Raises:
        MangacolorError: not of the form i/n.
    """
    if text is None or text == "":
        return 1, 1
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise MangacolorError(f"--shard must look like i/n, e.g. 1/4. Got {text!r}") from None
    if n < 1 or not 1 <= i <= n:
        raise MangacolorError(f"--shard i/n needs 1 <= i <= n. Got {text!r}")
    return i, n


def shard_of(key: str, count: int) -> int:
    """The shard (1..count) a job key belongs to: a stable hash, the same on every machine.

    A file name that is not UTF-8 hashes by its bytes as stored (``surrogateescape``).
    """
    if count == 1:
        return 1
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count + 1


@dataclass(frozen=True)
class RunOptions:
    """How a stage runs (the options every ``prepare`` subcommand shares).

    Attributes:
        workers: worker processes (``None``: all cores; 1 runs in this process).
        shard: ``(i, n)``: process only the i-th of n shards of the input.
        overwrite: redo jobs whose outputs already exist.
        chunksize: jobs sent to a worker at a time.
    """

    workers: int | None = None
    shard: tuple[int, int] = (1, 1)
    overwrite: bool = False
    chunksize: int = 8

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise MangacolorError(f"--workers must be >= 1. Got {self.workers}")
        i, n = self.shard
        if n < 1 or not 1 <= i <= n:
            raise MangacolorError(f"--shard i/n needs 1 <= i <= n. Got {i}/{n}")


@dataclass(frozen=True)
class Job:
    """One unit of work.

    Attributes:
        source: the input file (reported in results).
        outputs: the files the job writes; when all exist the job is skipped.
        key: stable name for sharding (the input's path relative to the input folder).
        payload: anything else the task needs (picklable).
        error: set when the job is known to fail before it runs (reported as the failure's reason).
        skip: set when the job is known to be left out (reported as the skip's reason).
    """

    source: str
    outputs: tuple[str, ...]
    key: str
    payload: Any = None
    error: str = ""
    skip: str = ""


Task = Callable[[Job], FileResult]


def _failure(job: Job, exc: BaseException) -> FileResult:
    if isinstance(exc, FileError):
        same = str(exc.path) == job.source
        return FileResult(job.source, "failed", exc.reason if same else str(exc))
    if isinstance(exc, MangacolorError):
        return FileResult(job.source, "failed", str(exc))
    if isinstance(exc, MemoryError):
        return FileResult(job.source, "failed", "out of memory")
    return FileResult(job.source, "failed", f"unexpected error: {type(exc).__name__}: {exc}")


def run_task(task: Task, job: Job) -> FileResult:
    """Run one job; any exception becomes a ``failed`` result."""
    if job.error:
        return FileResult(job.source, "failed", job.error)
    if job.skip:
        return FileResult(job.source, "skipped", job.skip)
    try:
        return task(job)
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop the batch
        return _failure(job, exc)


_BUSY = threading.Lock()
"""Held by a worker while it runs a file, so that the watchdog ends it between files, never mid-write."""


_PARENT_GONE = threading.Event()
"""Set by the watchdog: the worker ends before its next file (the lock alone is not fair, so the
worker could otherwise take it again for every file of its chunk)."""


def _run_chunk(task: Task, jobs: list[Job]) -> list[FileResult]:
    results = []
    for job in jobs:
        with _BUSY:
            if _PARENT_GONE.is_set():
                os._exit(1)
            results.append(run_task(task, job))
    return results


def _init_worker(parent: int) -> None:
    # The parent handles Ctrl-C and SIGTERM (a job queue kills the whole process group) and stops
    # the pool after the files in progress; the workers let it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import mangacolor.prepare._serial  # noqa: F401 - OpenCV single-threaded (already done by the fork server)

    threading.Thread(target=_exit_with, args=(parent,), name="mangacolor-watchdog", daemon=True).start()


def _exit_with(parent: int) -> None:
    """Watchdog: end this worker once ``parent`` is gone (SIGKILL, a crash), after its current file.

    A worker is a child of the fork server, not of the command, so it would otherwise live on and
    keep writing after the command is dead.
    """
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):  # no pidfd (not Linux, old kernel): poll
        fd = None
    if fd is not None:
        select.select([fd], [], [])  # readable once the process has ended
    else:
        while True:
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                break
            except OSError:
                pass
            time.sleep(1.0)
    _PARENT_GONE.set()
    with _BUSY:
        os._exit(1)


def _pool_context() -> multiprocessing.context.BaseContext:
    """A fork server where there is one (no threads or locks of this process leak into workers), else spawn.

    Plain ``fork`` of a process whose OpenCV / OpenMP thread pools are running can deadlock the
    children; the fork server is a clean process that imports the stage modules once and forks
    the workers from there, so they still start in milliseconds.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        modules = ("_serial", "runner", "borders", "lines", "pair", "aligned", "danbooru")  # _serial first
        ctx.set_forkserver_preload([f"mangacolor.prepare.{m}" for m in modules])
        return ctx
    return multiprocessing.get_context("spawn")


def iter_results(
    jobs: Iterable[Job], task: Task, options: RunOptions = RunOptions()
) -> Iterator[tuple[Job, FileResult]]:
    """Run ``task`` over the jobs of this shard; yield ``(job, result)`` in input order.

    Jobs whose outputs exist are ``skipped`` (reason "output exists") unless ``options.overwrite``.
    """
    shard_index, shard_count = options.shard

    def chunks() -> Iterator[list[tuple[Job, FileResult | None]]]:
        mine = (j for j in jobs if shard_of(j.key, shard_count) == shard_index)
        while True:
            chunk = list(islice(mine, options.chunksize))
            if not chunk:
                return
            yield [(j, _exists(j) if _done_before(j, options.overwrite) else None) for j in chunk]

    workers = options.workers or default_workers()
    if workers == 1:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # the same per-process setting as the pool workers
        try:
            for chunk in chunks():
                for job, done in chunk:
                    yield job, done or run_task(task, job)
        finally:
            cv2.setNumThreads(threads)
        return

    yield from _pooled(chunks(), task, workers)


_BROKEN = object()
"""Stands for a chunk that could not even be submitted because the pool had broken."""


def _pooled(
    chunks: Iterator[list[tuple[Job, FileResult | None]]], task: Task, workers: int
) -> Iterator[tuple[Job, FileResult]]:
    """Run chunks in a process pool, a bounded window in flight, results in order."""
    pending: collections.deque[tuple[list[tuple[Job, FileResult | None]], Any]] = collections.deque()
    executor = _executor(workers)
    breaks_in_a_row = 0  # pool breaks with no finished chunk in between

    def start(chunk: list[tuple[Job, FileResult | None]]) -> Any:
        todo = [j for j, r in chunk if r is None]
        if not todo:
            return None
        try:
            return executor.submit(_run_chunk, task, todo)
        except BrokenProcessPool:
            return _BROKEN

    def submit() -> bool:
        chunk = next(chunks, None)
        if chunk is None:
            return False
        pending.append((chunk, start(chunk)))
        return True

    try:
        for _ in range(2 * workers):  # a bounded window of chunks in flight
            if not submit():
                break
        while pending:
            chunk, future = pending.popleft()
            try:
                if future is _BROKEN:
                    raise BrokenProcessPool("the pool broke before this chunk was submitted")
                computed = iter(future.result() if future is not None else ())
                breaks_in_a_row = 0
            except BrokenProcessPool:
                breaks_in_a_row += 1
                if breaks_in_a_row >= 3:
                    raise MangacolorError(
                        "the worker processes keep dying without finishing a file; run with --workers 1 to see why"
                        ' (a script that starts a pool needs an `if __name__ == "__main__":` guard)'
                    ) from None
                # A worker died (a decoder crash, the out-of-memory killer): its chunk is lost.
                # Report those files and go on with a fresh pool, resubmitting what did not finish.
                # The pool's other workers finish their chunks first (they ignore SIGTERM), so that
                # what they write is on disk before the lost files are judged by their outputs.
                executor.shutdown(wait=True, cancel_futures=True)
                computed = iter([_lost(j) for j, r in chunk if r is None])
                executor = _executor(workers)
                for i, (other_chunk, other) in enumerate(pending):
                    if other is _BROKEN or (
                        other is not None and (not other.done() or other.cancelled() or other.exception())
                    ):
                        pending[i] = (other_chunk, start(other_chunk))
            submit()
            for job, done in chunk:
                yield job, done or next(computed)
    finally:
        for _, future in pending:
            if future is not None and future is not _BROKEN:
                future.cancel()
        executor.shutdown(wait=True, cancel_futures=True)


def _lost(job: Job) -> FileResult:
    """The result of a job whose worker died: done when its outputs were written before (each one is
    complete, being renamed into place), else failed."""
    if job.outputs and not job.error and all(os.path.isfile(o) for o in job.outputs):
        return FileResult(job.source, "done", outputs=list(job.outputs))
    return FileResult(
        job.source, "failed", "a worker process died (crash or out of memory) while this file's batch ran"
    )


def _executor(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=_pool_context(), initializer=_init_worker, initargs=(os.getpid(),))


def _done_before(job: Job, overwrite: bool) -> bool:
    return not overwrite and not job.error and bool(job.outputs) and all(os.path.isfile(o) for o in job.outputs)


def _exists(job: Job) -> FileResult:
    return FileResult(job.source, "skipped", "output exists", list(job.outputs))


def run_jobs(
    jobs: Iterable[Job],
    task: Task,
    options: RunOptions = RunOptions(),
    on_result: Callable[[FileResult], None] | None = None,
) -> BatchReport:
    """Run a stage to the end and count the outcomes (see :func:`iter_results`)."""
    report = BatchReport()
    for _, result in iter_results(jobs, task, options):
        report.add(result)
        if on_result is not None:
            on_result(result)
    return report


# ----------------------------------------------------------------------------- image-to-image stages


class SkipImage(Exception):
    """Raised by a transform for an input it deliberately leaves out (e.g. too small); not a failure."""


def check_output_format(output_format: str) -> None:
    """Refuse an output format other than :data:`OUTPUT_FORMATS`.

    Raises:
        MangacolorError: an unknown format.
    """
    if output_format not in OUTPUT_FORMATS:
        raise MangacolorError(f"--format must be one of {', '.join(OUTPUT_FORMATS)}. Got {output_format!r}")


def output_path(source: Path, input_root: Path, output_root: Path, output_format: str) -> Path:
    """Where an input's result goes: the same relative path under ``output_root``, ending per ``output_format``."""
    check_output_format(output_format)
    rel = source.relative_to(input_root) if input_root.is_dir() else Path(source.name)
    if output_format != "same":
        rel = rel.with_suffix("." + output_format)
    return output_root / rel


@dataclass(frozen=True)
class ImageTask:
    """Read an image, apply a transform, write the result (the task of ``crop`` and ``lines``).

    Attributes:
        transform: picklable ``uint8 array -> uint8 array``; may raise :class:`SkipImage`.
        read_mode: ``RGB``, ``L`` or ``None`` (as stored), see :func:`mangacolor.imageio.read_image`.
        quality: JPEG / WebP quality of the output.
        pass_payload: call ``transform(image, job.payload)`` instead of ``transform(image)``.
    """

    transform: Callable[..., np.ndarray]
    read_mode: str | None = "RGB"
    quality: int = 95
    pass_payload: bool = False

    def __call__(self, job: Job) -> FileResult:
        image = read_image(job.source, mode=self.read_mode)
        try:
            out = self.transform(image, job.payload) if self.pass_payload else self.transform(image)
        except SkipImage as exc:
            return FileResult(job.source, "skipped", str(exc))
        write_image(job.outputs[0], np.ascontiguousarray(out), quality=self.quality)
        return FileResult(job.source, "done", outputs=list(job.outputs))


def check_output_root(input_root: Path, output_root: Path) -> None:
    """Refuse an output folder that is, or lies inside, an input folder (the walk would find the outputs),
    or that cannot be created; create it (not for an input that does not exist).

    Raises:
        MangacolorError: the input does not exist, or the output folder is inside it, or cannot be made.
    """
    if not input_root.exists():
        raise ImageReadError(input_root, "no such file or directory")
    inp, out = real_path(input_root), real_path(output_root)
    if out == inp or inp in out.parents:
        raise MangacolorError(f"{output_root}: the output folder must not be, or lie inside, the input {input_root}")
    make_output_root(output_root)


def make_output_root(output_root: Path) -> None:
    """Create the output folder, or say in one line why it cannot be.

    Raises:
        MangacolorError: a file is in the way, or no permission.
    """
    try:
        output_root.mkdir(parents=True, exist_ok=True)
        if not os.access(output_root, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise MangacolorError(f"{output_root}: cannot create the output folder ({folder_error_reason(exc)})") from None


SETTINGS_FILE = ".mangacolor-prepare.json"
"""Hidden record in an output folder of the stage and settings that made it."""


def record_settings(
    output_root: str | Path,
    stage: str,
    settings: dict[str, Any],
    overwrite: bool,
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> PendingRecord | None:
    """Refuse to add outputs made with other settings to a folder (a re-run skips existing outputs, so
    ``lines --method xdog`` into a ``sketch`` folder would silently keep the sketches); record these.
    Returns what to call once the batch is through, if anything (see :func:`~mangacolor.imageio.keep_record`).

    ``--overwrite`` redoes every output, so it may change the settings. Shards of one job write the
    same record. A new folder's record is written at once and taken back by :func:`close_record`
    when the run made nothing, so that a run that failed does not bind the folder to its settings.
    ``normalize`` brings a record written by an earlier version to the current form; a ``quality``
    it lacks is taken to agree.

    Raises:
        MangacolorError: the folder holds another stage's outputs, or this stage's with other settings.
    """
    record = {"stage": stage, **settings}

    def current(stored: dict[str, Any]) -> dict[str, Any]:
        if "quality" in record:
            stored = {"quality": record["quality"], **stored}
        return normalize(stored) if normalize is not None and stored.get("stage") == stage else stored

    try:
        pending = keep_record(Path(output_root) / SETTINGS_FILE, record, overwrite, normalize=current)
    except RecordMismatch as exc:
        if exc.stored.get("stage") != stage:
            made = f"`prepare {exc.stored.get('stage')}`"
        else:
            made = f"`prepare {stage}` with " + ", ".join(f"{k}={exc.stored.get(k)!r}" for k in exc.changed)
            made += " (now " + ", ".join(f"{k}={exc.record.get(k)!r}" for k in exc.changed) + ")"
        raise MangacolorError(
            f"{output_root}: made by {made}; the outputs would mix two kinds, as existing ones are skipped. "
            "Use --overwrite to redo them all, or another output folder"
        ) from None
    if pending is not None and pending.new_folder:
        pending()  # before any output: a run killed after the first one leaves the record
    return pending


def close_record(
    recorded: PendingRecord | None, report: BatchReport, output_root: str | Path, jobs: Callable[[], Iterable[Job]]
) -> None:
    """Once ``--overwrite`` has redone a folder made otherwise, write its new record (``recorded``) ...

    ... unless a failed file keeps its output made the earlier way: the new record would have a
    re-run skip it as done. Then the old record stays and ``report`` gets a note saying so. A new
    folder's record (written at the start) is taken back when the run made nothing.

    Args:
        jobs: the batch's jobs again (a listing, nothing decoded), read only when something failed.
    """
    if recorded is None:
        return
    if recorded.new_folder:
        if not (report.counts["done"] or report.counts["skipped"]):  # nothing made: not bound to these settings
            recorded.path.unlink(missing_ok=True)
        return
    failed = {f.path for f in report.failures}
    kept = (
        sum(1 for job in jobs() if job.source in failed and any(Path(o).exists() for o in job.outputs)) if failed else 0
    )
    if kept:
        report.notes.append(
            f"{kept} failed file(s) keep their outputs made with the earlier settings, so {output_root} "
            "still records those: run again with --overwrite once they can be done, or delete them"
        )
    else:
        recorded()


def open_output(
    input_root: str | Path,
    output_root: str | Path,
    stage: str,
    settings: dict[str, Any],
    overwrite: bool,
    normalize: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> PendingRecord | None:
    """Check and create the output folder of an image-to-image stage and record its settings; returns
    the record for :func:`close_record` once the batch is through (:func:`record_settings`).

    Raises:
        MangacolorError: see :func:`check_output_root` and :func:`record_settings`.
    """
    check_output_root(Path(input_root), Path(output_root))
    return record_settings(output_root, stage, settings, overwrite, normalize)


@dataclass(frozen=True)
class InputGuard:
    """Tells which outputs would land on an input: only possible for inputs inside the output folder
    (``prepare pair data/A data/B data`` writes ``data/A/<name>``; ``crop page.png .`` writes ``./page.png``).

    Attributes:
        inputs: ``(resolved, as given)`` of each input file or folder that lies inside the output folder.
    """

    inputs: tuple[tuple[Path, Path], ...] = ()

    @classmethod
    def of(cls, output_root: str | Path, input_roots: Iterable[str | Path]) -> InputGuard:
        out = real_path(output_root)
        resolved = ((real_path(root), Path(root)) for root in input_roots)
        return cls(tuple((real, given) for real, given in resolved if out in real.parents))

    def error(self, outputs: Iterable[str | Path]) -> str:
        """Why a job that writes ``outputs`` must not run, or ``""``."""
        for output in outputs if self.inputs else ():
            target = real_path(output)
            for real, given in self.inputs:
                if target == real or real in target.parents:
                    return f"its output {output} would overwrite the input {given}; choose another output folder"
        return ""


def image_jobs(
    input_root: str | Path,
    output_root: str | Path,
    output_format: str = "same",
    payload: Callable[[Path], Any] | None = None,
    outputs: Callable[[Path], tuple[Path, ...]] | None = None,
) -> Iterator[Job]:
    """One job per image under ``input_root`` (lazily, sorted), writing the mirrored path under ``output_root``.

    A sub-folder that cannot be listed, an input whose output an earlier one of the same name but
    another ending takes, and an input whose output would overwrite an input, become jobs that fail
    with the reason. ``outputs`` maps the mirrored path to the files the job really writes.
    """
    input_root, output_root = Path(input_root), Path(output_root)
    check_output_format(output_format)
    check_output_root(input_root, output_root)
    guard = InputGuard.of(output_root, [input_root])
    unlisted: list[tuple[Path, str]] = []
    same_stem = SameStemFinder() if output_format != "same" else None

    out_real = real_path(output_root)
    input_in_output = out_real in real_path(input_root).parents  # ``split data/A data``: every input is in there

    def key_of(path: Path) -> str:
        return path.relative_to(input_root).as_posix() if input_root.is_dir() else path.name

    for source in list_images(input_root, on_error=lambda folder, reason: unlisted.append((folder, reason))):
        while unlisted:
            folder, reason = unlisted.pop(0)
            yield Job(str(folder), (), key_of(folder), error=reason)
        if not input_in_output and out_real in real_path(source).parents:  # a linked folder leads into the output
            yield Job(str(source), (), key_of(source), skip="in the output folder (through a link); left out")
            continue
        out = output_path(source, input_root, output_root, output_format)
        written = tuple(map(str, outputs(out) if outputs is not None else (out,)))
        first = same_stem.first(source) if same_stem is not None and input_root.is_dir() else source
        if first != source:
            error = f"same output as {first.name} (names differ only in their ending); rename one"
            yield Job(str(source), written, key_of(source), error=error)
            continue
        error = guard.error(written)
        if error:
            yield Job(str(source), written, key_of(source), error=error)
            continue
        yield Job(str(source), written, key_of(source), payload(source) if payload is not None else None)
    for folder, reason in unlisted:
        yield Job(str(folder), (), key_of(folder), error=reason)
