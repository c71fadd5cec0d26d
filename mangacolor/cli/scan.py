"""``mangacolor scan``: turn colour images into synthetic greyscale scans with a trained scan generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mangacolor.cli._common import (
    batch_progress,
    check_named_output_format,
    console,
    device_option,
    echo_paths,
    exit_for,
    guarded,
    output_format_option,
    print_summary,
)
from mangacolor.errors import MangacolorError
from mangacolor.report import FileLog


@guarded
def scan(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="Scan generator checkpoint (.safetensors from train-scan).")],
    input: Annotated[Path, typer.Argument(help="A colour image, or a folder of them (searched recursively).")],
    output: Annotated[Path, typer.Argument(help="Output folder (mirrors the input tree), or file for one image.")],
    size: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Working resolution (long side), output upsampled to full size; 0: each image's own "
            "resolution. Default: the scale the model was trained at.",
        ),
    ] = None,
    device: Annotated[str, typer.Option(callback=device_option, help="auto, cpu, cuda or cuda:N.")] = "auto",
    half: Annotated[
        bool | None, typer.Option("--half/--no-half", help="float16 on the GPU (default: on for CUDA).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per forward pass (equal shapes are grouped).")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Redo images whose output exists.")] = False,
    update: Annotated[
        bool,
        typer.Option(
            help="Redo every image when OUT was made by another model or other settings (a pipeline re-run "
            "after more training); otherwise resume."
        ),
    ] = False,
    output_format: Annotated[
        str,
        typer.Option(
            "--format",
            callback=output_format_option,
            help="png (default: lossless single-channel grey), same, jpg or webp; pairing is by name stem.",
        ),
    ] = "png",
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG / WebP quality.")] = 95,
    max_pixels: Annotated[
        int,
        typer.Option(min=0, help="Refuse inputs with more pixels than this (decompression bombs); 0: no limit."),
    ] = 150_000_000,
    io_workers: Annotated[int, typer.Option(min=1, help="Threads decoding and encoding images.")] = 2,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print a JSON summary (counts, failures, every page's outcome) on stdout instead of paths."
        ),
    ] = False,
) -> None:
    """Write a greyscale "scan" of every colour image, with the same name stem, at full resolution.

    The outputs pair by name with their colour originals: `train-color COLOR RUN --input-dir OUT`.
    """
    from mangacolor.checkpoint import read_info
    from mangacolor.inference import FolderOptions, Translator, count_pages, run_folder

    task = read_info(model).task  # before loading: a colorizer's own errors (--reference, --size) do not apply
    if task != "scan":
        raise MangacolorError(f"{model}: a {task} model, not a scan generator (train-scan)")
    check_named_output_format(ctx, input, output, output_format)
    translator = Translator.from_checkpoint(model, device=device, size=size, merge="none", half=half)
    options = FolderOptions(
        overwrite=overwrite,
        update=update,
        output_format=output_format,
        quality=quality,
        batch_size=batch_size,
        io_workers=io_workers,
        max_pixels=max_pixels,
        copy_color=False,
    )
    where = f"working size {translator.size}" if translator.size else "full resolution"
    console.print(
        f"model {escape(str(model))} ({translator.info.arch}), device {translator.device}"
        f"{' fp16' if translator.half else ''}, {where}",
        highlight=False,
    )
    files = FileLog(as_json)  # with --json, every page's outcome
    with batch_progress("scan", count_pages(input, output) or None) as advance:

        def on_result(result) -> None:
            advance()
            files.add(result)
            if not as_json:
                echo_paths(result.outputs)

        report = run_folder(translator, input, output, options, on_result=on_result)
    print_summary(report, "scan")
    if as_json:
        typer.echo(json.dumps({**report.to_json(), **files.to_json()}, indent=2))
    exit_for(report)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("scan")(scan)
