"""``mangacolor train-color``: train a colorizer on a folder of colour images."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mangacolor.cli._common import console, guarded, make_progress
from mangacolor.models import list_models


def _arch_names() -> list[str]:
    return [s.name for s in list_models("colorize")]


@guarded
def train_color(
    data: Annotated[Path, typer.Argument(help="Folder of colour images (searched recursively).")],
    run_dir: Annotated[Path, typer.Argument(help="Run folder: checkpoints, metrics.jsonl, samples/.")],
    arch: Annotated[str, typer.Option(help=f"Generator architecture: {', '.join(_arch_names())}.")] = "unet",
    width: Annotated[
        int | None, typer.Option(help="Generator base width (channels of the first layer).")
    ] = None,
    depth: Annotated[int | None, typer.Option(help="U-Net depth (stride-2 levels).")] = None,
    d_width: Annotated[int | None, typer.Option(help="Discriminator base width.")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps.")] = 1000,
    batch_size: Annotated[int, typer.Option(min=1)] = 16,
    crop_size: Annotated[int, typer.Option(min=8, help="Training crop side in pixels.")] = 256,
    load_size: Annotated[
        int | None, typer.Option(help="Resize images so their long side is this before cropping.")
    ] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 2e-4,
    l1_weight: Annotated[float, typer.Option(help="Weight of the L1 term (pix2pix: 100).")] = 100.0,
    gan_weight: Annotated[float, typer.Option(help="Weight of the adversarial term (0: L1 only).")] = 1.0,
    gan_loss: Annotated[str, typer.Option(help="bce, lsgan or hinge.")] = "bce",
    val_fraction: Annotated[float, typer.Option(help="Share of files held out for validation L1.")] = 0.0,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    sample_every: Annotated[int, typer.Option(min=0, help="Steps between sample grids (0: end only).")] = 500,
    save_every: Annotated[int, typer.Option(min=0, help="Steps between checkpoints.")] = 1000,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between metrics lines.")] = 50,
    half: Annotated[bool, typer.Option(help="Store the final checkpoint in float16.")] = False,
) -> None:
    """Train a colorizer (pix2pix: L1 + adversarial); greyscale inputs are made on the fly."""
    from mangacolor.training.colorizer import ColorTrainConfig, train_colorizer

    model_overrides = {k: v for k, v in {"base_width": width, "depth": depth}.items() if v is not None}
    disc_overrides = {"base_width": d_width} if d_width is not None else {}
    config = ColorTrainConfig(
        data=str(data),
        run_dir=str(run_dir),
        arch=arch,
        model=model_overrides,
        discriminator=disc_overrides,
        steps=steps,
        batch_size=batch_size,
        crop_size=crop_size,
        load_size=load_size,
        lr=lr,
        l1_weight=l1_weight,
        gan_weight=gan_weight,
        gan_loss=gan_loss,
        val_fraction=val_fraction,
        seed=seed,
        device=device,
        num_workers=workers,
        sample_every=sample_every,
        save_every=save_every,
        log_every=log_every,
        half_checkpoint=half,
    )
    with make_progress() as progress:
        task = progress.add_task("train-color", total=steps, status="")

        def on_step(step: int, losses: dict[str, float]) -> None:
            status = " ".join(f"{k.removeprefix('loss_')}={v:.3f}" for k, v in losses.items())
            progress.update(task, completed=step, status=status)

        path = train_colorizer(config, on_step=on_step)
    console.print(f"checkpoint written: {path}")
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("train-color")(train_color)
