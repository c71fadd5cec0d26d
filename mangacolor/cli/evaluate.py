"""``mangacolor evaluate``: score colorized images against ground-truth colour images."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from mangacolor.cli._common import EXIT_ERROR, EXIT_FAILURES, batch_progress, console, device_option, guarded


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.{digits}f}"


def _print_tables(result, per_image: bool) -> None:
    """Per-image rows (optional) and the means on stderr."""
    if per_image and result.images:
        table = Table(title="per image", header_style="bold")
        for column in ("image", "PSNR", "SSIM", "LPIPS", "colour pred", "colour truth", "resized"):
            if column == "image":
                table.add_column(column, overflow="fold")
            else:
                table.add_column(column, justify="right")
        for s in result.images:
            table.add_row(
                escape(s.name),
                _fmt(s.psnr, 2),
                _fmt(s.ssim),
                _fmt(s.lpips),
                _fmt(s.colourfulness_pred, 1),
                _fmt(s.colourfulness_truth, 1),
                "yes" if s.resized else "",
            )
        console.print(table)
    means = result.means()
    table = Table(title=f"evaluate: {len(result.images)} image(s)", header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("", style="dim")
    table.add_row("PSNR (RGB, dB) ↑", _fmt(means["psnr"], 2), "mean over images")
    table.add_row("SSIM (luma) ↑", _fmt(means["ssim"]), "mean over images")
    table.add_row("LPIPS (VGG) ↓", _fmt(means["lpips"]), escape(result.notes.get("lpips", "mean over images")))
    table.add_row("FID ↓", _fmt(means["fid"], 2), escape(result.notes.get("fid", "Inception-v3 pool features")))
    table.add_row(
        "colourfulness ratio",
        _fmt(means["colourfulness_ratio"]),
        f"predictions {_fmt(means['colourfulness_pred'], 1)} / truth {_fmt(means['colourfulness_truth'], 1)}",
    )
    console.print(table)
    resized = sum(s.resized for s in result.images)
    if resized:
        console.print(f"{resized} prediction(s) resized to the truth's size", highlight=False)
    if result.unused:
        console.print(f"{len(result.unused)} prediction file(s) match no truth image", highlight=False)
    for name in result.missing:
        console.print(f"[yellow]missing:[/] {escape(name)}: no prediction", highlight=False, soft_wrap=True)
    for key in ("names", "sheet_inputs"):
        if key in result.notes:
            console.print(f"[yellow]note:[/] {escape(result.notes[key])}", highlight=False, soft_wrap=True)
    for path, reason in result.failures:
        console.print(f"[red]unreadable:[/] {escape(path)}: {escape(reason)}", highlight=False, soft_wrap=True)
    for what, paths in (("truth image", result.ignored_truth), ("prediction", result.ignored_predictions)):
        for path in paths:
            console.print(
                f"[yellow]ignored:[/] {escape(path)}: another {what} has the same name but for its ending",
                highlight=False,
                soft_wrap=True,
            )
    if result.sheet:
        console.print(f"contact sheet: {escape(result.sheet)}", highlight=False)
    if result.sheet_error:
        console.print(f"[red]contact sheet not written:[/] {escape(result.sheet_error)}", highlight=False)


@guarded
def evaluate(
    pred: Annotated[Path, typer.Argument(help="Folder of colorized images (matched to TRUTH by relative name).")],
    truth: Annotated[Path, typer.Argument(help="Folder of ground-truth colour images.")],
    inputs: Annotated[
        Path | None, typer.Option(help="Folder of the inputs (contact sheet's first column; default: truth's grey).")
    ] = None,
    sheet: Annotated[
        Path | None, typer.Option(help="Write a contact sheet (input | prediction | truth) to this image file.")
    ] = None,
    sheet_count: Annotated[int, typer.Option(min=1, help="Rows on the contact sheet (first images by name).")] = 8,
    sheet_height: Annotated[int, typer.Option(min=16, help="Height of a contact sheet row in pixels.")] = 192,
    fid: Annotated[bool, typer.Option("--fid/--no-fid", help="FID (needs the eval extra).")] = True,
    lpips: Annotated[bool, typer.Option("--lpips/--no-lpips", help="LPIPS (needs VGG16 weights + eval extra).")] = True,
    vgg_weights: Annotated[
        Path | None, typer.Option(help="VGG16 weights for LPIPS (torchvision .pth or features .safetensors).")
    ] = None,
    lpips_size: Annotated[
        int, typer.Option(min=16, help="LPIPS is computed with the long side shrunk to at most this.")
    ] = 256,
    device: Annotated[
        str, typer.Option(callback=device_option, help="auto, cpu, cuda or cuda:N (LPIPS and FID networks).")
    ] = "auto",
    per_image: Annotated[bool, typer.Option("--per-image/--no-per-image", help="Per-image table on stderr.")] = True,
) -> None:
    """Score predictions against truth: PSNR, SSIM, LPIPS, FID, colourfulness ratio (JSON on stdout)."""
    from mangacolor.evaluate import EvalConfig, evaluate_folders

    config = EvalConfig(
        pred=str(pred),
        truth=str(truth),
        inputs=str(inputs) if inputs else None,
        fid=fid,
        lpips=lpips,
        vgg_weights=str(vgg_weights) if vgg_weights else None,
        lpips_size=lpips_size,
        device=device,
        sheet=str(sheet) if sheet else None,
        sheet_count=sheet_count,
        sheet_height=sheet_height,
    )
    pairs: list[int] = []
    with batch_progress("evaluate", total=lambda: pairs[0] if pairs else None) as advance:
        result = evaluate_folders(config, on_image=lambda _name: advance(), on_start=pairs.append)
    _print_tables(result, per_image)
    typer.echo(json.dumps(result.to_json(), indent=2))
    if not result.images:
        console.print(
            f"[bold red]error:[/] nothing could be compared: each of the {len(result.failures)} matched "
            "pair(s) has an unreadable file",
            highlight=False,
        )
        raise typer.Exit(EXIT_ERROR)
    if result.missing or result.failures:
        console.print(
            f"[bold red]{len(result.missing)} missing, {len(result.failures)} unreadable[/]: "
            "the means cover the other images",
            highlight=False,
        )
    if not result.ok:
        raise typer.Exit(EXIT_FAILURES)


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("evaluate")(evaluate)
