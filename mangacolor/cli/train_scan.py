"""``mangacolor train-scan``: train the CycleGAN scan generator on unpaired scans and colour art."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from mangacolor.cli._common import (
    TimeLimitOption,
    absolute,
    console,
    device_option,
    guarded,
    is_main_process,
    load_run_config,
    run_training_command,
    stored_in,
    stored_under,
)
from mangacolor.errors import MangacolorError
from mangacolor.models import list_models
from mangacolor.training.loop import parse_stages

# options the run config keeps under another name or form (a resume with the first command line)
_STORED_AS = {
    "width": stored_in("generator", "base_width"),
    "blocks": stored_in("generator", "n_blocks"),
    "c_width": stored_in("color_generator", "base_width"),
    "c_blocks": stored_in("color_generator", "n_blocks"),
    "disc": stored_under("discriminator_arch"),
    "d_width": stored_in("discriminator", "base_width"),
    "half": stored_under("half_checkpoint"),
}


def _names(task: str) -> str:
    return ", ".join(s.name for s in list_models(task))


@guarded
def train_scan(
    ctx: typer.Context,
    scans: Annotated[Path | None, typer.Argument(help="Folder of real greyscale scans.")] = None,
    colors: Annotated[Path | None, typer.Argument(help="Folder of colour art (unpaired with the scans).")] = None,
    run_dir: Annotated[Path | None, typer.Argument(help="Run folder: checkpoints, metrics.jsonl, samples/.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder (its config.json is reused).")
    ] = None,
    arch: Annotated[str, typer.Option(help=f"Generator: {_names('scan')}.")] = "cyclegan-resnet",
    width: Annotated[int | None, typer.Option(help="Scan generator base width (default 16).")] = None,
    blocks: Annotated[int | None, typer.Option(help="Scan generator residual blocks (default 3).")] = None,
    c_width: Annotated[int | None, typer.Option(help="Colour generator base width (default: as --width).")] = None,
    c_blocks: Annotated[
        int | None, typer.Option(help="Colour generator residual blocks (default: as --blocks).")
    ] = None,
    disc: Annotated[str, typer.Option(help=f"Discriminator: {_names('discriminator')}.")] = "patchgan",
    d_width: Annotated[int | None, typer.Option(help="Discriminator base width (default 32).")] = None,
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps (per stage).")] = 1000,
    stages: Annotated[str | None, typer.Option(help="Progressive training sizes, e.g. 128,256 (--steps each).")] = None,
    crop_size: Annotated[int, typer.Option(min=8, help="Training crop side without --stages.")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, help="Image pairs per step (per process).")] = 1,
    epoch_length: Annotated[
        int, typer.Option(min=1, help="Items per epoch (each draws a scan and a colour image).")
    ] = 1000,
    load_size: Annotated[
        int | None, typer.Option(help="Resize images to this long side before cropping (default: native).")
    ] = None,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Augment the crops of both folders (rotation, blur, ...).")
    ] = False,
    lr_g: Annotated[float, typer.Option(help="Generators' learning rate.")] = 2e-4,
    lr_d: Annotated[float, typer.Option(help="Discriminators' learning rate.")] = 2e-4,
    decay_start: Annotated[float, typer.Option(help="Linear decay to zero starts at this fraction.")] = 0.5,
    gan_loss: Annotated[str, typer.Option(help="lsgan, bce or hinge.")] = "lsgan",
    gan_weight: Annotated[float, typer.Option(help="Weight of each adversarial term.")] = 1.0,
    cycle_weight: Annotated[float, typer.Option(help="Cycle-consistency L1 weight (both directions).")] = 10.0,
    identity_weight: Annotated[
        float, typer.Option(help="Identity loss weight as a fraction of --cycle-weight (0: off).")
    ] = 0.5,
    pool_size: Annotated[int, typer.Option(min=0, help="Generated images kept for each discriminator.")] = 50,
    seed: Annotated[int, typer.Option()] = 0,
    device: Annotated[str, typer.Option(callback=device_option, help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(min=0, help="DataLoader worker processes.")] = 0,
    amp: Annotated[bool | None, typer.Option("--amp/--no-amp", help="bf16 autocast (default: on CUDA).")] = None,
    channels_last: Annotated[bool, typer.Option(help="Channels-last memory format.")] = False,
    compile: Annotated[bool, typer.Option(help="torch.compile the networks.")] = False,
    sample_every: Annotated[int, typer.Option(min=0, help="Steps between sample grids (0: end only).")] = 500,
    save_every: Annotated[int, typer.Option(min=0, help="Steps between checkpoints and resume state.")] = 1000,
    log_every: Annotated[int, typer.Option(min=1, help="Steps between metrics lines.")] = 50,
    half: Annotated[bool, typer.Option(help="Store checkpoints in float16.")] = False,
    time_limit: TimeLimitOption = 0.0,
) -> None:
    """Train the scan generator (CycleGAN: colour -> scan and back) on unpaired folders; ships G_s only."""
    from mangacolor.training.scan import ScanTrainConfig, train_scan_generator

    if resume is not None:
        config = load_run_config(resume, ScanTrainConfig, "train-scan", ctx, _STORED_AS)
    else:
        if scans is None or colors is None or run_dir is None:
            raise MangacolorError("give SCANS, COLORS and RUN_DIR, or --resume RUN_DIR")
        g = {k: v for k, v in {"base_width": width, "n_blocks": blocks}.items() if v is not None}
        gc = {k: v for k, v in {"base_width": c_width, "n_blocks": c_blocks}.items() if v is not None}
        config = ScanTrainConfig(
            scans=absolute(scans),
            colors=absolute(colors),
            run_dir=str(run_dir),
            arch=arch,
            generator=g,
            color_generator=gc,
            discriminator_arch=disc,
            discriminator={"base_width": d_width} if d_width is not None else {},
            steps=steps,
            stages=parse_stages(stages, crop_size) if stages else None,
            crop_size=crop_size,
            batch_size=batch_size,
            epoch_length=epoch_length,
            load_size=load_size,
            augment=augment,
            lr_g=lr_g,
            lr_d=lr_d,
            decay_start=decay_start,
            gan_loss=gan_loss,
            gan_weight=gan_weight,
            cycle_weight=cycle_weight,
            identity_weight=identity_weight,
            pool_size=pool_size,
            seed=seed,
            device=device,
            num_workers=workers,
            amp=amp,
            channels_last=channels_last,
            compile=compile,
            sample_every=sample_every,
            save_every=save_every,
            log_every=log_every,
            half_checkpoint=half,
        )
    path = run_training_command(
        "train-scan",
        train_scan_generator,
        lambda k: k.startswith("loss") or k == "images_per_s",
        time_limit,
        config=config,
        resume=resume is not None,
    )
    if is_main_process():
        console.print(f"scan generator written: {escape(str(path))}", highlight=False)
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("train-scan")(train_scan)
