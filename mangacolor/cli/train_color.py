"""``mangacolor train-color``: train a colorizer on colour images (or paired / A|B data)."""

from __future__ import annotations

from dataclasses import fields
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
    json_option,
    load_run_config,
    on_command_line,
    run_training_command,
    stored_in,
    stored_json,
    stored_under,
)
from mangacolor.errors import MangacolorError
from mangacolor.models import get_spec, list_models
from mangacolor.training.loop import parse_stages

# options the run config keeps under another name or form (a resume with the first command line)
_STORED_AS = {
    "width": stored_in("model", ("base_width", "width")),
    "depth": stored_in("model", "depth"),
    "model_config": stored_json("model"),
    "disc": stored_under("discriminator_arch"),
    "d_width": stored_in("discriminator", "base_width"),
    "d_config": stored_json("discriminator"),
    "feature_matching": stored_under("feature_matching_weight"),
    "perceptual": stored_under("perceptual_weight"),
    "init": stored_under("init_weights"),
    "half": stored_under("half_checkpoint"),
}


def _colorizers() -> set[str]:
    return {s.name for s in list_models("colorize")}


def _names(task: str) -> str:
    return ", ".join(s.name for s in list_models(task))


def _init_architecture(ctx: typer.Context, init: Path, encoder_weights: Path | None) -> tuple[str, dict]:
    """The architecture and generator config of ``--init``'s checkpoint, read before anything is written.

    Raises:
        MangacolorError: not a readable colorizer checkpoint, or options that would contradict it.
    """
    from mangacolor import checkpoint

    info = checkpoint.read_info(init)
    if info.task != "colorize":
        raise MangacolorError(f"--init {init}: a {info.task} model ({info.arch}), not a colorizer")
    given = [
        "--" + name.replace("_", "-")
        for name in ("arch", "width", "depth", "model_config")
        if on_command_line(ctx, name)
    ]
    if given:
        raise MangacolorError(
            f"--init {init}: the generator is the checkpoint's ({info.arch}, {info.config}); "
            f"leave out {', '.join(given)}"
        )
    if encoder_weights is not None:
        raise MangacolorError("--init already gives the encoder its weights: leave out --encoder-weights")
    return info.arch, dict(info.config)


@guarded
def train_color(
    ctx: typer.Context,
    data: Annotated[Path | None, typer.Argument(help="Folder of colour images (or A|B images with --aligned).")] = None,
    run_dir: Annotated[Path | None, typer.Argument(help="Run folder: checkpoints, metrics.jsonl, samples/.")] = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue the run in this folder (its config.json is reused).")
    ] = None,
    arch: Annotated[str, typer.Option(help=f"Generator: {_names('colorize')}.")] = "unet",
    width: Annotated[int | None, typer.Option(help="Generator base width (channels of the first layer).")] = None,
    depth: Annotated[int | None, typer.Option(help="U-Net depth (stride-2 levels).")] = None,
    model_config: Annotated[
        str | None, typer.Option(help="Other generator config fields as JSON, e.g. '{\"num_outputs\": 4}'.")
    ] = None,
    disc: Annotated[str, typer.Option(help=f"Discriminator: {_names('discriminator')}.")] = "patchgan",
    d_width: Annotated[int | None, typer.Option(help="Discriminator base width.")] = None,
    d_config: Annotated[
        str | None, typer.Option(help="Other discriminator config fields as JSON, e.g. '{\"num_scales\": 2}'.")
    ] = None,
    input_kind: Annotated[
        str,
        typer.Option(
            "--input",
            help="Inputs made from colour images: luma, lines or mix (half each). With --input-dir or "
            "--aligned, mix takes line art for half the crops instead of the paired input.",
        ),
    ] = "luma",
    lines_method: Annotated[
        str, typer.Option(help="Line method for --input lines/mix: blur, sketch, xdog.")
    ] = "sketch",
    input_dir: Annotated[
        Path | None, typer.Option(help="Folder of greyscale inputs paired by name with DATA (e.g. scans).")
    ] = None,
    aligned: Annotated[bool, typer.Option(help="DATA holds side-by-side A|B images.")] = False,
    steps: Annotated[int, typer.Option(min=1, help="Optimisation steps (per stage).")] = 1000,
    stages: Annotated[
        str | None, typer.Option(help="Progressive training sizes, e.g. 64,128,256 (--steps each).")
    ] = None,
    crop_size: Annotated[int, typer.Option(min=8, help="Training crop side without --stages.")] = 256,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per step (per process).")] = 16,
    load_size: Annotated[int | None, typer.Option(help="Resize images to this long side before cropping.")] = None,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Augment training crops (rotation, perspective, ...).")
    ] = False,
    lr_g: Annotated[float, typer.Option(help="Generator learning rate.")] = 1e-4,
    lr_d: Annotated[float, typer.Option(help="Discriminator learning rate (two-timescale rule).")] = 4e-4,
    decay_start: Annotated[float, typer.Option(help="Linear decay to zero starts at this fraction.")] = 0.5,
    l1_weight: Annotated[float, typer.Option(help="Weight of the L1 term (pix2pix: 100).")] = 100.0,
    gan_weight: Annotated[float, typer.Option(help="Weight of the adversarial term (0: no GAN).")] = 1.0,
    gan_loss: Annotated[str, typer.Option(help="bce, lsgan, hinge or wgan-gp.")] = "bce",
    feature_matching: Annotated[float, typer.Option(help="pix2pixHD feature matching weight.")] = 0.0,
    perceptual: Annotated[float, typer.Option(help="VGG16 perceptual loss weight.")] = 0.0,
    vgg_weights: Annotated[
        Path | None,
        typer.Option(
            help="VGG16 weights (torchvision .pth or features .safetensors; default: torchvision's hub cache) "
            "for --perceptual, the SGRU loss and the reference model's style encoder."
        ),
    ] = None,
    anime_weights: Annotated[Path | None, typer.Option(help="Danbooru ResNet50 weights for the anime loss.")] = None,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start the generator from this colorizer checkpoint (fine-tuning, e.g. "
            "assets/default.safetensors); its architecture and config are used. The discriminator starts fresh."
        ),
    ] = None,
    encoder_weights: Annotated[
        Path | None,
        typer.Option(help="Pretrained ResNet50 encoder (Danbooru resnet50-13306192.pth or torchvision's)."),
    ] = None,
    freeze_encoder: Annotated[bool, typer.Option(help="Train the decoder only.")] = False,
    pretrain_steps: Annotated[int, typer.Option(min=0, help="Generator-only steps before the GAN (NoGAN).")] = 0,
    val_fraction: Annotated[
        float, typer.Option(help="Share of files held out (by name hash) for validation L1 and best.safetensors.")
    ] = 0.0,
    test_fraction: Annotated[
        float,
        typer.Option(
            help="Share of files (by name hash) left out of training and validation alike: the held-out "
            "split of benchmarks/compare_*.py --val-fraction, so best.safetensors is not picked on it."
        ),
    ] = 0.0,
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
    """Train a colorizer (pix2pix family: L1 + adversarial + optional perceptual losses)."""
    from mangacolor.training.colorizer import ColorTrainConfig, train_colorizer

    if resume is not None:
        config = load_run_config(resume, ColorTrainConfig, "train-color", ctx, _STORED_AS)
    else:
        if data is None or run_dir is None:
            raise MangacolorError("give DATA and RUN_DIR, or --resume RUN_DIR")
        if init is not None:
            arch, overrides = _init_architecture(ctx, init, encoder_weights)
        else:
            overrides = json_option(model_config, "--model-config")
            names = {f.name for f in fields(get_spec(arch).config_cls)} if arch in _colorizers() else set()
            width_field = "width" if "width" in names and "base_width" not in names else "base_width"  # resnet-unet
            overrides.update({k: v for k, v in {width_field: width, "depth": depth}.items() if v is not None})
        config = ColorTrainConfig(
            data=absolute(data),
            run_dir=str(run_dir),
            input_dir=absolute(input_dir),
            aligned=aligned,
            input_kind=input_kind,
            lines_method=lines_method,
            arch=arch,
            model=overrides,
            discriminator_arch=disc,
            discriminator={
                **json_option(d_config, "--d-config"),
                **({"base_width": d_width} if d_width is not None else {}),
            },
            steps=steps,
            stages=parse_stages(stages, crop_size) if stages else None,
            crop_size=crop_size,
            batch_size=batch_size,
            load_size=load_size,
            augment=augment,
            lr_g=lr_g,
            lr_d=lr_d,
            decay_start=decay_start,
            l1_weight=l1_weight,
            gan_weight=gan_weight,
            gan_loss=gan_loss,
            feature_matching_weight=feature_matching,
            perceptual_weight=perceptual,
            vgg_weights=absolute(vgg_weights),
            anime_weights=absolute(anime_weights),
            init_weights=absolute(init),
            encoder_weights=absolute(encoder_weights),
            freeze_encoder=freeze_encoder,
            pretrain_steps=pretrain_steps,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
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
        "train-color",
        train_colorizer,
        lambda k: k.startswith("loss") or k in ("val_l1", "images_per_s"),
        time_limit,
        config=config,
        resume=resume is not None,
    )
    if is_main_process():
        console.print(f"checkpoint written: {escape(str(path))}", highlight=False)
        typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("train-color")(train_color)
