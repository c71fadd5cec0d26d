"""``mangacolor models``: list the registered architectures, or inspect a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mangacolor import checkpoint
from mangacolor.cli._common import console, guarded
from mangacolor.models import list_models


@guarded
def models(
    inspect: Annotated[
        Path | None,
        typer.Argument(help="A .safetensors checkpoint to describe (omit to list architectures)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """List the registered architectures, or print a checkpoint's metadata."""
    if inspect is not None:
        info = checkpoint.read_info(inspect)
        data = info.to_json()
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        table = Table(title=escape(str(inspect)), show_header=False)  # paths and metadata are text, not markup
        for key in ("task", "arch", "format_version", "mangacolor_version", "num_parameters", "dtypes", "fingerprint"):
            table.add_row(key, escape(str(data[key])))
        table.add_row("config", escape(json.dumps(data["config"], sort_keys=True)))
        for key, value in sorted(data["provenance"].items()):
            text = json.dumps(value) if not isinstance(value, str) else value
            table.add_row(escape(f"provenance.{key}"), escape(text))
        console.print(table)
        return
    specs = list_models()
    if as_json:
        typer.echo(
            json.dumps([{"name": s.name, "task": s.task, "description": s.description} for s in specs], indent=2)
        )
        return
    table = Table(title="registered architectures")
    table.add_column("name")
    table.add_column("task")
    table.add_column("description")
    for s in specs:
        table.add_row(s.name, s.task, s.description)
    console.print(table)
    for s in specs:
        typer.echo(s.name)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("models")(models)
