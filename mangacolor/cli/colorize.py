"""``mangacolor colorize``: colorize a page or a folder of pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mangacolor.cli._common import (
    batch_progress,
    check_named_output_format,
    choice_option,
    console,
    device_option,
    echo_paths,
    exit_for,
    guarded,
    output_format_option,
    print_summary,
)
from mangacolor.color import MERGE_MODES
from mangacolor.errors import MangacolorError
from mangacolor.imageio import read_image
from mangacolor.report import FileLog


@guarded
def colorize(
    ctx: typer.Context,
    input: Annotated[Path, typer.Argument(help="A page, or a folder of pages (searched recursively).")],
    output: Annotated[Path, typer.Argument(help="Output folder (mirrors the input tree), or file for one page.")],
    model: Annotated[
        Path | None,
        typer.Option("--model", "-m", help="Checkpoint (.safetensors); default: the model in assets/."),
    ] = None,
    line_model: Annotated[
        Path | None,
        typer.Option(
            help="Second colorizer for line-art pages (strokes on paper); shaded and screentoned pages go to "
            "--model. Default: the default model's line-art companion (assets/default_lines.safetensors) when "
            "one is shipped and --model is not given."
        ),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(
            min=16,
            max=16384,
            help="Working resolution (long side) of the network; default: the model's training scale.",
        ),
    ] = None,
    merge: Annotated[
        str,
        typer.Option(
            help="luma: keep the page's own full-resolution luminance (shaded pages); multiply: lay the page over "
            "the colour (ink on paper: line art, screentone); auto: multiply for ink pages, else luma; none: the "
            "network's RGB resized.",
            callback=choice_option(MERGE_MODES),
        ),
    ] = "auto",
    device: Annotated[str, typer.Option(callback=device_option, help="auto, cpu, cuda or cuda:N.")] = "auto",
    half: Annotated[
        bool | None, typer.Option("--half/--no-half", help="float16 on the GPU (default: on for CUDA).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Pages per forward pass.")] = 1,
    overwrite: Annotated[bool, typer.Option(help="Redo pages whose output exists.")] = False,
    update: Annotated[
        bool,
        typer.Option(
            help="Redo every page when OUT was made by another model or other settings (a pipeline re-run "
            "after more training); otherwise resume."
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option(help="Colorize pages that are already in colour (default: copy them).")
    ] = False,
    reference: Annotated[
        Path | None, typer.Option(help="Style image for reference-style models (colours are taken from it).")
    ] = None,
    candidates: Annotated[
        bool, typer.Option(help="Write every colouring of a multi-output model (_c0, _c1, ...).")
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", callback=output_format_option, help="same, png, jpg or webp.")
    ] = "same",
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG / WebP quality.")] = 95,
    max_pixels: Annotated[
        int,
        typer.Option(min=0, help="Refuse inputs with more pixels than this (decompression bombs); 0: no limit."),
    ] = 150_000_000,
    io_workers: Annotated[int, typer.Option(min=1, help="Threads decoding and encoding pages.")] = 2,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print a JSON summary (counts, failures, every page's outcome) on stdout instead of paths."
        ),
    ] = False,
) -> None:
    """Colorize greyscale pages or line art; the result keeps each page's full resolution."""
    from mangacolor.checkpoint import read_info
    from mangacolor.inference import (
        FolderOptions,
        PageRouter,
        count_pages,
        default_line_model_path,
        default_model_path,
        load_colorizer,
        run_folder,
    )

    ckpt = model or default_model_path()
    if model is None and not ckpt.exists():
        raise MangacolorError(f"{ckpt}: the default model is missing; pass --model CHECKPOINT")
    if line_model is None and model is None:
        line_model = default_line_model_path()
    for path in (ckpt, line_model):  # before loading: a scan model's own errors (--reference) do not apply
        task = read_info(path).task if path is not None else "colorize"
        if task != "colorize":
            raise MangacolorError(f"{path}: a {task} model, not a colorizer (train-color)")
    check_named_output_format(ctx, input, output, output_format)
    ref = read_image(reference, mode="RGB") if reference is not None else None
    translator = load_colorizer(ckpt, line_model, device=device, size=size, merge=merge, half=half, reference=ref)
    options = FolderOptions(
        overwrite=overwrite,
        update=update,
        force=force,
        candidates=candidates,
        output_format=output_format,
        quality=quality,
        batch_size=batch_size,
        io_workers=io_workers,
        max_pixels=max_pixels,
    )
    models = translator.translators if isinstance(translator, PageRouter) else (translator,)
    for role, t in zip(("model", "line-art model")[: len(models)], models, strict=True):
        console.print(
            f"{role} {escape(str(t.info.path))} ({t.info.arch}), device {t.device}"
            f"{' fp16' if t.half else ''}, working size {t.size}, merge {t.merge}",
            highlight=False,
        )
    files = FileLog(as_json)  # with --json, every page's outcome
    with batch_progress("colorize", count_pages(input, output) or None) as advance:

        def on_result(result) -> None:
            advance()
            files.add(result)
            if not as_json:
                echo_paths(result.outputs)

        report = run_folder(translator, input, output, options, on_result=on_result)
    if isinstance(translator, PageRouter):
        console.print(
            f"{translator.pages[1]} line-art page(s) went to the line-art model, "
            f"{translator.pages[0]} other page(s) to the main model",
            highlight=False,
        )
    print_summary(report, "colorize")
    if as_json:
        typer.echo(json.dumps({**report.to_json(), **files.to_json()}, indent=2))
    exit_for(report)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("colorize")(colorize)
