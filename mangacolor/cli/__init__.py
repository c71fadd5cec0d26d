"""The ``mangacolor`` command line: one module per command, Typer only, no logic here."""

from __future__ import annotations

import typer

from mangacolor import __version__

app = typer.Typer(
    name="mangacolor",
    help="Colorize greyscale manga pages and line art; build datasets and train the models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Colorize greyscale manga pages and line art; build datasets and train the models."""
    from mangacolor.cli._common import setup_logging

    setup_logging()


def _register() -> None:
    from mangacolor.cli import colorize, evaluate, models, scan, train_color, train_scan

    colorize.register(app)
    train_color.register(app)
    models.register(app)
    from mangacolor.cli import prepare

    prepare.register(app)
    train_scan.register(app)
    scan.register(app)
    evaluate.register(app)


try:
    _register()  # imports torch: a few seconds in which Ctrl-C is likely
except KeyboardInterrupt:
    raise SystemExit(130) from None  # as the shell reports a SIGINT, without a traceback of imports


def main() -> None:
    """Console-script entry point."""
    app()
