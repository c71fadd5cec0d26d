"""Console plumbing shared by the commands: stderr console, error-to-exit-code, summary table."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
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

EXIT_FAILURES = 1
"""Exit code when a batch finished but some files failed."""
EXIT_ERROR = 2
"""Exit code when the command could not run at all (bad arguments, unreadable checkpoint, ...)."""


def guarded(func: F) -> F:
    """Turn the library's expected errors into a one-line message and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except MangacolorError as exc:
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


def is_main_process() -> bool:
    """False on the non-zero ranks of a ``torchrun`` job (they stay quiet)."""
    return int(os.environ.get("RANK", "0")) == 0


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


def print_summary(report: BatchReport, title: str) -> None:
    """Summary table (done / skipped / copied / failed) and the failures with their reasons."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("files", justify="right")
    for status in STATUSES:
        if report.counts[status] or status in ("done", "failed"):
            table.add_row(status, str(report.counts[status]))
    console.print(table)
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


def exit_for(report: BatchReport) -> None:
    """Exit non-zero when any file failed."""
    if report.failed:
        raise typer.Exit(EXIT_FAILURES)
