"""Console plumbing shared by the commands: stderr console, error-to-exit-code, summary table."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from mangacolor.errors import MangacolorError
from mangacolor.report import STATUSES, BatchReport

console = Console(stderr=True)
"""Diagnostics and progress go to stderr; stdout carries data only."""

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EXIT_FAILURES = 1
"""Exit code when a batch finished but some files failed."""
EXIT_ERROR = 2
"""Exit code when the command could not run at all (bad arguments, unreadable checkpoint, ...)."""
TimeLimitOption = Annotated[
    float,
    typer.Option(
        min=0,
        help="Minutes after which this invocation stops starting steps, saves the run and exits with "
        "status 75 (0: none). Ctrl-C and SIGTERM stop the same way.",
    ),
]
"""``--time-limit`` of the training commands."""

EXIT_STOPPED = 75
"""Exit code of a training run stopped early (``--time-limit``, Ctrl-C, SIGTERM) and saved for ``--resume``
(``EX_TEMPFAIL``: try again). Non-zero, so ``set -e`` scripts do not go on with an unfinished model, and
distinct from errors, so ``while mangacolor train-color --resume RUN --time-limit 50; [ $? -eq 75 ]; do :; done``
runs a job in slices."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a job queue's kill) raised in the main thread: unwinds like Ctrl-C, so the batch
    stages finish the files being written (temporary file, then rename) and leave no debris."""


EXIT_TERMINATED = 143
"""Exit code after SIGTERM, as the shell reports a process it killed."""


@contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: Any) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def guarded(func: F) -> F:
    """Turn the library's expected errors into a one-line message and exit code 2; SIGTERM into exit 143."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with _sigterm_unwinds():
                return func(*args, **kwargs)
        except MangacolorError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None
        except Terminated:
            console.print("stopped by SIGTERM; files written so far are complete, a rerun goes on", highlight=False)
            raise typer.Exit(EXIT_TERMINATED) from None

    return wrapper  # type: ignore[return-value]


def is_main_process() -> bool:
    """False on the non-zero ranks of a ``torchrun`` job (they stay quiet)."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging() -> None:
    """Show the library's log messages (resumed step, weights loaded, skipped files) on the stderr console.

    Rank 0 shows info and above; the other ranks of a ``torchrun`` job only warnings and errors.
    """
    logger = logging.getLogger("mangacolor")
    if any(isinstance(h, RichHandler) for h in logger.handlers):
        return
    handler = RichHandler(console=console, show_time=False, show_path=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO if is_main_process() else logging.WARNING)


RESUME_CHANGEABLE = {"steps": "steps", "device": "device", "workers": "num_workers"}
"""Options a ``--resume`` may change (CLI name -> config field); ``--time-limit`` is per call anyway."""


def load_run_config(
    run_dir: Path,
    config_cls: type[T],
    command: str,
    ctx: typer.Context | None = None,
    stored_as: dict[str, Callable[[Any, Any], bool]] | None = None,
) -> T:
    """Rebuild a training config from ``RUN_DIR/config.json`` for ``--resume RUN_DIR``.

    The run folder is the one given now, so a run folder that was moved, or a resume from another
    working directory, still finds its state. With the command's ``ctx``, options given on the
    command line are checked: those in :data:`RESUME_CHANGEABLE` replace the stored values, any
    other is refused rather than silently ignored, unless it repeats the stored value, so that a
    script may resume with its first command line: ``stored_as`` tells, for an option the config
    keeps under another name or form (``--width`` as ``model.base_width``), whether a value is the
    stored one (:func:`stored_in`, :func:`stored_json`, :func:`stored_under`).

    Raises:
        MangacolorError: no readable ``config.json`` of this command in ``run_dir``, or an option
            a resume cannot change.
    """
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise MangacolorError(f"{config_path}: not found; is {run_dir} a {command} run folder?")
    try:
        stored = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise MangacolorError(f"{config_path}: unreadable run config ({exc})") from None
    fields = {f.name: f for f in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    required = {
        n for n, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    if not isinstance(stored, dict) or not required <= set(stored):
        raise MangacolorError(f"{config_path}: not the config of a {command} run")
    try:
        config = config_cls(**{k: v for k, v in stored.items() if k in fields})
    except (TypeError, ValueError) as exc:
        raise MangacolorError(f"{config_path}: not the config of a {command} run ({exc})") from None
    config.betas = tuple(config.betas)  # type: ignore[attr-defined]
    config.run_dir = str(run_dir)  # type: ignore[attr-defined]
    if ctx is not None:
        _apply_resume_options(ctx, config, run_dir, stored_as or {})
    return config


def on_command_line(ctx: typer.Context, name: str) -> bool:
    """Whether the option or argument ``name`` was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"  # by name: typer may bring its own copy of click


def _apply_resume_options(
    ctx: typer.Context, config: Any, run_dir: Path, stored_as: dict[str, Callable[[Any, Any], bool]]
) -> None:
    given = [p for p in ctx.command.params if p.name not in ("resume", "time_limit") and on_command_line(ctx, p.name)]
    fixed = [
        p
        for p in given
        if p.name not in RESUME_CHANGEABLE and not _as_stored(ctx.params[p.name], config, p.name, stored_as)
    ]
    if fixed:
        names = ", ".join(p.opts[0] if p.opts and p.opts[0].startswith("-") else p.name.upper() for p in fixed)
        raise MangacolorError(
            f"--resume {run_dir} continues the run with the settings in its config.json; {names} cannot change "
            "(a resume can change --steps, --device, --workers and --time-limit)"
        )
    for p in given:
        if p.name in RESUME_CHANGEABLE:
            setattr(config, RESUME_CHANGEABLE[p.name], ctx.params[p.name])


def _as_stored(value: Any, config: Any, name: str, stored_as: dict[str, Callable[[Any, Any], bool]]) -> bool:
    """Whether an option given with ``--resume`` repeats the run's stored value (``--seed 0`` for a run
    with seed 0, ``DATA`` naming the same folder, ``--stages 64,128`` as stored): a script that
    resumes with its first command line is not refused for it."""
    if name in stored_as:
        return bool(stored_as[name](config, value))
    if not hasattr(config, name):
        return False
    stored = getattr(config, name)
    if isinstance(value, Path):  # stored absolute (the run folder: where it is now)
        return isinstance(stored, str) and os.path.abspath(value) == os.path.abspath(stored)
    if name == "stages" and isinstance(value, str):
        from mangacolor.training.loop import parse_stages

        try:
            return parse_stages(value, config.crop_size) == list(stored or [])
        except (MangacolorError, TypeError, ValueError):
            return False
    if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(stored, int | float):
        return not isinstance(stored, bool) and float(value) == float(stored)
    return type(value) in (str, bool) and type(stored) is type(value) and stored == value


def stored_in(key: str, field: str | tuple[str, ...]) -> Callable[[Any, Any], bool]:
    """``stored_as`` entry: the option is kept as ``config.<key>[<field>]`` (the first of several
    names present), e.g. ``--width`` as ``model.base_width``."""
    names = (field,) if isinstance(field, str) else field

    def check(config: Any, value: Any) -> bool:
        stored = getattr(config, key) or {}
        name = next((n for n in names if n in stored), None)
        return name is not None and stored[name] == value

    return check


def stored_json(key: str) -> Callable[[Any, Any], bool]:
    """``stored_as`` entry: a JSON-object option merged into ``config.<key>`` (``--model-config``),
    taken as stored when its every entry is."""

    def check(config: Any, text: Any) -> bool:
        try:
            given = json.loads(text) if isinstance(text, str) else None
        except ValueError:
            return False
        stored = getattr(config, key) or {}
        return isinstance(given, dict) and all(stored.get(k) == v for k, v in given.items())

    return check


def stored_under(field: str) -> Callable[[Any, Any], bool]:
    """``stored_as`` entry: the option is the config's ``field`` (``--perceptual`` as ``perceptual_weight``)."""

    def check(config: Any, value: Any) -> bool:
        return _as_stored(value, config, field, {})

    return check


def json_option(text: str | None, option: str) -> dict[str, Any]:
    """A JSON-object option (``--model-config '{"depth": 7}'``); ``None`` gives ``{}``.

    Raises:
        MangacolorError: not JSON, or not an object.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise MangacolorError(f"{option}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise MangacolorError(f"{option} must be a JSON object such as '{{\"depth\": 7}}'. Got {text}")
    return value


def output_format_option(value: str) -> str:
    """``--format`` as the stages compare it: ``PNG``, ``.jpg`` and ``jpeg`` read as ``png``, ``jpg``.

    Raises:
        typer.BadParameter: none of the stages' output formats (a usage error, before anything runs).
    """
    from mangacolor.prepare.runner import OUTPUT_FORMATS

    value = value.strip().lower().lstrip(".")
    value = "jpg" if value == "jpeg" else value
    if value not in OUTPUT_FORMATS:
        raise typer.BadParameter(f"must be one of {', '.join(OUTPUT_FORMATS)}")
    return value


def device_option(value: str) -> str:
    """``--device``: checked before anything runs (``auto``, ``cpu``, ``cuda``, ``cuda:N`` present here).

    Raises:
        typer.BadParameter: an unknown name, or a CUDA device this machine does not have.
    """
    from mangacolor.training.loop import resolve_device

    value = value.strip().lower()
    try:
        resolve_device(value)
    except MangacolorError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


def choice_option(choices: Sequence[str], hints: dict[str, str] | None = None) -> Callable[[str], str]:
    """A callback that checks an option against ``choices`` (any case) while the options are read.

    ``hints`` adds a word for a likely mistake (``--method gray``: "for the greyscale page use --gray").
    The callback raises ``typer.BadParameter``: a usage error naming the option, before anything runs.
    """

    def check(value: str) -> str:
        value = value.strip().lower()
        if value not in choices:
            hint = (hints or {}).get(value, "")
            raise typer.BadParameter(f"must be one of {', '.join(choices)}{hint}")
        return value

    return check


def check_named_output_format(ctx: typer.Context, input: Path, output: Path, output_format: str) -> None:
    """Refuse a ``--format`` given on the command line that contradicts the name of a single output file.

    Raises:
        typer.BadParameter: ``IN.png OUT.png --format jpg``: the name the user gave is kept, so
            the option would be ignored.
    """
    from mangacolor.inference import names_output_file

    if not on_command_line(ctx, "output_format") or output_format == "same" or not names_output_file(input, output):
        return
    ending = output.suffix.lower().lstrip(".")
    if {"jpeg": "jpg", "tiff": "tif"}.get(ending, ending) != output_format:
        raise typer.BadParameter(
            f"the output {output} is named as a .{ending} file; drop --format {output_format} or name the "
            f"output .{output_format}",
            param_hint="'--format'",
        )


def absolute(path: Path | None) -> str | None:
    """A path as stored in a run config: absolute, so ``--resume`` works from any working directory."""
    return str(path.absolute()) if path is not None else None


@contextmanager
def _bar_from_first_use(name: str) -> Iterator[Callable[..., tuple[Progress, TaskID]]]:
    """Yield ``bar(total=None, completed=0)``, which starts a one-task bar on its first call and returns it.

    A command refused before its first step or file (a missing input, unreadable data) so leaves no
    empty bar above its error.
    """
    started: list[tuple[Progress, TaskID]] = []

    def bar(total: float | None = None, completed: int = 0) -> tuple[Progress, TaskID]:
        if not started:
            progress = make_progress()
            progress.start()
            started.append((progress, progress.add_task(name, total=total, completed=completed, status="")))
        return started[0]

    try:
        yield bar
    finally:
        if started:
            started[0][0].stop()


@contextmanager
def training_progress(name: str, shown: Callable[[str], bool]) -> Iterator[Callable[..., None]]:
    """A progress bar for a training run, from its first step; yields the loop's ``on_step`` callback.

    Args:
        name: the bar's label.
        shown: which metric names appear beside the bar (losses are shown without ``loss_``).
    """
    with _bar_from_first_use(name) as bar:

        def on_step(step: int, total_steps: int, scalars: dict[str, float] | None) -> None:
            progress, task = bar(total_steps, step - 1)  # a resumed run: the rate (ETA) is measured from here
            status = None
            if scalars:
                status = " ".join(f"{k.removeprefix('loss_')}={v:.3g}" for k, v in scalars.items() if shown(k))
            progress.update(task, completed=step, **({"status": status} if status else {}))

        yield on_step


@contextmanager
def batch_progress(name: str, total: int | Callable[[], int | None] | None = None) -> Iterator[Callable[[], None]]:
    """A counting bar for a batch command (files done so far), from its first file; yields its ``advance``.

    With ``total`` (the files the command will see, or a function that tells it once known) the bar
    shows how far along it is and an ETA.
    """
    with _bar_from_first_use(name) as bar:

        def advance() -> None:
            progress, task = bar(total() if callable(total) else total)
            progress.advance(task)

        yield advance


def run_training_command(
    command: str, train: Callable[..., Path], shown: Callable[[str], bool], time_limit: float, **kwargs: Any
) -> Path:
    """Run a trainer under a progress bar and an :class:`~mangacolor.training.loop.EarlyStop`.

    An early stop becomes a message (after the bar's last line) and exit :data:`EXIT_STOPPED`.

    Args:
        command: the command's name: the bar's label and the resume hint.
        train: ``train_colorizer`` or ``train_scan_generator``.
        shown: which metric names appear beside the bar.
        time_limit: minutes after which no new step starts (0: none). SIGINT and SIGTERM are handled too.
        kwargs: passed to ``train``.
    """
    from mangacolor.training.loop import EarlyStop, TrainingStopped

    try:
        with training_progress(command, shown) as on_step:
            return train(**kwargs, on_step=on_step, stop=EarlyStop(time_limit * 60, signals=True))
    except TrainingStopped as stopped:
        if is_main_process():
            console.print(
                escape(
                    f"{stopped.reason}: stopped after step {stopped.step} of {stopped.total}; "
                    f"weights so far in {stopped.run_dir / 'latest.safetensors'}. "
                    f"Continue with: mangacolor {command} --resume {stopped.run_dir}"
                ),
                highlight=False,
                soft_wrap=True,
            )
        raise typer.Exit(EXIT_STOPPED) from None


def make_progress() -> Progress:
    """A Rich progress bar on stderr (only on rank 0 of a ``torchrun`` job)."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
        disable=not is_main_process(),
    )


def echo_paths(paths: list[str]) -> None:
    """Print output paths on stdout, one per line.

    When the reader goes away (``mangacolor colorize ... | head``), stdout is pointed at the null
    device and the batch goes on: the pages are written whether or not anyone reads their names.
    Names are written as the file system stores them, so a name that is not UTF-8 neither breaks
    the output (``PYTHONIOENCODING=utf-8`` makes stdout strict) nor changes on its way to ``xargs``.
    """
    try:
        for path in paths:
            typer.echo(os.fsencode(path))  # bytes go to stdout's buffer as they are
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


NO_IMAGES = "no images found (.png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff)"


def print_summary(report: BatchReport, title: str, empty: str | None = NO_IMAGES) -> None:
    """Summary table (done / skipped / copied / failed) and the failures with their reasons.

    Args:
        report: the batch's outcomes.
        title: the table's title.
        empty: warning printed when the batch saw no file at all (None: none).
    """
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for status in STATUSES:
        if report.counts[status] or status in ("done", "failed"):
            table.add_row(status, str(report.counts[status]))
    console.print(table)
    if not report.total and empty:
        console.print(f"[yellow]warning:[/] {escape(empty)}", highlight=False)
    for reason, n in sorted(report.skip_reasons.items()):
        console.print(f"skipped {n}: {escape(reason)}", highlight=False, soft_wrap=True)
    for failure in report.failures:
        console.print(
            f"[red]failed:[/] {escape(failure.path)}: {escape(failure.reason)}",
            highlight=False,
            soft_wrap=True,
        )
    if report.failed:
        console.print(f"[bold red]{report.failed} of {report.total} file(s) failed[/]")
    for note in report.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)


def exit_for(report: BatchReport) -> None:
    """Exit non-zero when any file failed."""
    if report.failed:
        raise typer.Exit(EXIT_FAILURES)
